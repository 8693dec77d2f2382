"""Workbooks no spreadsheet program writes: zip bombs, lying sizes, cells far apart, hidden rows.

``forge_xlsx`` writes the zip by hand so that a part's declared size can differ from what it really
inflates to, and so that a part of a gigabyte is compressed as it streams (never held in memory).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from pipeline.ingest.template import HEADERS
from pipeline.ingest.workbook import column_letters

CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>{sheets}</Types>'
)
ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
    'Target="xl/workbook.xml"/></Relationships>'
)
SHEET_HEAD = '<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
SHEET_TAIL = "</sheetData></worksheet>"


@dataclass(frozen=True)
class Part:
    name: str
    chunks: Iterable[bytes]  # the part's content, streamed
    declared_size: int | None = None  # what the zip says it inflates to (None: the truth)


def cell(ref: str, value: object) -> str:
    if isinstance(value, bool):
        return f'<c r="{ref}" t="b"><v>{int(value)}</v></c>'
    if isinstance(value, (int, float)):
        return f'<c r="{ref}"><v>{value}</v></c>'
    return f'<c r="{ref}" t="inlineStr"><is><t>{escape(str(value))}</t></is></c>'


def row_xml(number: int, values: Iterable[object], *, hidden: bool = False, first_column: int = 0) -> str:
    cells = "".join(cell(f"{column_letters(first_column + i)}{number}", v) for i, v in enumerate(values) if v not in (None, ""))
    attributes = ' hidden="1"' if hidden else ""
    return f'<row r="{number}"{attributes}>{cells}</row>'


def sheet_xml(rows: Iterable[str]) -> Iterator[bytes]:
    yield SHEET_HEAD.encode()
    for r in rows:
        yield r.encode()
    yield SHEET_TAIL.encode()


def template_rows(cells: list[dict[str, object]], *, hidden: Iterable[int] = ()) -> list[str]:
    """Header on row 1, then one row per dict of cells by Chinese header (rows given in ``hidden`` hidden)."""
    hidden = set(hidden)
    rows = [row_xml(1, HEADERS)]
    for i, values in enumerate(cells, start=2):
        rows.append(row_xml(i, [values.get(h) for h in HEADERS], hidden=i in hidden))
    return rows


def forge_xlsx(path: Path, sheets: list[tuple[str, Iterable[bytes]]], *, declared: dict[int, int] | None = None,
               hidden_sheets: Iterable[int] = ()) -> Path:
    """A workbook of the given sheets (name, streamed XML); ``declared`` lies about sheet n's inflated size."""
    hidden_sheets = set(hidden_sheets)
    workbook = (
        '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>'
        + "".join(f'<sheet name="{escape(name)}" sheetId="{i + 1}" r:id="rId{i + 1}"{_state(i in hidden_sheets)}/>'
                  for i, (name, _) in enumerate(sheets))
        + "</sheets></workbook>"
    )
    rels = (
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        + "".join(f'<Relationship Id="rId{i + 1}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
                  f'Target="worksheets/sheet{i + 1}.xml"/>' for i in range(len(sheets)))
        + "</Relationships>"
    )
    overrides = "".join(
        f'<Override PartName="/xl/worksheets/sheet{i + 1}.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        for i in range(len(sheets))
    )
    parts = [
        Part("[Content_Types].xml", [CONTENT_TYPES.format(sheets=overrides).encode()]),
        Part("_rels/.rels", [ROOT_RELS.encode()]),
        Part("xl/workbook.xml", [workbook.encode()]),
        Part("xl/_rels/workbook.xml.rels", [rels.encode()]),
        *(Part(f"xl/worksheets/sheet{i + 1}.xml", chunks, (declared or {}).get(i)) for i, (_, chunks) in enumerate(sheets)),
    ]
    write_zip(path, parts)
    return path


def _state(hidden: bool) -> str:
    return ' state="hidden"' if hidden else ""


def write_zip(path: Path, parts: list[Part]) -> None:
    """A deflated zip written entry by entry, each compressed as it streams."""
    central = bytearray()
    with path.open("wb") as out:
        for part in parts:
            offset = out.tell()
            name = part.name.encode()
            out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, 0, 0, 0, len(name), 0) + name)
            start = out.tell()
            packer = zlib.compressobj(9, zlib.DEFLATED, -15)
            crc, size = 0, 0
            for chunk in part.chunks:
                crc, size = zlib.crc32(chunk, crc), size + len(chunk)
                out.write(packer.compress(chunk))
            out.write(packer.flush())
            packed = out.tell() - start
            declared = part.declared_size if part.declared_size is not None else size
            end = out.tell()
            out.seek(offset + 14)
            out.write(struct.pack("<3L", crc, packed, declared))
            out.seek(end)
            central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, packed, declared,
                                   len(name), 0, 0, 0, 0, 0, offset) + name
        at = out.tell()
        out.write(bytes(central))
        out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(parts), len(parts), len(central), at, 0))


def blank_chunks(total: int, *, chunk: int = 1 << 24) -> Iterator[bytes]:
    """``total`` bytes of empty XML comments inside a sheet: valid XML holding nothing, inflating hugely."""
    yield SHEET_HEAD.encode()
    block = b"<!---->" * (chunk // 7)
    left = total
    while left > 0:
        yield block[: min(chunk, left)]
        left -= chunk
    yield SHEET_TAIL.encode()
