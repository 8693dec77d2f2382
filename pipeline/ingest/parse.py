"""An import file or JSON records → validated ``UpdateRow``s and the ``RowError``s of refused rows.

``parse_file`` refuses a whole file (``FileRejected``) when it is too large (checked before reading),
empty, unreadable or its headers don't match the template; otherwise every row is validated on its
own, and the good rows come through even when others are refused.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.ingest.readers import FileRejected, Grid, UnreadableLine, read_csv, read_jsonl, read_xlsx
from pipeline.ingest.template import SOURCE_ID_ALIAS, SOURCE_ID_HEADER, TEMPLATE_FIELDS, RowError, UpdateRow
from pipeline.ingest.validate import RawRow, validate_rows
from pipeline.ingest.values import display, is_empty, looks_like_formula, unescape_text
from pipeline.reference import Reference

__all__ = ["FileRejected", "ParsedFile", "ParsedRecords", "parse_file", "parse_records", "column_alias"]

XLSX_SUFFIXES = frozenset({".xlsx", ".xlsm"})
CSV_SUFFIXES = frozenset({".csv"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
HEADER_SEARCH_ROWS = 5  # title rows tolerated above the header
IGNORED_HEADERS = frozenset({"序号", "备注"})  # harmless columns a county sheet often carries


@dataclass(frozen=True)
class ParsedFile:
    filename: str
    sha256: str
    total_rows: int
    rows: list[UpdateRow]
    errors: list[RowError]


@dataclass(frozen=True)
class ParsedRecords:
    rows: list[UpdateRow]
    errors: list[RowError]
    total_rows: int


def _header_key(text: str) -> str:
    """Fold what users vary: surrounding/inner spaces, full-width forms (（）→()), letter case."""
    return "".join(unicodedata.normalize("NFKC", text).split()).lower()


_FILE_COLUMNS: dict[str, str] = {
    **{_header_key(f.header): f.alias for f in TEMPLATE_FIELDS},
    **{_header_key(f.alias): f.alias for f in TEMPLATE_FIELDS},
    _header_key(SOURCE_ID_HEADER): SOURCE_ID_ALIAS,
    _header_key(SOURCE_ID_ALIAS): SOURCE_ID_ALIAS,
}
_RECORD_KEYS: dict[str, str] = {**_FILE_COLUMNS, "id": SOURCE_ID_ALIAS}
_IGNORED = frozenset(_header_key(h) for h in IGNORED_HEADERS)
_IGNORE = ""  # column_alias() of a harmless column


def column_alias(header: str, *, keys: Mapping[str, str] = _FILE_COLUMNS) -> str | None:
    """The alias a header (Chinese or English) stands for; "" for an ignored column; None if unknown."""
    key = _header_key(header)
    if key in _IGNORED:
        return _IGNORE
    return keys.get(key)


# ---------------------------------------------------------------- headers


def _column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("A") + rem) + letters
    return letters


def _match_headers(headers: list[Any], data: list[tuple[int, list[Any]]], filename: str) -> list[str]:
    """One alias per column ("" for a column to ignore), or FileRejected listing every mismatch."""
    aliases: list[str] = []
    unknown: list[str] = []
    repeated: list[str] = []
    for index, cell in enumerate(headers):
        if is_empty(cell):
            if any(index < len(cells) and not is_empty(cells[index]) for _, cells in data):
                unknown.append(f"第{_column_letter(index)}列（无表头）")
            aliases.append(_IGNORE)
            continue
        text = display(cell) or ""
        alias = column_alias(text)
        if alias is None:
            unknown.append(text.strip())
            aliases.append(_IGNORE)
        elif alias and alias in aliases:
            repeated.append(text.strip())
            aliases.append(_IGNORE)
        else:
            aliases.append(alias)
    missing = [f.header for f in TEMPLATE_FIELDS if f.required and f.alias not in aliases]
    problems = []
    if missing:
        problems.append(f"缺少必填列：{'、'.join(missing)}")
    if unknown:
        problems.append(f"无法识别的列：{'、'.join(unknown)}")
    if repeated:
        problems.append(f"重复的列：{'、'.join(repeated)}")
    if problems:
        raise FileRejected(f"文件「{filename}」的表头与导入模板不符：{'；'.join(problems)}。请使用导入模板的列名（中文或英文均可）")
    return aliases


def _recognised_columns(cells: list[Any]) -> int:
    return sum(1 for c in cells if isinstance(c, str) and column_alias(c))


def _header_index(grid: Grid, filename: str) -> int:
    """The header row: the first non-empty row, unless a title row sits above the real header.

    County sheets often start with a title ("荆州市重大项目月报") above the header; among the first
    few non-empty rows the first one naming at least three template columns is the header.
    """
    non_empty: list[int] = []
    for index, (_, cells) in enumerate(grid.rows):
        if any(not is_empty(c) for c in cells):
            non_empty.append(index)
            if len(non_empty) == HEADER_SEARCH_ROWS:
                break
    if not non_empty:
        raise FileRejected(f"文件「{filename}」是空文件，没有表头和数据")
    for index in non_empty:
        if _recognised_columns(grid.rows[index][1]) >= 3:
            return index
    return non_empty[0]


def _grid_rows(grid: Grid, filename: str) -> list[RawRow]:
    """One RawRow per data row (below the header) that has any value in a template column."""
    start = _header_index(grid, filename)
    headers = grid.rows[start][1]
    data = grid.rows[start + 1:]
    aliases = _match_headers(headers, data, filename)
    columns = [(index, alias) for index, alias in enumerate(aliases) if alias]
    raws: list[RawRow] = []
    for row_number, cells in data:
        values = {alias: cells[index] for index, alias in columns if index < len(cells)}
        if all(is_empty(v) for v in values.values()):
            continue
        formulas = {alias for alias, value in values.items() if looks_like_formula(value)}
        if grid.formula_cells:
            for index, alias in columns:
                formula = grid.formula_cells.get((row_number, index))
                if formula is not None:
                    formulas.add(alias)
                    values[alias] = formula  # what the user wrote, not a cached result
        for alias, value in values.items():
            if isinstance(value, str) and alias not in formulas:
                values[alias] = unescape_text(value)
        raws.append(RawRow(row_number, values, frozenset(formulas)))
    if not raws:
        raise FileRejected(f"文件「{filename}」只有表头，没有数据行")
    return raws


# ---------------------------------------------------------------- records


def _record_row(
    row_number: int, record: Any, *, keys: Mapping[str, str]
) -> RawRow | list[RowError]:
    if isinstance(record, UnreadableLine):
        return [RowError(row_number, None, display(record.text), record.reason)]
    if not isinstance(record, Mapping):
        return [RowError(row_number, None, display(record), "应为一个 JSON 对象")]
    cells: dict[str, Any] = {}
    errors: list[RowError] = []
    for key, value in record.items():
        alias = column_alias(str(key), keys=keys)
        if alias is None:
            errors.append(RowError(row_number, str(key), display(value), f"无法识别的字段“{key}”"))
        elif alias and alias in cells:
            errors.append(RowError(row_number, str(key), display(value), f"字段“{key}”重复"))
        elif alias:
            cells[alias] = value
    if errors:
        return errors
    formulas = frozenset(alias for alias, value in cells.items() if looks_like_formula(value))
    return RawRow(row_number, cells, formulas)


def _validate_records(
    numbered: Sequence[tuple[int, Any]],
    *,
    reference: Reference,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[UpdateRow], list[RowError]]:
    raws: list[RawRow] = []
    errors: list[RowError] = []
    for row_number, record in numbered:
        result = _record_row(row_number, record, keys=_RECORD_KEYS)
        if isinstance(result, list):
            errors.extend(result)
        else:
            raws.append(result)
    rows, row_errors = validate_rows(raws, reference=reference, total=len(raws), progress=progress)
    merged = sorted(errors + row_errors, key=lambda e: e.row_number or 0)
    return rows, merged


def parse_records(
    records: Sequence[Mapping[str, Any]], *, reference: Reference, first_row_number: int = 1
) -> ParsedRecords:
    """JSON updates (an API body): the same validation as a file; "source_id" (or "id") is the source's id."""
    numbered = [(first_row_number + i, record) for i, record in enumerate(records)]
    rows, errors = _validate_records(numbered, reference=reference)
    return ParsedRecords(rows=rows, errors=errors, total_rows=len(numbered))


# ---------------------------------------------------------------- files


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, refusing a file over the limit before reading it."""
    size = path.stat().st_size
    if size > max_bytes:
        raise FileRejected(
            f"文件「{path.name}」大小为 {size / 1048576:.1f} MB，超过上限 {max_bytes / 1048576:.1f} MB，未读取"
        )
    with path.open("rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew since stat
        raise FileRejected(f"文件「{path.name}」超过大小上限 {max_bytes / 1048576:.1f} MB，未读取")
    if not data.strip():
        raise FileRejected(f"文件「{path.name}」是空文件")
    return data


def parse_file(
    path: Path,
    *,
    reference: Reference,
    max_bytes: int,
    progress: Callable[[int, int], None] | None = None,
) -> ParsedFile:
    """Read and validate one template file (.xlsx, .csv or .jsonl)."""
    path = Path(path)
    name = path.name
    suffix = path.suffix.lower()
    if suffix not in XLSX_SUFFIXES | CSV_SUFFIXES | JSONL_SUFFIXES | {".xls"}:
        raise FileRejected(f"文件「{name}」的类型（{suffix or '无扩展名'}）不受支持，请上传 .xlsx、.csv 或 .jsonl 文件")
    data = _read_bytes(path, max_bytes)
    sha256 = hashlib.sha256(data).hexdigest()
    if suffix in JSONL_SUFFIXES:
        lines = read_jsonl(data, filename=name)
        _refuse_unknown_keys(lines, name)
        rows, errors = _validate_records(lines, reference=reference, progress=progress)
        return ParsedFile(name, sha256, len(lines), rows, errors)
    grid = read_csv(data, filename=name) if suffix in CSV_SUFFIXES else read_xlsx(data, filename=name)
    raws = _grid_rows(grid, name)
    rows, errors = validate_rows(raws, reference=reference, total=len(raws), progress=progress)
    return ParsedFile(name, sha256, len(raws), rows, errors)


def _refuse_unknown_keys(lines: list[tuple[int, dict[str, Any] | UnreadableLine]], filename: str) -> None:
    """A jsonl file's keys are its headers: unknown ones refuse the file, as in a spreadsheet."""
    unknown: dict[str, None] = {}
    for _, record in lines:
        if isinstance(record, dict):
            for key in record:
                if column_alias(str(key), keys=_RECORD_KEYS) is None:
                    unknown[str(key)] = None
    if unknown:
        raise FileRejected(
            f"文件「{filename}」的字段与导入模板不符：无法识别的字段：{'、'.join(unknown)}。请使用导入模板的英文字段名或中文列名"
        )
