"""Write rows in the import template's form: .xlsx, .csv or .jsonl, chosen by the path's extension.

Reading back what is written gives the same rows. Text that a spreadsheet would take for a formula
(starting with =, +, -, @) is written with a leading apostrophe in xlsx and csv; the reader removes it.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pipeline.ingest.parse import column_alias
from pipeline.ingest.sheet_format import WIDTHS, extend_filter, number_format, start_sheet, styled
from pipeline.ingest.template import (
    FIELDS_BY_ALIAS,
    SOURCE_ID_ALIAS,
    SOURCE_ID_HEADER,
    TEMPLATE_FIELDS,
    FieldType,
    UpdateRow,
)
from pipeline.ingest.values import escape_text

# OOXML writes characters it cannot store as "_xHHHH_", and readers decode that; literal text of that
# shape must have its underscore escaped ("_x005F_") to come back unchanged.
_OOXML_ESCAPE_LOOKALIKE = re.compile(r"_(x[0-9A-Fa-f]{4}_)")
_ROW_FIELDS = frozenset(f.name for f in fields(UpdateRow))


def _as_cells(row: UpdateRow | Mapping[str, Any]) -> dict[str, Any]:
    """alias → value; a mapping may use aliases or Chinese headers as keys."""
    if isinstance(row, UpdateRow):
        return {name: getattr(row, name) for name in _ROW_FIELDS if name != "row_number"}
    cells: dict[str, Any] = {}
    for key, value in row.items():
        alias = column_alias(str(key))
        if not alias:
            raise ValueError(f"unknown template column: {key!r}")
        cells[alias] = value
    return cells


def _number_text(value: Decimal | int | float) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _cell(alias: str, value: Any, *, spreadsheet: bool) -> Any:
    """The value as written: real dates and numbers in xlsx, text elsewhere; None for an empty cell."""
    if value is None or value == () or value == "":
        return None
    kind = FIELDS_BY_ALIAS[alias].type if alias != SOURCE_ID_ALIAS else FieldType.TEXT
    if kind is FieldType.LISTS and isinstance(value, (tuple, list)):
        value = ";".join(value)
    elif kind is FieldType.YES_NO and isinstance(value, bool):
        value = "是" if value else "否"
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return value if spreadsheet else value.isoformat()
    if isinstance(value, (Decimal, int, float)) and not isinstance(value, bool):
        return value if spreadsheet else _number_text(value)
    return escape_text(str(value))


def _columns(cells: list[dict[str, Any]]) -> list[str]:
    aliases = [f.alias for f in TEMPLATE_FIELDS]
    if any(c.get(SOURCE_ID_ALIAS) not in (None, "") for c in cells):
        aliases.append(SOURCE_ID_ALIAS)
    return aliases


def _header(alias: str) -> str:
    return SOURCE_ID_HEADER if alias == SOURCE_ID_ALIAS else FIELDS_BY_ALIAS[alias].header


def sheet_value(alias: str, value: Any) -> Any:
    """A template column's value as an xlsx cell holds it: dates and numbers typed, text escaped."""
    value = _cell(alias, value, spreadsheet=True)
    if isinstance(value, str):
        return _OOXML_ESCAPE_LOOKALIKE.sub(r"_x005F_\1", value)
    return value


def template_cells(sheet: Any, cells: Mapping[str, Any], columns: Sequence[str]) -> list[Any]:
    """The row's cells for a write-only sheet: dates and numbers with their column's format, the rest
    as plain values (a styled cell costs an object; a list of 100,000 projects has millions of cells)."""
    out = []
    for alias in columns:
        value = sheet_value(alias, cells.get(alias))
        fmt = number_format(alias) if value is not None and not isinstance(value, str) else None
        out.append(styled(sheet, value, number_format=fmt) if fmt else value)
    return out


def _write_xlsx(cells: list[dict[str, Any]], path: Path) -> None:
    from openpyxl import Workbook

    columns = _columns(cells)
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("导入模板")
    start_sheet(sheet, [_header(a) for a in columns], [WIDTHS[a] for a in columns])
    for row in cells:
        sheet.append(template_cells(sheet, row, columns))
    extend_filter(sheet, len(columns), len(cells))
    workbook.save(path)


def _write_csv(cells: list[dict[str, Any]], path: Path) -> None:
    columns = _columns(cells)
    # UTF-8 with BOM: Excel on Windows opens it as UTF-8 instead of the ANSI code page.
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([_header(a) for a in columns])
        for row in cells:
            writer.writerow(["" if (v := _cell(a, row.get(a), spreadsheet=False)) is None else v for a in columns])


def _json_value(alias: str, value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _write_jsonl(cells: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for row in cells:
            record = {a: _json_value(a, row.get(a)) for a in _columns([row]) if row.get(a) not in (None, "", ())}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_template(rows: Iterable[UpdateRow | Mapping[str, Any]], path: Path) -> Path:
    """Write the rows as a template file; the extension (.xlsx, .csv, .jsonl) picks the format."""
    path = Path(path)
    cells = [_as_cells(row) for row in rows]
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        _write_xlsx(cells, path)
    elif suffix == ".csv":
        _write_csv(cells, path)
    elif suffix == ".jsonl":
        _write_jsonl(cells, path)
    else:
        raise ValueError(f"unsupported template format: {path.suffix!r} (use .xlsx, .csv or .jsonl)")
    return path
