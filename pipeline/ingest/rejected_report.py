"""The refused rows of an upload as a workbook the office fixes and uploads again.

One row per refused row, as it was read, under the template's headers, with 问题说明 first (every
reason, the column named) and the faulty cells filled red. The import ignores 问题说明, so the
corrected file goes back through 上传月报 or ``pipeline import`` as it is.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import PatternFill

from pipeline.ingest.export import sheet_value
from pipeline.ingest.sheet_format import WIDTHS, extend_filter, number_format, start_sheet, styled
from pipeline.ingest.template import FIELDS_BY_ALIAS, PROBLEM_HEADER, SOURCE_ID_ALIAS, SOURCE_ID_HEADER, TEMPLATE_FIELDS

SHEET = "问题行"
BAD_FILL = PatternFill("solid", fgColor="F4C7C3")
_ALIAS_OF_HEADER = {f.header: f.alias for f in TEMPLATE_FIELDS} | {SOURCE_ID_HEADER: SOURCE_ID_ALIAS}


@dataclass
class RefusedRow:
    row_number: int
    cells: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    bad_columns: set[str] = field(default_factory=set)


def refused_rows(rejections: Iterable[Any]) -> list[RefusedRow]:
    """Group stored rejections (``RejectedRow``: row_number, header, message, cells) by row, in row order."""
    rows: dict[int, RefusedRow] = {}
    for r in rejections:
        if r.row_number is None:
            continue  # the whole file was refused: nothing to fix row by row
        row = rows.setdefault(r.row_number, RefusedRow(r.row_number))
        if r.cells:
            row.cells = dict(r.cells)
        row.problems.append(f"「{r.header}」{r.message}" if r.header else r.message)
        if r.header in _ALIAS_OF_HEADER:
            row.bad_columns.add(_ALIAS_OF_HEADER[r.header])
    return [rows[n] for n in sorted(rows)]


def rejected_rows_xlsx(rejections: Iterable[Any], *, source: str | None = None) -> bytes:
    """The workbook: 问题说明, then every template column (and 来源编号 when a row has one)."""
    rows = refused_rows(rejections)
    columns = [f.alias for f in TEMPLATE_FIELDS]
    if any(r.cells.get(SOURCE_ID_ALIAS) not in (None, "") for r in rows):
        columns.append(SOURCE_ID_ALIAS)
    headers = [PROBLEM_HEADER, *[_header(a) for a in columns]]
    book = Workbook(write_only=True)
    sheet = book.create_sheet(SHEET)
    start_sheet(sheet, headers, [48, *(WIDTHS[a] for a in columns)])
    for r in rows:
        problem = f"原第{r.row_number}行：" + "；".join(r.problems)
        out = [styled(sheet, sheet_value("problems", problem), wrap=True)]
        for alias in columns:
            value = sheet_value(alias, r.cells.get(alias))
            out.append(styled(sheet, value, number_format=number_format(alias),
                              fill=BAD_FILL if alias in r.bad_columns else None))
        sheet.append(out)
    extend_filter(sheet, len(headers), len(rows))
    if source:
        book.properties.title = sheet_value("problems", f"{source} 的问题行")
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _header(alias: str) -> str:
    return SOURCE_ID_HEADER if alias == SOURCE_ID_ALIAS else FIELDS_BY_ALIAS[alias].header
