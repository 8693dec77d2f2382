"""An xlsx workbook inspected before anything reads it: bounded, and what its sheets hold beyond values.

A workbook is a zip of XML parts. Before python-calamine (through fastexcel) reads one, every part
is inflated here in bounded chunks, counting what really comes out (a zip's declared sizes can
lie): the parts together may not pass ``max_inflated_bytes``. calamine lays a sheet out as a dense
grid from its first to its last cell and from its leftmost to its rightmost column, so a sheet
whose cells span more than ``max_rows`` rows, or hold a value past column ``MAX_COLUMNS``, or a
cell without its position, is refused too. The same pass notes what the values alone do not show:
the formula cells (refused by the validator), the boolean cells, the hidden rows. The common case
costs one pass of a compiled regex per chunk; only chunks with something notable are looked at
closely.
"""

from __future__ import annotations

import io
import posixpath
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from xml.etree import ElementTree
from xml.sax.saxutils import unescape

import polars as pl

MAX_PARTS = 10_000  # zip entries of one workbook
MAX_COLUMNS = 52  # column AZ: the template has about twenty
XML_PART_LIMIT = 4 * 1024 * 1024  # the directory parts parsed here (workbook.xml and its relationships)
_CHUNK = 1 << 20  # compressed bytes fed to the inflater at a time
_OUT = 4 << 20  # inflated bytes handled at a time
_LONGEST_ELEMENT = 4 << 20  # a cell whose element does not end within this is refused


class WorkbookRefused(ValueError):
    """The workbook is refused before it is read; the message (Chinese) says why, without the file name."""


@dataclass(frozen=True)
class SheetPart:
    name: str
    path: str  # the sheet's part in the zip
    hidden: bool


@dataclass
class SheetFacts:
    """What the pass over one sheet's XML found."""

    formulas: dict[tuple[int, int], str] = field(default_factory=dict)  # (row, column) → "=…", 1-based row
    booleans: dict[tuple[int, int], bool] = field(default_factory=dict)
    hidden_rows: set[int] = field(default_factory=set)
    first_row: int | None = None  # of a cell with a value
    last_row: int | None = None


def column_index(letters: str) -> int:
    """0-based index of a column: A → 0, Z → 25, AA → 26."""
    index = 0
    for ch in letters:
        index = index * 26 + (ord(ch) - 64)
    return index - 1


def column_letters(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("A") + rem) + letters
    return letters


def _mb(n: int) -> str:
    return f"{n / 1048576:.0f} MB"


# ---------------------------------------------------------------- the zip


def _entry_count(data: bytes) -> int:
    """Entries the zip's end record declares, read before zipfile builds an object per entry."""
    tail_start = max(0, len(data) - (1 << 16) - 22)
    at = data.rfind(b"PK\x05\x06", tail_start)
    if at < 0 or at + 22 > len(data):
        raise zipfile.BadZipFile("no end of central directory")
    return struct.unpack("<H", data[at + 10: at + 12])[0]


def _raw_member(data: bytes, info: zipfile.ZipInfo) -> memoryview:
    """The compressed bytes of one entry, located by its local header."""
    start = info.header_offset
    header = data[start: start + 30]
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile("bad local header")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    begin = start + 30 + name_length + extra_length
    if begin + info.compress_size > len(data):
        raise zipfile.BadZipFile("entry past the end")
    return memoryview(data)[begin: begin + info.compress_size]


def _inflated(data: bytes, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """The entry's content in chunks of at most ``_OUT`` bytes, however it was declared."""
    if info.flag_bits & 0x1:
        raise WorkbookRefused("工作簿已加密或受密码保护")
    raw = _raw_member(data, info)
    if info.compress_type == zipfile.ZIP_STORED:
        for i in range(0, len(raw), _OUT):
            yield bytes(raw[i: i + _OUT])
        return
    if info.compress_type != zipfile.ZIP_DEFLATED:
        raise WorkbookRefused(f"工作簿的部件“{info.filename}”使用了不支持的压缩方式")
    inflater = zlib.decompressobj(-15)
    for i in range(0, len(raw), _CHUNK):
        out = inflater.decompress(raw[i: i + _CHUNK], _OUT)
        while True:
            if out:
                yield out
            if not inflater.unconsumed_tail:
                break
            out = inflater.decompress(inflater.unconsumed_tail, _OUT)
        if inflater.eof:
            return
    rest = inflater.flush()
    if rest:
        yield rest


# ---------------------------------------------------------------- the workbook's sheets


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _small_xml(data: bytes, archive: zipfile.ZipFile, name: str) -> ElementTree.Element:
    content = b""
    for chunk in _inflated(data, archive.getinfo(name)):
        content += chunk
        if len(content) > XML_PART_LIMIT:
            raise WorkbookRefused(f"工作簿的目录部件“{name}”异常大，不是正常的 Excel 工作簿")
    try:
        return ElementTree.fromstring(content)
    except ElementTree.ParseError as exc:
        raise zipfile.BadZipFile(str(exc)) from exc


def _sheet_parts(data: bytes, archive: zipfile.ZipFile) -> list[SheetPart]:
    """The worksheets in workbook order: name, part, hidden or not (chart sheets are left out)."""
    workbook = _small_xml(data, archive, "xl/workbook.xml")
    targets: dict[str, str] = {}
    if "xl/_rels/workbook.xml.rels" in archive.namelist():
        for rel in _small_xml(data, archive, "xl/_rels/workbook.xml.rels"):
            target = rel.get("Target", "")
            path = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join("xl", target))
            targets[rel.get("Id", "")] = path
    parts = []
    for sheet in (el for el in workbook.iter() if _local(el.tag) == "sheet"):
        rel_id = next((value for key, value in sheet.attrib.items() if _local(key) == "id"), "")
        path = targets.get(rel_id, "")
        if path.startswith("xl/worksheets/"):
            parts.append(SheetPart(sheet.get("name", ""), path, sheet.get("state", "visible") != "visible"))
    return parts


# ---------------------------------------------------------------- one sheet's XML

# What a sheet's XML may hold that the values alone do not show, or that calamine would lay out
# too wide: a cell without its position first (r-less, or another attribute first), a cell past
# column AZ, a formula, a boolean cell, a hidden row. Any of them sends the chunk to a closer look.
_NOTABLE = (r'<(?:\w+:)?c(?:>|\s+[a-qs-z])|<(?:\w+:)?c\s+r=["\'](?:[B-Z][A-Z]|[A-Z]{3})'
            r'|<(?:\w+:)?f[\s>/]|\st="b"|hidden="(?:1|true)"')
_NOTABLE_BYTES = re.compile(_NOTABLE.encode())
_CELL_START = re.compile(rb"<(?:\w+:)?c[\s>]")
_CELL_END = re.compile(rb"</(?:\w+:)?c>")
_CELL_REF = re.compile(rb'\sr=["\']([A-Z]{1,3})([0-9]{1,7})["\']')
_ROW_REF = re.compile(rb'\sr="([0-9]{1,7})"')
_FORMULA = re.compile(rb"<(?:\w+:)?f\b[^>]*?(?:/>|>(.*?)</(?:\w+:)?f>)", re.S)
_BOOLEAN = re.compile(rb"<(?:\w+:)?v>\s*([^<]*?)\s*</")
_HAS_VALUE = re.compile(rb"<(?:\w+:)?(?:v>[^<]|is>)")
_COLUMN_LIMIT = column_letters(MAX_COLUMNS - 1)


def _any_notable(text: bytes) -> bool:
    """One pass of a compiled (Rust) regex over the chunk: is there anything to look at closely?"""
    series = pl.Series([text], dtype=pl.Binary).cast(pl.Utf8, strict=False)
    if series.null_count():
        raise zipfile.BadZipFile("a sheet's XML is not UTF-8")
    return bool(series.str.contains(_NOTABLE).item())


class _SheetScan:
    """Reads one sheet's XML chunk by chunk; refuses it as soon as it passes a limit."""

    def __init__(self, name: str, *, max_rows: int) -> None:
        self.name = name
        self.max_rows = max_rows
        self.facts = SheetFacts()
        self.buffer = b""

    def refuse(self, why: str) -> WorkbookRefused:
        return WorkbookRefused(f"工作表“{self.name}”{why}")

    def feed(self, chunk: bytes) -> None:
        """Look at the buffer up to its last "<" (an element cut in two waits for the next chunk)."""
        self.buffer += chunk
        end = self.buffer.rfind(b"<")
        keep = self._look(self.buffer, end) if end > 0 else 0
        if len(self.buffer) - keep > _LONGEST_ELEMENT + _OUT:
            raise self.refuse("含有异常的超长内容（不是正常的工作表数据），无法读取")
        self.buffer = self.buffer[keep:]

    def finish(self) -> SheetFacts:
        if self.buffer:
            self._look(self.buffer + b"<", len(self.buffer), final=True)
        first, last = self.facts.first_row, self.facts.last_row
        if first is not None and last is not None and (last < first or last - first + 1 > self.max_rows):
            raise self.refuse(f"的数据范围（第{first}行至第{last}行）超过 {self.max_rows} 行（PIPELINE_IMPORT_MAX_ROWS），"
                              "请拆分后分批导入")
        return self.facts

    def _look(self, buffer: bytes, end: int, *, final: bool = False) -> int:
        """Note what buffer[:end] holds; the offset from which the buffer must be kept."""
        keep = end
        region = buffer[:end]
        if _any_notable(region):
            for hit in _NOTABLE_BYTES.finditer(region):
                if not self._note(buffer, hit.start(), final):
                    keep = min(keep, buffer.rfind(b"<", 0, hit.start() + 1))
                    break
        self._value_rows(region)
        return keep

    def _cell(self, buffer: bytes, at: int, final: bool) -> tuple[int, int] | None:
        """(start, end) of the cell element holding position ``at``; None when it has not ended yet."""
        starts = [m for m in _CELL_START.finditer(buffer, max(0, at - 4096), at + 16) if m.start() <= at]
        if not starts:
            raise self.refuse("的结构不规范（公式或单元格不在单元格元素中），请在 Excel 中打开后另存为 .xlsx 再导入")
        begin = starts[-1].start()
        close = buffer.find(b">", begin)
        if close < 0:
            return None
        if buffer[close - 1: close] == b"/":
            return (begin, close + 1)
        end = _CELL_END.search(buffer, close)
        if end is None:
            return (begin, len(buffer)) if final else None
        return (begin, end.end())

    def _note(self, buffer: bytes, at: int, final: bool) -> bool:
        """Look closely at one notable place; False when its element continues past the buffer."""
        what = buffer[at: at + 12]
        if what.lstrip(b" \t\r\n").startswith(b"hidden") or b"hidden=" in what:
            return self._hidden(buffer, at)
        element = self._cell(buffer, at, final)
        if element is None:
            return False
        begin, end = element
        start_tag = buffer[begin: buffer.find(b">", begin) + 1]
        ref = _CELL_REF.search(start_tag)
        if ref is None:
            raise self.refuse("的单元格缺少位置信息（文件结构不规范），请在 Excel 中打开后另存为 .xlsx 再导入")
        where = (int(ref.group(2)), column_index(ref.group(1).decode()))
        inner = buffer[begin:end]
        if where[1] >= MAX_COLUMNS and not start_tag.endswith(b"/>") and _HAS_VALUE.search(inner):
            raise self.refuse(f"在第 {_COLUMN_LIMIT} 列之后还有数据，超出导入模板的范围")
        formula = _FORMULA.search(inner)
        if formula is not None:
            text = (formula.group(1) or b"").decode("utf-8", "replace")
            self.facts.formulas[where] = "=" + unescape(text, {"&quot;": '"', "&apos;": "'"}).lstrip("=")
        elif b't="b"' in start_tag:
            value = _BOOLEAN.search(inner)
            if value is not None:
                self.facts.booleans[where] = value.group(1) in (b"1", b"true")
        return True

    def _hidden(self, buffer: bytes, at: int) -> bool:
        begin = buffer.rfind(b"<", 0, at)
        close = buffer.find(b">", at)
        if close < 0:
            return False
        tag = buffer[begin: close + 1]
        if re.match(rb"<(?:\w+:)?row\b", tag):  # not a hidden column or sheet view
            number = _ROW_REF.search(tag)
            self.facts.hidden_rows.add(int(number.group(1)) if number else -len(self.facts.hidden_rows) - 1)
        return True

    def _value_rows(self, region: bytes) -> None:
        """Rows of the first and last cells with a value: calamine lays the sheet out between them."""
        if self.facts.first_row is None:
            hit = _HAS_VALUE.search(region)
            if hit is not None:
                self.facts.first_row = self._row_at(region, hit.start())
        last = max(region.rfind(b"<v>"), region.rfind(b"<is>"), region.rfind(b":v>"), region.rfind(b":is>"))
        if last >= 0:
            self.facts.last_row = self._row_at(region, last)

    @staticmethod
    def _row_at(region: bytes, at: int) -> int | None:
        """The row of the cell around ``at``: its r, else its row's r."""
        cells = [m for m in _CELL_START.finditer(region, max(0, at - 4096), at + 16) if m.start() <= at]
        if cells:
            begin = cells[-1].start()
            ref = _CELL_REF.search(region, begin, region.find(b">", begin) + 1)
            if ref is not None:
                return int(ref.group(2))
        row = max(region.rfind(b"<row", 0, at), region.rfind(b":row", 0, at))
        number = _ROW_REF.search(region, row, region.find(b">", row) + 1) if row >= 0 else None
        return int(number.group(1)) if number else None


# ---------------------------------------------------------------- the whole workbook


@dataclass(frozen=True)
class Inspected:
    sheets: list[SheetPart]
    facts: dict[str, SheetFacts]  # by sheet part


def inspect_workbook(data: bytes, *, max_inflated_bytes: int, max_rows: int) -> Inspected:
    """Check every part of an xlsx before it is read; raises WorkbookRefused, or zipfile.BadZipFile when broken."""
    if _entry_count(data) > MAX_PARTS:
        raise WorkbookRefused(f"含有超过 {MAX_PARTS} 个部件，不是正常的 Excel 工作簿")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        if "xl/workbook.xml" not in archive.namelist():
            raise WorkbookRefused("是压缩包，但不是 Excel（.xlsx）工作簿")
        limit = f"{_mb(max_inflated_bytes)}（PIPELINE_XLSX_MAX_INFLATED_BYTES）"
        declared = 0
        for info in infos:
            declared += info.file_size
            if info.file_size > max_inflated_bytes or declared > max_inflated_bytes:
                raise WorkbookRefused(f"解压后超过上限 {limit}（部件“{info.filename}”声明 {_mb(info.file_size)}），未读取")
        sheets = _sheet_parts(data, archive)
        scans = {s.path: _SheetScan(s.name, max_rows=max_rows) for s in sheets}
        inflated = 0
        for info in infos:
            scan = scans.get(info.filename)
            for chunk in _inflated(data, info):
                inflated += len(chunk)
                if inflated > max_inflated_bytes:
                    raise WorkbookRefused(f"解压后超过上限 {limit}（部件“{info.filename}”），未读取")
                if scan is not None:
                    scan.feed(chunk)
        return Inspected(sheets, {path: scan.finish() for path, scan in scans.items()})
