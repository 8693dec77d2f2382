"""Read the bytes of an import file into sheets of text cells: xlsx (fastexcel over calamine), csv, jsonl.

Readers know nothing of the template: they give each sheet's cells as text, row i of a sheet's
frame being row i + 1 as a user sees it (Excel rows, csv records), with what the values alone do
not show (formula and boolean cells, hidden rows). A file that cannot be read at all raises
``FileRejected`` with a Chinese message naming the file. Nothing is read without a bound: a
workbook is inspected part by part first (``workbook.inspect_workbook``), csv and jsonl files are
counted as they are read, JSON is refused past a nesting depth before it is parsed.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import re
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import fastexcel
import polars as pl

from pipeline.ingest.workbook import WorkbookRefused, inspect_workbook

XLSX_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # the old binary .xls (and other OLE documents)
CSV_CHUNK_ROWS = 20_000  # csv records turned into columns at a time
_LONG_INT_DIGITS = 4000  # Python refuses to parse longer integers; JSON gives them as Decimal


class FileRejected(ValueError):
    """The whole file is refused; the message (Chinese) names the file and says why."""


@dataclass(frozen=True)
class Sheet:
    """A table as read: one text column per spreadsheet column ("c0" is column A); frame row i is row i + 1."""

    name: str | None
    cells: pl.DataFrame
    hidden: bool = False
    hidden_rows: frozenset[int] = frozenset()
    # (row, column index) → the formula's text, for real xlsx formula cells (their values are cached results).
    formulas: Mapping[tuple[int, int], str] = field(default_factory=dict)
    # (row, column index) → the value of xlsx boolean cells (their text would read "true"/"false").
    booleans: Mapping[tuple[int, int], bool] = field(default_factory=dict)


@dataclass(frozen=True)
class UnreadableLine:
    """A jsonl line that is not a JSON object."""

    text: str
    reason: str


def column_name(index: int) -> str:
    return f"c{index}"


# ---------------------------------------------------------------- xlsx


def read_xlsx(data: bytes, *, filename: str, max_rows: int, max_inflated_bytes: int) -> list[Sheet]:
    """Every worksheet, in workbook order, once the workbook has passed its inspection."""
    if data.startswith(OLE_MAGIC):
        raise FileRejected(f"文件「{filename}」是旧版 .xls 格式，请在 Excel 中另存为 .xlsx 后重新导入")
    if not data.startswith(XLSX_MAGIC):
        raise FileRejected(f"文件「{filename}」不是有效的 Excel（.xlsx）文件，可能是改了扩展名的其他文件")
    try:
        inspected = inspect_workbook(data, max_inflated_bytes=max_inflated_bytes, max_rows=max_rows)
    except WorkbookRefused as exc:
        raise FileRejected(f"文件「{filename}」{exc}") from exc
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, zlib.error, ValueError) as exc:
        raise FileRejected(f"文件「{filename}」已损坏，无法作为 Excel（.xlsx）文件读取") from exc
    if not inspected.sheets:
        raise FileRejected(f"文件「{filename}」中没有工作表")
    sheets = []
    try:
        reader = fastexcel.read_excel(data)
        for part in inspected.sheets:
            loaded = reader.load_sheet(part.name, header_row=None, skip_rows=0, dtypes="string")
            frame = loaded.to_polars()
            frame.columns = [column_name(c.absolute_index) for c in loaded.selected_columns]
            facts = inspected.facts[part.path]
            sheets.append(Sheet(
                part.name, frame, hidden=part.hidden, hidden_rows=frozenset(facts.hidden_rows),
                formulas=facts.formulas, booleans=facts.booleans,
            ))
    except fastexcel.FastExcelError as exc:
        raise FileRejected(f"文件「{filename}」已损坏或受密码保护，无法作为 Excel（.xlsx）文件读取") from exc
    return sheets


# ---------------------------------------------------------------- csv


def decode_text(data: bytes, *, filename: str) -> str:
    """UTF-8 (with or without BOM), else GB18030 (Excel on Chinese Windows)."""
    if data.startswith(codecs.BOM_UTF8):
        encodings: tuple[str, ...] = ("utf-8-sig",)
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encodings = ("utf-16",)
    else:
        encodings = ("utf-8", "gb18030")
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if text.count("\x00") * 20 > len(text):  # NUL everywhere: binary, or UTF-16 without its mark
            break
        return text  # a stray NUL is refused with its row
    raise FileRejected(f"文件「{filename}」不是可读的文本文件（应为 UTF-8 或 GB18030 编码的 CSV）")


def _columns(records: list[list[str]]) -> pl.DataFrame:
    width = max((len(r) for r in records), default=0)
    padded = [r + [""] * (width - len(r)) for r in records]
    return pl.DataFrame(padded, schema=[column_name(i) for i in range(width)], orient="row") if width else \
        pl.DataFrame({column_name(0): [None] * len(records)}, schema={column_name(0): pl.Utf8})


def read_csv(data: bytes, *, filename: str, max_rows: int) -> Sheet:
    """Comma-separated records; a record's number is its row in Excel (records may span lines)."""
    if data.startswith((XLSX_MAGIC, OLE_MAGIC)):
        raise FileRejected(f"文件「{filename}」是 Excel 文件而不是 CSV，请使用 .xlsx 扩展名")
    text = decode_text(data, filename=filename)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    parts = []
    count = 0
    try:
        while chunk := list(itertools.islice(reader, CSV_CHUNK_ROWS)):
            count += len(chunk)
            if count > max_rows:
                raise FileRejected(f"文件「{filename}」超过 {max_rows} 行（PIPELINE_IMPORT_MAX_ROWS），请拆分后分批导入")
            parts.append(_columns(chunk))
    except csv.Error as exc:
        raise FileRejected(f"文件「{filename}」不是有效的 CSV 文件：{exc}") from exc
    cells = pl.concat(parts, how="diagonal") if parts else pl.DataFrame()
    return Sheet(None, cells)


# ---------------------------------------------------------------- json


class JsonRefused(ValueError):
    """JSON that is not parsed: nested too deep. The message is Chinese."""


_ESCAPED = re.compile(rb"\\.", re.S)  # a backslash and the character it escapes
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_depth(data: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest (brackets inside strings do not count).

    With the escapes taken out (``\\"`` among them), every quote opens or closes a string: the text
    between the quotes, every other piece of a split on them, is what lies outside the strings."""
    bare = _ESCAPED.sub(b"", data) if b"\\" in data else data
    brackets = b"".join(bare.split(b'"')[::2]).translate(None, _NOT_A_BRACKET)
    if not brackets:
        return 0
    return max(itertools.accumulate(_DEPTH_STEP[b] for b in brackets))


def _json_int(text: str) -> int | Decimal:
    return int(text) if len(text) <= _LONG_INT_DIGITS else Decimal(text)


def load_json(data: bytes | str, *, max_depth: int) -> Any:
    """Parse JSON, refusing (JsonRefused) a text nested deeper than ``max_depth`` before parsing it.

    Integers too long for Python's int come back as Decimal; invalid JSON raises json.JSONDecodeError.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    depth = json_depth(raw)
    if depth > max_depth:
        raise JsonRefused(f"JSON 嵌套过深（{depth} 层，最多 {max_depth} 层）")
    try:
        return json.loads(data, parse_int=_json_int)
    except RecursionError as exc:  # pragma: no cover - the depth check comes first
        raise JsonRefused(f"JSON 嵌套过深（最多 {max_depth} 层）") from exc


def read_jsonl(
    data: bytes, *, filename: str, max_rows: int, max_depth: int
) -> list[tuple[int, dict[str, Any] | UnreadableLine]]:
    """One JSON object per line; blank lines are skipped; a bad line is kept as ``UnreadableLine``."""
    text = decode_text(data, filename=filename)
    out: list[tuple[int, dict[str, Any] | UnreadableLine]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(out) >= max_rows:
            raise FileRejected(f"文件「{filename}」超过 {max_rows} 行（PIPELINE_IMPORT_MAX_ROWS），请拆分后分批导入")
        try:
            value = load_json(line, max_depth=max_depth)
        except json.JSONDecodeError as exc:
            out.append((number, UnreadableLine(line, f"不是有效的 JSON：{exc.msg}（第{exc.colno}列）")))
            continue
        except (JsonRefused, ValueError) as exc:
            out.append((number, UnreadableLine(line, str(exc) if isinstance(exc, JsonRefused) else "不是有效的 JSON")))
            continue
        if isinstance(value, dict):
            out.append((number, value))
        else:
            out.append((number, UnreadableLine(line, "应为一个 JSON 对象（{...}）")))
    if out and all(isinstance(item, UnreadableLine) for _, item in out):
        raise FileRejected(f"文件「{filename}」不是有效的 JSONL 文件（每行应为一个 JSON 对象）")
    return out
