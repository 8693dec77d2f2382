"""An import file or JSON records → ONE frame of validated updates (``frame.UPDATE_DTYPES``) and the refused rows.

``parse_file`` refuses a whole file (``FileRejected``) when it is too large (checked before reading),
empty, unreadable, past a limit, or its headers don't match the template; otherwise every row is
validated, and the good rows come through even when others are refused. A workbook is read sheet
by sheet: every sheet whose header row names the template's columns is imported.
"""

from __future__ import annotations

import re

import hashlib
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from pipeline.ingest.frame import with_keys
from pipeline.ingest.readers import (
    FileRejected,
    Sheet,
    UnreadableLine,
    read_csv,
    read_jsonl,
    read_xlsx,
)
from pipeline.ingest.template import (
    EXPORT_ONLY_HEADERS,
    PROBLEM_HEADER,
    SOURCE_ID_ALIAS,
    SOURCE_ID_HEADER,
    TEMPLATE_FIELDS,
    RowError,
)
from pipeline.ingest.validate import FIELDS, KIND, ROW, SHEET, Rules, row_errors, validate
from pipeline.ingest.values import WHITESPACE, Kind, cell_of, display, storable
from pipeline.ingest.workbook import column_letters
from pipeline.reference import Reference

if TYPE_CHECKING:
    from pipeline.settings import Settings

__all__ = ["FileRejected", "ImportLimits", "ParsedFile", "ParsedRecords", "parse_file", "parse_records", "column_alias"]

XLSX_SUFFIXES = frozenset({".xlsx", ".xlsm"})
CSV_SUFFIXES = frozenset({".csv"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
HEADER_SEARCH_ROWS = 5  # title rows tolerated above the header
# Harmless columns a county sheet often carries, and the workspace's own additions (export, report).
IGNORED_HEADERS = frozenset({"序号", "备注", *EXPORT_ONLY_HEADERS, PROBLEM_HEADER})
MAX_HEADER_LENGTH = 100  # a refused row's header is stored in a column this wide


@dataclass(frozen=True)
class ImportLimits:
    """How much one arrival may hold (settings ``PIPELINE_*``, validated at start-up)."""

    max_rows: int = 200_000
    max_inflated_bytes: int = 256 * 1024 * 1024
    max_future_days: int = 31
    max_depth: int = 16

    @classmethod
    def from_settings(cls, settings: Settings) -> ImportLimits:
        return cls(settings.import_max_rows, settings.xlsx_max_inflated_bytes, settings.max_future_days,
                   settings.api_max_depth)


@dataclass(frozen=True)
class ParsedFile:
    filename: str
    sha256: str
    total_rows: int
    updates: pl.DataFrame  # frame.UPDATE_DTYPES
    errors: list[RowError]
    hidden_rows: int = 0  # rows of the file hidden in Excel (imported like the others)
    sheets: tuple[str, ...] = ()  # the worksheets read


@dataclass(frozen=True)
class ParsedRecords:
    updates: pl.DataFrame
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


def _rules(reference: Reference, today: date, limits: ImportLimits, progress_only: bool) -> Rules:
    return Rules(reference, today, max_future_days=limits.max_future_days, progress_only=progress_only)


def _updates(accepted: pl.DataFrame) -> pl.DataFrame:
    return with_keys(accepted.rename({ROW: "row_number"}))


# ---------------------------------------------------------------- sheets


def _filled(column: str) -> pl.Expr:
    return pl.col(column).is_not_null() & (pl.col(column).str.strip_chars(WHITESPACE) != "")


@dataclass(frozen=True)
class _Header:
    index: int  # frame row of the header
    recognised: int  # template columns it names
    names_code: bool = False  # one of them is 项目代码


def _find_header(sheet: Sheet) -> _Header | None:
    """The header row: the first non-empty row, unless a title row sits above the real header.

    County sheets often start with a title ("荆州市重大项目月报") above the header; among the first
    few non-empty rows the first one naming at least three template columns is the header.
    """
    cells = sheet.cells
    if not cells.width or not cells.height:
        return None
    non_empty = pl.DataFrame()
    for look in (1000, cells.height):  # the header is near the top: look there first
        non_empty = cells.head(look).with_row_index("__i").filter(
            pl.any_horizontal(_filled(c) for c in cells.columns)
        ).head(HEADER_SEARCH_ROWS)
        if non_empty.height == HEADER_SEARCH_ROWS or look >= cells.height:
            break
    if not non_empty.height:
        return None
    candidates = []
    for row in non_empty.iter_rows(named=True):
        aliases = {column_alias(row[c]) for c in cells.columns if isinstance(row[c], str)} - {None, ""}
        candidates.append(_Header(row["__i"], len(aliases), "code" in aliases))
    return next((h for h in candidates if h.recognised >= 3), candidates[0])


def _match_headers(sheet: Sheet, header: _Header, label: str, progress_only: bool) -> dict[str, str]:
    """Column name → alias for the template's columns, or FileRejected listing every mismatch."""
    cells = sheet.cells
    headers = cells.row(header.index, named=True)
    data = cells.slice(header.index + 1)
    aliases: dict[str, str] = {}
    unknown: list[str] = []
    repeated: list[str] = []
    for column in cells.columns:
        text = headers[column]
        if text is None or not text.strip(WHITESPACE):
            if data.select(_filled(column).any()).item():
                unknown.append(f"第{column_letters(int(column[1:]))}列（无表头）")
            continue
        alias = column_alias(text)
        shown = storable(text.strip())
        if alias is None:
            unknown.append(shown)
        elif alias and alias in aliases.values():
            repeated.append(shown)
        elif alias:
            aliases[column] = alias
    required = [f for f in TEMPLATE_FIELDS if f.required and not (progress_only and f.master)]
    missing = [f.header for f in required if f.alias not in aliases.values()]
    problems = []
    if missing:
        problems.append(f"缺少必填列：{'、'.join(missing)}")
    if unknown:
        problems.append(f"无法识别的列：{'、'.join(unknown)}")
    if repeated:
        problems.append(f"重复的列：{'、'.join(repeated)}")
    if problems:
        raise FileRejected(f"{label}的表头与导入模板不符：{'；'.join(problems)}。请使用导入模板的列名（中文或英文均可）")
    return aliases


def _with_cells(frame: pl.DataFrame, alias: str, cells: dict[int, str], kind: Kind | None) -> pl.DataFrame:
    """Put the given text (by row) into an alias column; mark those cells with ``kind``."""
    rows = list(cells)
    replaced = pl.col(ROW).replace_strict(rows, list(cells.values()), default=pl.col(alias), return_dtype=pl.Utf8)
    out = frame.with_columns(replaced.alias(alias))
    if kind is not None:
        marked = pl.when(pl.col(ROW).is_in(rows)).then(int(kind)).otherwise(int(Kind.TEXT)).cast(pl.UInt8)
        out = out.with_columns(marked.alias(alias + KIND))
    return out


def _sheet_rows(sheet: Sheet, header: _Header, index: int, label: str, progress_only: bool) -> tuple[pl.DataFrame, int]:
    """The sheet's data rows (below the header, with a value in a template column) and how many are hidden."""
    aliases = _match_headers(sheet, header, label, progress_only)
    first = header.index + 1
    data = sheet.cells.slice(first).select(
        pl.int_range(first + 1, first + 1 + pl.len(), dtype=pl.Int64).alias(ROW),
        pl.lit(index, pl.Int32).alias(SHEET),
        *(pl.col(column).alias(alias) for column, alias in aliases.items()),
    ).filter(pl.any_horizontal(_filled(alias) for alias in aliases.values()))
    by_index = {int(column[1:]): alias for column, alias in aliases.items()}
    for found, kind in ((sheet.formulas, None), (sheet.booleans, Kind.BOOL)):
        for column, alias in by_index.items():
            cells = {row: (str(value) if kind else value) for (row, col), value in found.items() if col == column}
            if cells:
                data = _with_cells(data, alias, cells, kind)
    hidden = data.height if sheet.hidden else \
        data.filter(pl.col(ROW).is_in(sorted(r for r in sheet.hidden_rows if r > 0))).height + \
        sum(1 for r in sheet.hidden_rows if r < 0)
    return data, hidden


def _template_sheets(sheets: list[Sheet], filename: str) -> list[tuple[Sheet, _Header]]:
    """The sheets whose header row names the template's columns (or the first sheet with cells, to report on)."""
    found = [(s, h) for s in sheets if (h := _find_header(s)) is not None]
    if not found:
        raise FileRejected(f"文件「{filename}」是空文件，没有表头和数据")
    # A data sheet names the project code among its columns (a sheet of drop-down choices does not).
    template = [(s, h) for s, h in found if h.recognised >= 3 and h.names_code]
    return template or found[:1]


def _grid_frame(
    sheets: list[Sheet], filename: str, progress_only: bool
) -> tuple[pl.DataFrame, list[str | None], int]:
    """Every template sheet's data rows in one raw frame, the sheet names (when more than one) and hidden rows."""
    chosen = _template_sheets(sheets, filename)
    several = len(chosen) > 1
    parts, names, hidden = [], [], 0
    for sheet, header in chosen:
        label = f"文件「{filename}」工作表“{sheet.name}”" if several else f"文件「{filename}」"
        rows, hidden_here = _sheet_rows(sheet, header, len(names), label, progress_only)
        if rows.height:
            parts.append(rows)
            names.append(sheet.name)
            hidden += hidden_here
    if not parts:
        raise FileRejected(f"文件「{filename}」只有表头，没有数据行")
    frame = pl.concat(parts, how="diagonal_relaxed")
    return frame, (names if len(names) > 1 else [None] * len(names)), hidden


def with_cells(errors: list[RowError], raw: pl.DataFrame, names: Sequence[str | None]) -> list[RowError]:
    """The errors, each carrying its whole row as read (alias → cell text), so the office can download
    the refused rows, fix them and upload them again."""
    wanted = {e.row_number for e in errors if e.row_number is not None}
    if not wanted:
        return errors
    aliases = [c for c in raw.columns if c in _ALIASES]
    rows = raw.filter(pl.col(ROW).is_in(sorted(wanted))).select(ROW, SHEET, *aliases)
    cells: dict[tuple[str | None, int], dict[str, Any]] = {}
    for values in rows.iter_rows(named=True):
        sheet = names[values[SHEET]] if values[SHEET] is not None and values[SHEET] < len(names) else None
        cells[(sheet, values[ROW])] = {a: _as_meant(values[a]) for a in aliases if values[a] not in (None, "")}
    return [replace(e, cells=cells.get((e.sheet, e.row_number))) if e.row_number is not None else e for e in errors]


_ALIASES = frozenset({f.alias for f in TEMPLATE_FIELDS} | {SOURCE_ID_ALIAS})
_ESCAPED = re.compile(r"^'[=+\-@']")


def _as_meant(value: Any) -> str:
    """A cell's text as the user meant it (the export's "'" before formula-like text taken off)."""
    text = storable(str(value))
    return text[1:] if _ESCAPED.match(text) else text


# ---------------------------------------------------------------- records


@lru_cache(maxsize=1024)
def _record_key(key: str) -> tuple[str, str | None]:
    """A JSON key as shown in messages, and the alias it stands for (as ``column_alias``). Cached:
    a batch's records repeat the same few keys."""
    return storable(key), column_alias(key, keys=_RECORD_KEYS)


def _record_errors(row_number: int, record: Any) -> tuple[dict[str, Any], list[RowError]]:
    if isinstance(record, UnreadableLine):
        return {}, [RowError(row_number, None, display(record.text), record.reason)]
    if not isinstance(record, Mapping):
        return {}, [RowError(row_number, None, display(record), "应为一个 JSON 对象")]
    cells: dict[str, Any] = {}
    errors: list[RowError] = []
    for key, value in record.items():
        name, alias = _record_key(str(key))
        if alias is None:
            errors.append(RowError(row_number, name[:MAX_HEADER_LENGTH], display(value), f"无法识别的字段“{name}”"))
        elif alias and alias in cells:
            errors.append(RowError(row_number, name[:MAX_HEADER_LENGTH], display(value), f"字段“{name}”重复"))
        elif alias:
            cells[alias] = value
    return cells, errors


def _records_frame(numbered: Sequence[tuple[int, Any]]) -> tuple[pl.DataFrame, list[RowError]]:
    """JSON records as a raw frame of text and kinds; records with unknown or repeated keys are refused here."""
    rows: list[int] = []
    kept: list[dict[str, Any]] = []
    errors: list[RowError] = []
    for row_number, record in numbered:
        cells, refused = _record_errors(row_number, record)
        if refused or not isinstance(record, Mapping):
            errors.extend(refused)
            continue
        rows.append(row_number)
        kept.append(cells)
    columns: dict[str, pl.Series] = {ROW: pl.Series(ROW, rows, pl.Int64),
                                     SHEET: pl.Series(SHEET, [None] * len(rows), pl.Int32)}
    for alias, _ in FIELDS:
        values = [cells.get(alias) for cells in kept]
        texts, kinds = _column_cells(values)
        columns[alias] = pl.Series(alias, texts, pl.Utf8)
        if kinds is not None:
            columns[alias + KIND] = pl.Series(alias + KIND, kinds, pl.UInt8)
    return pl.DataFrame(columns), errors


def _column_cells(values: list[Any]) -> tuple[list[str | None], list[int] | None]:
    """One field of every record as the text and kinds ``cell_of`` gives (kinds None: all text). A
    column of plain storable text, as most are, is taken as it is."""
    if all(v is None or type(v) is str for v in values):
        try:
            "".join(v for v in values if v is not None).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate somewhere: cell by cell
            pass
        else:
            return values, None
    cells = [cell_of(v) for v in values]
    kinds = [int(kind) for _, kind in cells]
    return [text for text, _ in cells], kinds if any(kinds) else None


def _validate_records(
    numbered: Sequence[tuple[int, Any]], rules: Rules, progress: Callable[[int, int], None] | None = None
) -> tuple[pl.DataFrame, list[RowError]]:
    raw, refused = _records_frame(numbered)
    accepted, errors = validate(raw, rules, progress=progress)
    merged = sorted(refused + with_cells(row_errors(errors, [None]), raw, [None]), key=lambda e: e.row_number or 0)
    return _updates(accepted), merged


def parse_records(
    records: Sequence[Mapping[str, Any]],
    *,
    reference: Reference,
    today: date,
    limits: ImportLimits = ImportLimits(),
    progress_only: bool = False,
    first_row_number: int = 1,
) -> ParsedRecords:
    """JSON updates (an API body): the same validation as a file; "source_id" (or "id") is the source's id."""
    numbered = [(first_row_number + i, record) for i, record in enumerate(records)]
    updates, errors = _validate_records(numbered, _rules(reference, today, limits, progress_only))
    return ParsedRecords(updates=updates, errors=errors, total_rows=len(numbered))


# ---------------------------------------------------------------- files


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, refusing a file over the limit before reading it."""
    name = storable(path.name)
    size = path.stat().st_size
    if size > max_bytes:
        raise FileRejected(
            f"文件「{name}」大小为 {size / 1048576:.1f} MB，超过上限 {max_bytes / 1048576:.1f} MB，未读取"
        )
    with path.open("rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew since stat
        raise FileRejected(f"文件「{name}」超过大小上限 {max_bytes / 1048576:.1f} MB，未读取")
    if not data.strip():
        raise FileRejected(f"文件「{name}」是空文件")
    return data


def parse_file(
    path: Path,
    *,
    reference: Reference,
    today: date,
    max_bytes: int,
    limits: ImportLimits = ImportLimits(),
    progress_only: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ParsedFile:
    """Read and validate one template file (.xlsx, .csv or .jsonl)."""
    path = Path(path)
    name = storable(path.name)
    suffix = path.suffix.lower()
    if suffix not in XLSX_SUFFIXES | CSV_SUFFIXES | JSONL_SUFFIXES | {".xls"}:
        raise FileRejected(f"文件「{name}」的类型（{suffix or '无扩展名'}）不受支持，请上传 .xlsx、.csv 或 .jsonl 文件")
    data = _read_bytes(path, max_bytes)
    sha256 = hashlib.sha256(data).hexdigest()
    rules = _rules(reference, today, limits, progress_only)
    if suffix in JSONL_SUFFIXES:
        lines = read_jsonl(data, filename=name, max_rows=limits.max_rows, max_depth=limits.max_depth)
        _refuse_unknown_keys(lines, name)
        updates, errors = _validate_records(lines, rules, progress)
        return ParsedFile(name, sha256, len(lines), updates, errors)
    if suffix in CSV_SUFFIXES:
        sheets = [read_csv(data, filename=name, max_rows=limits.max_rows)]
    else:
        sheets = read_xlsx(data, filename=name, max_rows=limits.max_rows, max_inflated_bytes=limits.max_inflated_bytes)
    raw, names, hidden = _grid_frame(sheets, name, progress_only)
    accepted, errors = validate(raw, rules, sheets=names, spreadsheet=True, progress=progress)
    return ParsedFile(name, sha256, raw.height, _updates(accepted), with_cells(row_errors(errors, names), raw, names),
                      hidden, tuple(n for n in names if n))


def _refuse_unknown_keys(lines: list[tuple[int, dict[str, Any] | UnreadableLine]], filename: str) -> None:
    """A jsonl file's keys are its headers: unknown ones refuse the file, as in a spreadsheet."""
    unknown: dict[str, None] = {}
    for _, record in lines:
        if isinstance(record, dict):
            for key in record:
                if column_alias(str(key), keys=_RECORD_KEYS) is None:
                    unknown[storable(str(key))[:MAX_HEADER_LENGTH]] = None
    if unknown:
        raise FileRejected(
            f"文件「{filename}」的字段与导入模板不符：无法识别的字段：{'、'.join(unknown)}。请使用导入模板的英文字段名或中文列名"
        )

