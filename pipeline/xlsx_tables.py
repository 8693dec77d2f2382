"""Plain tables written as an xlsx file directly (SpreadsheetML parts in a zip), fast enough for
the digests of a national reserve: a 100,000-project review writes some 50,000 rows of flagged
projects and changes, which openpyxl's write-only mode takes about a minute over and this a second.

What a table can say, and all it can: per column a header, a width, a number format, text
wrapping and a fill taken from the row (the flag column's red or yellow); a bold, shaded header
row, frozen, with an autofilter over the data. Cell values are str, int, float, Decimal, bool,
date or datetime (dates as Excel date serials with the column's format); None leaves the cell
empty. Strings go in as inline strings (never formulas); characters XML cannot carry must be
removed by the caller. Each sheet's XML goes into the compressed file a block of rows at a time,
so a large sheet is never held whole: only the finished file is.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape, quoteattr

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PACKAGE_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
EPOCH = date(1899, 12, 30)
HEADER_FILL = "DDE4EE"


@dataclass(frozen=True)
class TableColumn:
    header: str
    width: float
    number_format: str | None = None
    wrap: bool = False
    filled: bool = False  # takes the row's fill


@dataclass(frozen=True)
class Table:
    title: str
    columns: Sequence[TableColumn]
    rows: Iterable[Sequence[Any]]  # with a length (a list, a lazy sequence), streamed; without, read first
    fill: Callable[[Sequence[Any]], str | None] | None = None  # a row's RGB fill ("F4C7C3") for the filled columns


def column_letter(index: int) -> str:
    """1 → A, 27 → AA."""
    letters = ""
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


class _Styles:
    """The cell formats used, each (number format, bold, fill, wrap) once, as styles.xml lists them."""

    def __init__(self) -> None:
        self.formats: dict[str, int] = {}
        self.fills: dict[str, int] = {}
        self.xfs: dict[tuple[int, int, int, bool], int] = {(0, 0, 0, False): 0}

    def xf(self, number_format: str | None = None, *, bold: bool = False, fill: str | None = None,
           wrap: bool = False) -> int:
        fmt = self.formats.setdefault(number_format, 164 + len(self.formats)) if number_format else 0
        fill_id = self.fills.setdefault(fill, 2 + len(self.fills)) if fill else 0
        return self.xfs.setdefault((fmt, int(bold), fill_id, wrap), len(self.xfs))

    def xml(self) -> str:
        formats = "".join(f'<numFmt numFmtId="{i}" formatCode={quoteattr(code)}/>' for code, i in self.formats.items())
        fills = "".join(f'<fill><patternFill patternType="solid"><fgColor rgb="FF{rgb}"/><bgColor indexed="64"/>'
                        f"</patternFill></fill>" for rgb in self.fills)
        xfs = "".join(_xf(*key) for key in self.xfs)
        formats = f'<numFmts count="{len(self.formats)}">{formats}</numFmts>' if self.formats else ""
        return (f'{HEAD}<styleSheet xmlns="{MAIN}">{formats}'
                '<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font>'
                '<font><b/><sz val="11"/><name val="Calibri"/></font></fonts>'
                f'<fills count="{2 + len(self.fills)}"><fill><patternFill patternType="none"/></fill>'
                f'<fill><patternFill patternType="gray125"/></fill>{fills}</fills>'
                '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
                '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
                f'<cellXfs count="{len(self.xfs)}">{xfs}</cellXfs>'
                '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>')


def _xf(fmt: int, font: int, fill: int, wrap: bool) -> str:
    attrs = f'numFmtId="{fmt}" fontId="{font}" fillId="{fill}" borderId="0" xfId="0"'
    attrs += ' applyNumberFormat="1"' if fmt else ""
    attrs += ' applyFont="1"' if font else ""
    attrs += ' applyFill="1"' if fill else ""
    if wrap:
        return f'<xf {attrs} applyAlignment="1"><alignment vertical="top" wrapText="1"/></xf>'
    return f"<xf {attrs}/>"


def _text(value: str) -> str:
    if "&" in value or "<" in value or ">" in value:
        value = escape(value)
    return f'<is><t xml:space="preserve">{value}</t></is>'


def _cell(ref: str, value: Any, style: int) -> str:
    s = f' s="{style}"' if style else ""
    if isinstance(value, str):
        return f'<c r="{ref}"{s} t="inlineStr">{_text(value)}</c>'
    if isinstance(value, bool):
        return f'<c r="{ref}"{s} t="b"><v>{int(value)}</v></c>'
    if isinstance(value, datetime):
        delta = value.replace(tzinfo=None) - datetime(1899, 12, 30)
        return f'<c r="{ref}"{s}><v>{delta.days + delta.seconds / 86400}</v></c>'
    if isinstance(value, date):
        return f'<c r="{ref}"{s}><v>{(value - EPOCH).days}</v></c>'
    if isinstance(value, int | float | Decimal):
        return f'<c r="{ref}"{s}><v>{value}</v></c>'
    raise TypeError(f"cannot write {type(value).__name__} to a cell")


ROWS_PER_WRITE = 2_000  # rows of XML handed to the zip entry at a time


def _write_sheet(z: zipfile.ZipFile, part: str, table: Table, styles: _Styles) -> int:
    """Write ``table`` as the worksheet ``part`` of ``z``, its rows streamed into the compressed
    entry a block at a time (never the whole sheet's XML at once); returns its number of rows."""
    columns = list(table.columns)
    rows = table.rows if isinstance(table.rows, Sized) else list(table.rows)
    n = len(rows)
    letters = [column_letter(i) for i in range(1, len(columns) + 1)]
    header_style = styles.xf(bold=True, fill=HEADER_FILL)
    plain = [styles.xf(c.number_format, wrap=c.wrap) for c in columns]
    text_plain = [styles.xf(None, wrap=c.wrap) for c in columns]  # a format only where the value is a number
    cells = "".join(_cell(f"{letter}1", c.header, header_style) for letter, c in zip(letters, columns))
    widths = "".join(f'<col min="{i}" max="{i}" width="{c.width}" customWidth="1"/>'
                     for i, c in enumerate(columns, start=1))
    last = f"{letters[-1]}{n + 1}" if letters else "A1"
    fill_of = table.fill
    with z.open(part, "w") as out:
        out.write((f'{HEAD}<worksheet xmlns="{MAIN}" xmlns:r="{RELS}"><dimension ref="A1:{last}"/>'
                   '<sheetViews><sheetView workbookViewId="0"><pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" '
                   'state="frozen"/><selection pane="bottomLeft" activeCell="A2" sqref="A2"/></sheetView></sheetViews>'
                   f'<sheetFormatPr defaultRowHeight="15"/><cols>{widths}</cols><sheetData>'
                   f'<row r="1">{cells}</row>').encode())
        parts: list[str] = []
        for index, row in enumerate(rows):
            r = index + 2
            fill = fill_of(row) if fill_of is not None else None
            cells_xml = []
            for i, value in enumerate(row):
                if value is None:
                    continue
                column = columns[i]
                if column.filled and fill:
                    style = styles.xf(None, fill=fill, wrap=column.wrap)
                else:
                    style = text_plain[i] if isinstance(value, str) else plain[i]
                cells_xml.append(_cell(f"{letters[i]}{r}", value, style))
            parts.append(f'<row r="{r}">{"".join(cells_xml)}</row>')
            if len(parts) >= ROWS_PER_WRITE:
                out.write("".join(parts).encode())
                parts.clear()
        out.write(("".join(parts) + f'</sheetData><autoFilter ref="A1:{last}"/></worksheet>').encode())
    return n


def write_tables(tables: Sequence[Table]) -> bytes:
    """The tables as one xlsx file, a sheet each in order, each streamed into the file as written."""
    styles = _Styles()
    names = []
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        for index, table in enumerate(tables):
            rows = _write_sheet(z, f"xl/worksheets/sheet{index + 1}.xml", table, styles)
            quoted = "'" + table.title.replace("'", "''") + "'"
            names.append(f'<definedName name="_xlnm._FilterDatabase" localSheetId="{index}" hidden="1">'
                         f'{escape(quoted)}!$A$1:${column_letter(len(table.columns))}${rows + 1}</definedName>')
        count = len(tables)
        workbook = (f'{HEAD}<workbook xmlns="{MAIN}" xmlns:r="{RELS}"><sheets>'
                    + "".join(f'<sheet name={quoteattr(t.title)} sheetId="{i}" r:id="rId{i}"/>'
                              for i, t in enumerate(tables, start=1))
                    + f'</sheets><definedNames>{"".join(names)}</definedNames></workbook>')
        workbook_rels = (f'{HEAD}<Relationships xmlns="{PACKAGE_RELS}">'
                         + "".join(f'<Relationship Id="rId{i}" Type="{RELS}/worksheet" '
                                   f'Target="worksheets/sheet{i}.xml"/>' for i in range(1, count + 1))
                         + f'<Relationship Id="rId{count + 1}" Type="{RELS}/styles" Target="styles.xml"/>'
                         '</Relationships>')
        content_types = (
            f'{HEAD}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            + "".join(f'<Override PartName="/xl/worksheets/sheet{i}.xml" '
                      'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
                      for i in range(1, count + 1))
            + '<Override PartName="/xl/styles.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/></Types>')
        root_rels = (f'{HEAD}<Relationships xmlns="{PACKAGE_RELS}"><Relationship Id="rId1" '
                     f'Type="{RELS}/officeDocument" Target="xl/workbook.xml"/></Relationships>')
        z.writestr("[Content_Types].xml", content_types)
        z.writestr("_rels/.rels", root_rels)
        z.writestr("xl/workbook.xml", workbook)
        z.writestr("xl/_rels/workbook.xml.rels", workbook_rels)
        z.writestr("xl/styles.xml", styles.xml())  # last: the sheets have named every style they use
    return buffer.getvalue()


__all__ = ["Table", "TableColumn", "column_letter", "write_tables"]
