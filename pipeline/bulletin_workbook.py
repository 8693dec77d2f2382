"""The bulletin 通报 as an xlsx workbook: one sheet per ranking (开工率, 竣工率, 入统率, 红牌占比).

Each sheet opens with a title row naming the month, then a bold frozen header with an autofilter;
numbers stay numbers: ranks and counts as integers, rates as fractions shown as percentages
(0.934 → 93.4%), the change since the month before in percentage points; an empty denominator
leaves the rate blank (and ranks last). Column widths as in the digest workbooks.
"""

from __future__ import annotations

import io
import re
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from pipeline.alerts.workbook import Column, safe_cell
from pipeline.bulletin import MEASURE_NAMES, MEASURE_TERMS, MEASURES, Bulletin, CountyLine
from pipeline.ingest.sheet_format import COUNT_FORMAT, HEADER_FILL, PERCENT_FORMAT, styled
from pipeline.rates import Ratio

POINTS_FORMAT = "+0.0;-0.0;0.0"
MOVE_FORMAT = "+0;-0;0"
TITLE_FONT = Font(bold=True, size=14)
_UNSAFE_FILENAME = re.compile(r'[\\/:*?"<>|\s]+')


def _columns(measure: str) -> tuple[Column, ...]:
    name = MEASURE_NAMES[measure]
    done, due = MEASURE_TERMS[measure]
    return (Column("名次", 7, COUNT_FORMAT), Column("县市区", 14), Column(name, 11, PERCENT_FORMAT),
            Column(done, 9, COUNT_FORMAT), Column(due, 9, COUNT_FORMAT), Column("上月名次", 10, COUNT_FORMAT),
            Column("名次变化", 10, MOVE_FORMAT), Column(f"上月{name}", 13, PERCENT_FORMAT),
            Column("较上月（百分点）", 17, POINTS_FORMAT))


def _share(r: Ratio) -> float | None:
    return r.numerator / r.denominator if r.denominator else None


def _row(line: CountyLine, measure: str) -> list[Any]:
    s = line[measure]
    change = s.change
    return [s.rank, line.county, _share(s.value), s.value.numerator, s.value.denominator, s.previous_rank,
            s.rank_change, _share(s.previous), None if change is None else float(change * 100)]


def sheet_title(b: Bulletin, measure: str) -> str:
    return (f"{b.title}·{MEASURE_NAMES[measure]}排名（截至{b.month_end.isoformat()}，"
            f"较{b.previous_end.isoformat()}）")


def _write_sheet(book: Workbook, b: Bulletin, measure: str) -> None:
    columns = _columns(measure)
    sheet = book.create_sheet(f"{MEASURE_NAMES[measure]}排名")
    for index, column in enumerate(columns, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = column.width
    sheet.freeze_panes = "A3"
    lines = b.ranking(measure)
    last = get_column_letter(len(columns))
    sheet.auto_filter.ref = f"A2:{last}{len(lines) + 2}"
    title = styled(sheet, safe_cell(sheet_title(b, measure)))
    title.font = TITLE_FONT
    sheet.append([title])
    sheet.append([styled(sheet, c.header, bold=True, fill=HEADER_FILL) for c in columns])
    for line in lines:
        sheet.append([styled(sheet, safe_cell(v), number_format=c.format) for c, v in zip(columns, _row(line, measure))])


def bulletin_xlsx(b: Bulletin) -> bytes:
    book = Workbook(write_only=True)
    for measure in MEASURES:
        _write_sheet(book, b, measure)
    book.properties.title = safe_cell(b.title)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def bulletin_filename(b: Bulletin) -> str:
    return _UNSAFE_FILENAME.sub("_", f"月度通报_{b.month}.xlsx")
