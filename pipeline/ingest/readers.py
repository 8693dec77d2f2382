"""Read the bytes of an import file into rows of raw cells: xlsx (python-calamine), csv, jsonl.

Readers know nothing of the template: they give the row numbers a user sees (Excel rows, csv
records, jsonl lines) and the cells as found. A file that cannot be read at all raises
``FileRejected`` with a Chinese message naming the file.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import posixpath
import re
import zipfile
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any
from xml.etree import ElementTree

import python_calamine

XLSX_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # the old binary .xls (and other OLE documents)
# A formula element in a sheet's XML: <f>, <f t="shared" .../>, <x:f>; not <filterColumn>.
_FORMULA_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?f[\s>/]")


class FileRejected(ValueError):
    """The whole file is refused; the message (Chinese) names the file and says why."""


@dataclass(frozen=True)
class Grid:
    """A table as read: (row number, cells) for each row, and where the real formula cells are."""

    rows: list[tuple[int, list[Any]]]
    # (row number, column index) → the formula's text, for the real formula cells of an xlsx sheet.
    formula_cells: Mapping[tuple[int, int], str] = field(default_factory=dict)


@dataclass(frozen=True)
class UnreadableLine:
    """A jsonl line that is not a JSON object."""

    text: str
    reason: str


# ---------------------------------------------------------------- xlsx


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _first_sheet_part(archive: zipfile.ZipFile) -> str | None:
    """The zip path of the workbook's first sheet, from workbook.xml and its relationships."""
    try:
        workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))
        rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    except (KeyError, ElementTree.ParseError):
        return None
    sheet = next((el for el in workbook.iter() if _local(el.tag) == "sheet"), None)
    if sheet is None:
        return None
    rel_id = next((v for k, v in sheet.attrib.items() if _local(k) == "id"), None)
    for rel in rels:
        if rel.get("Id") == rel_id and rel.get("Target"):
            target = rel.get("Target", "")
            return target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join("xl", target))
    return None


def _may_hold_formulas(archive: zipfile.ZipFile) -> bool:
    """Fast check on the first sheet's XML; when unsure, look at every worksheet."""
    part = _first_sheet_part(archive)
    names = [part] if part in archive.namelist() else [
        n for n in archive.namelist() if n.startswith("xl/worksheets/") and n.endswith(".xml")
    ]
    return any(_FORMULA_TAG.search(archive.read(name)) for name in names)


def _formula_cells(data: bytes, filename: str) -> dict[tuple[int, int], str]:
    """Where the first sheet's formula cells are (python-calamine only gives their cached values)."""
    import openpyxl  # only on this slow path

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as exc:
        raise FileRejected(f"文件「{filename}」含有公式，且无法定位公式所在单元格，请将公式粘贴为数值后重新导入") from exc
    try:
        found: dict[tuple[int, int], str] = {}
        if workbook.worksheets:
            for row in workbook.worksheets[0].iter_rows():
                for cell in row:
                    if getattr(cell, "data_type", None) == "f":
                        formula = cell.value
                        found[(cell.row, cell.column - 1)] = str(getattr(formula, "text", formula) or "=")
        return found
    finally:
        workbook.close()


def read_xlsx(data: bytes, *, filename: str) -> Grid:
    """The first sheet, rows numbered as in Excel (row 1 is the sheet's first row)."""
    if data.startswith(OLE_MAGIC):
        raise FileRejected(f"文件「{filename}」是旧版 .xls 格式，请在 Excel 中另存为 .xlsx 后重新导入")
    if not data.startswith(XLSX_MAGIC):
        raise FileRejected(f"文件「{filename}」不是有效的 Excel（.xlsx）文件，可能是改了扩展名的其他文件")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if "xl/workbook.xml" not in archive.namelist():
                raise FileRejected(f"文件「{filename}」是压缩包，但不是 Excel（.xlsx）工作簿")
            has_formulas = _may_hold_formulas(archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise FileRejected(f"文件「{filename}」已损坏，无法作为 Excel（.xlsx）文件读取") from exc
    try:
        workbook = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
        if not workbook.sheet_names:
            raise FileRejected(f"文件「{filename}」中没有工作表")
        cells = workbook.get_sheet_by_index(0).to_python(skip_empty_area=False)
    except python_calamine.CalamineError as exc:
        raise FileRejected(f"文件「{filename}」已损坏或受密码保护，无法作为 Excel（.xlsx）文件读取") from exc
    formulas = _formula_cells(data, filename) if has_formulas else {}
    return Grid([(index + 1, row) for index, row in enumerate(cells)], formulas)


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
        if "\x00" in text:
            break
        return text
    raise FileRejected(f"文件「{filename}」不是可读的文本文件（应为 UTF-8 或 GB18030 编码的 CSV）")


def read_csv(data: bytes, *, filename: str) -> Grid:
    """Comma-separated records; a record's number is its row in Excel (records may span lines)."""
    if data.startswith((XLSX_MAGIC, OLE_MAGIC)):
        raise FileRejected(f"文件「{filename}」是 Excel 文件而不是 CSV，请使用 .xlsx 扩展名")
    text = decode_text(data, filename=filename)
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise FileRejected(f"文件「{filename}」不是有效的 CSV 文件：{exc}") from exc
    return Grid([(index + 1, record) for index, record in enumerate(records)])


# ---------------------------------------------------------------- jsonl


def read_jsonl(data: bytes, *, filename: str) -> list[tuple[int, dict[str, Any] | UnreadableLine]]:
    """One JSON object per line; blank lines are skipped; a bad line is kept as ``UnreadableLine``."""
    text = decode_text(data, filename=filename)
    out: list[tuple[int, dict[str, Any] | UnreadableLine]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            out.append((number, UnreadableLine(line, f"不是有效的 JSON：{exc.msg}（第{exc.colno}列）")))
            continue
        if isinstance(value, dict):
            out.append((number, value))
        else:
            out.append((number, UnreadableLine(line, "应为一个 JSON 对象（{...}）")))
    if out and all(isinstance(item, UnreadableLine) for _, item in out):
        raise FileRejected(f"文件「{filename}」不是有效的 JSONL 文件（每行应为一个 JSON 对象）")
    return out
