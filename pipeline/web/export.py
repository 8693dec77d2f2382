"""The project list's current view as an xlsx file that re-imports as it is.

Sheet 项目清单: every column of the import template (so the file goes back through 上传月报 or
``pipeline import`` unchanged; the rows it re-imports are counted as already received), typed
(dates as dates, 万元 as numbers), then the flag columns the import ignores (挂牌, 计算挂牌, 人工调整,
红牌确认, 挂牌原因). Column widths, a frozen header and an autofilter; text that a spreadsheet would
run as a formula is neutralised. The name says what and when: 项目清单_监利市_红牌_20241231.xlsx.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from datetime import date

from openpyxl import Workbook

from pipeline.alerts.workbook import safe_cell
from pipeline.ingest.export import template_cells
from pipeline.ingest.sheet_format import WIDTHS, extend_filter, start_sheet, styled
from pipeline.ingest.template import EXPORT_ONLY_HEADERS, TEMPLATE_FIELDS
from pipeline.web.queries import COLOR_NAMES, ExportRow, ProjectFilters

MAX_ROWS = 100_000
SHEET = "项目清单"
COLUMNS = tuple(f.alias for f in TEMPLATE_FIELDS)
FLAG_WIDTHS = (10, 10, 9, 10, 60)
_UNSAFE = re.compile(r'[\\/:*?"<>|\s]+')


def _flag_cells(r: ExportRow) -> list[str]:
    reasons = "；".join(str(x.get("message", "")) for x in r.reasons)
    return [COLOR_NAMES.get(r.color or "", ""), COLOR_NAMES.get(r.computed_color or "", ""),
            "是" if r.overridden else "否", "已确认" if r.acknowledged else "", reasons]


def projects_xlsx(rows: Iterable[ExportRow], *, title: str = SHEET) -> bytes:
    book = Workbook(write_only=True)
    sheet = book.create_sheet(SHEET)
    headers = [*(f.header for f in TEMPLATE_FIELDS), *EXPORT_ONLY_HEADERS]
    assert len(EXPORT_ONLY_HEADERS) == len(FLAG_WIDTHS)
    start_sheet(sheet, headers, [*(WIDTHS[a] for a in COLUMNS), *FLAG_WIDTHS])
    count = 0
    for r in rows:
        *flags, reasons = (safe_cell(v) for v in _flag_cells(r))
        sheet.append([*template_cells(sheet, r.cells, COLUMNS), *flags, styled(sheet, reasons, wrap=True)])
        count += 1
    extend_filter(sheet, len(headers), count)
    book.properties.title = safe_cell(title)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def export_filename(f: ProjectFilters, as_of: date) -> str:
    """项目清单_监利市_红牌_20241231.xlsx: the filters that narrow the view, then the evaluation date."""
    parts = ["项目清单"]
    for value in (f.county, f.list_name, f.leader, f.industry,
                  COLOR_NAMES.get(f.color or "") if f.color else None, f"搜索{f.q}" if f.q else None):
        if value:
            cleaned = _UNSAFE.sub("_", value).strip("_.")[:40]
            if cleaned:
                parts.append(cleaned)
    parts.append(as_of.strftime("%Y%m%d"))
    return "_".join(parts) + ".xlsx"
