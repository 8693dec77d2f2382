"""How the template's columns look in a workbook the office opens: widths, number and date formats,
a bold frozen header with an autofilter. One home for the import template, the list export and
the rejected-rows report, so that all three read alike and each re-imports as it is.

Works on write-only sheets (column widths and the header set before the first row).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from pipeline.ingest.template import FIELDS_BY_ALIAS, SOURCE_ID_ALIAS, FieldType

DATE_FORMAT = "yyyy-mm-dd"
MONEY_FORMAT = "#,##0.00"
PERCENT_FORMAT = "0.0%"
COUNT_FORMAT = "0"
TEXT_FORMAT = "@"
HEADER_FONT = Font(bold=True)
HEADER_FILL = PatternFill("solid", fgColor="DDE4EE")
WRAP = Alignment(wrap_text=True, vertical="top")

# Column widths (Excel characters; a Chinese character counts about two).
WIDTHS: dict[str, float] = {
    "code": 27, "name": 34, "county": 12, "industry": 12, "lists": 30, "nature": 10, "total_investment": 16,
    "annual_plan": 16, "planned_start": 13, "planned_completion": 13, "actual_start": 13, "actual_completion": 13,
    "stats_included_on": 13, "cumulative_completed": 16, "ytd_completed": 16, "leader": 10, "unit": 26,
    "problems": 34, "needs_coordination": 8, "as_of": 13, SOURCE_ID_ALIAS: 20,
}


def number_format(alias: str) -> str | None:
    """The cell format of a template column: dates as dates, money with two decimals, text as text."""
    if alias == SOURCE_ID_ALIAS:
        return TEXT_FORMAT
    kind = FIELDS_BY_ALIAS[alias].type
    if kind is FieldType.DATE:
        return DATE_FORMAT
    if kind is FieldType.NUMBER:
        return MONEY_FORMAT
    if alias in ("code", "name"):
        return TEXT_FORMAT  # Excel would otherwise take a code for a date or a number
    return None


def styled(sheet: Any, value: Any, *, number_format: str | None = None, bold: bool = False,
           fill: PatternFill | None = None, wrap: bool = False) -> WriteOnlyCell:
    cell = WriteOnlyCell(sheet, value=value)
    if number_format and value is not None and not isinstance(value, str):
        cell.number_format = number_format
    if bold:
        cell.font = HEADER_FONT
    if fill is not None:
        cell.fill = fill
    if wrap:
        cell.alignment = WRAP
    return cell


def start_sheet(sheet: Any, headers: Sequence[str], widths: Sequence[float]) -> None:
    """Column widths, a frozen header row with an autofilter over every column (set before any row)."""
    for index, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = width
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(headers))}1"
    sheet.append([styled(sheet, h, bold=True, fill=HEADER_FILL) for h in headers])


def extend_filter(sheet: Any, columns: int, rows: int) -> None:
    """Stretch the autofilter over the data once its length is known (rows: data rows, header excluded)."""
    sheet.auto_filter.ref = f"A1:{get_column_letter(columns)}{rows + 1}"
