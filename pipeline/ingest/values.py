"""Cell → typed value, over whole columns: one parser per template type (polars expressions).

A cell arrives as text plus, for JSON, a ``Kind`` saying what JSON type it had (spreadsheet and
csv cells are text). Each parser gives a ``Parsed``: the typed value (null when empty or
unreadable), whether the cell is unreadable, and the Chinese message why — an expression that is
evaluated only on the rows that failed. Required-ness and cross-field rules are the validator's.

The scalar helpers here (``display``, ``cell_of``, ``canonical_money``) serve the JSON records and
the error reports.
"""

from __future__ import annotations

import math
import sys
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import IntEnum
from typing import Any

import polars as pl

from pipeline.ingest.template import NATURE_CONTINUING, NATURE_NEW

# Plausible calendar years for every date of the template (and the year part of a project code).
MIN_YEAR = 1990
MAX_YEAR = 2100
# Money is in 万元 with 2 decimals; the database column is Numeric(16, 2).
MAX_MONEY = Decimal("1000000000000")  # 1e12 万元
MAX_MONEY_DIGITS = len(str(int(MAX_MONEY))) - 1  # integer digits of the largest accepted amount
CENT = Decimal("0.01")
MONEY = pl.Decimal(16, 2)

EXCEL_EPOCH = date(1899, 12, 30)  # serial 1 is 1900-01-01 (the 1900 leap-year bug is before 1990)
MIN_SERIAL = (date(MIN_YEAR, 1, 1) - EXCEL_EPOCH).days
MAX_SERIAL = (date(MAX_YEAR, 12, 31) - EXCEL_EPOCH).days

# What str.strip() strips (polars' default strips a slightly different set).
WHITESPACE = "".join(ch for ch in map(chr, range(sys.maxunicode + 1)) if ch.isspace())
# Characters a spreadsheet would read as the start of a formula; export prefixes them with "'".
FORMULA_PREFIXES = ("=", "+", "-", "@")
ESCAPED_PREFIXES = (*FORMULA_PREFIXES, "'")
LIST_ITEM_SEPARATOR = "\x1f"  # between the items of a JSON array of list names
NUL_SHOWN_AS = "␀"  # PostgreSQL refuses NUL in text; reports show this instead

FORMULA_MESSAGE = "单元格是公式，请复制后用“选择性粘贴→数值”粘贴为数值再导入"
INVALID_TEXT_MESSAGE = "含有无法识别的字符（不成对的 Unicode 代理项），请检查文件编码后重新导入"
NUL_MESSAGE = "含有空字符（NUL，\\x00），数据库无法保存，请删除后重新导入"
DATE_HINT = "应为日期，如 2024-03-31、2024/3/31 或 2024年3月31日"
NUMBER_HINT = "应为数字（可带千位分隔符，如 1,234.5）"
NOT_FINITE = "应为有限的数字，不能是 NaN 或无穷大"
TOO_LARGE = "数值过大（单位为万元，请检查是否误填为元）"

_PLAIN_NUMBER = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$"
_GROUPED_NUMBER = r"^[+-]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]*)?$"
# 2024-03-31, 2024/3/31, 2024.3.31, 2024年3月31日: year, then (month, day) in one of four groups.
_DATE = (r"^([0-9]{4})(?:-([0-9]{1,2})-([0-9]{1,2})|/([0-9]{1,2})/([0-9]{1,2})|\.([0-9]{1,2})\.([0-9]{1,2})"
         r"|年([0-9]{1,2})月([0-9]{1,2})日?)$")
# A time after a date: written by a program, or an Excel date cell that carries a time of day.
_TIME = r"[ T](?:[01]?[0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]+)?)?$"
_NUMERIC = r"^[0-9]+(?:\.[0-9]+)?$"
_YES = ["是", "1", "y", "yes", "true", "t", "√"]
_NO = ["否", "0", "n", "no", "false", "f", "×"]


class Kind(IntEnum):
    """What a cell held before it became text (JSON types; spreadsheet and csv cells are TEXT)."""

    TEXT = 0
    NUMBER = 1
    BOOL = 2
    LIST = 3  # a JSON array of strings (items joined by LIST_ITEM_SEPARATOR)
    DATE = 4  # a date or datetime object
    OTHER = 5  # an object, an array of non-strings
    INVALID = 6  # text that cannot be stored (lone surrogates), shown with U+FFFD


@dataclass(frozen=True)
class Cell:
    """One column of cells: its text, its kind (a literal TEXT when the column has no kinds), whether empty.

    ``columns`` collects the intermediate columns a parser needs, stage by stage, named after ``key``;
    expressions refer to them by name, so no expression tree repeats another (polars plans stay small).
    """

    key: str
    text: pl.Expr
    kind: pl.Expr
    empty: pl.Expr  # no value: a missing cell, or text that is only whitespace
    columns: list[list[pl.Expr]]

    def is_(self, *kinds: Kind) -> pl.Expr:
        return self.kind.is_in([int(k) for k in kinds])

    def step(self, stage: int, name: str, expr: pl.Expr) -> pl.Expr:
        """An intermediate column computed at ``stage`` (0 sees the cell; n sees stages below n)."""
        while len(self.columns) <= stage:
            self.columns.append([])
        column = f"{name}#{self.key}"
        self.columns[stage].append(expr.alias(column))
        return pl.col(column)


def is_empty(text: pl.Expr, kind: pl.Expr) -> pl.Expr:
    return text.is_null() | ((kind == int(Kind.TEXT)) & (text.str.strip_chars(WHITESPACE) == ""))


@dataclass(frozen=True)
class Parsed:
    """A column parsed: typed value (null when empty or bad), unreadable cells, and why (Chinese)."""

    value: pl.Expr
    bad: pl.Expr
    message: pl.Expr


def _nfkc(texts: pl.Series) -> pl.Series:
    """NFKC of the values that need it: ASCII text is its own NFKC form (and normalising is slow)."""
    wide = texts.str.contains(r"[^\x00-\x7f]").fill_null(False)
    if not wide.any():
        return texts
    if wide.all():
        return texts.str.normalize("NFKC")
    return texts.scatter(wide.arg_true(), texts.filter(wide).str.normalize("NFKC"))


def nfkc(text: pl.Expr) -> pl.Expr:
    """Fold full-width forms (ＡＢＣ１２３、（）) and other compatibility characters to their plain forms."""
    return text.map_batches(_nfkc, return_dtype=pl.Utf8, is_elementwise=True)


def normalised(text: pl.Expr) -> pl.Expr:
    """Strip, and fold full-width forms (ＡＢＣ１２３、（）) to their ASCII forms."""
    return nfkc(text).str.strip_chars(WHITESPACE)


def _failed(cell: Cell, value: pl.Expr) -> pl.Expr:
    return ~cell.empty & value.is_null()


# ---------------------------------------------------------------- per type


def parse_text(cell: Cell, *, max_length: int) -> Parsed:
    wrong_type = cell.step(0, "wrong", cell.is_(Kind.BOOL, Kind.LIST, Kind.DATE, Kind.OTHER) | (
        cell.is_(Kind.NUMBER) & cell.text.str.contains("[a-z]")  # nan, inf
    ))
    text = cell.step(0, "strip", cell.text.str.strip_chars(WHITESPACE))
    nul = cell.step(1, "nul", text.str.contains("\x00", literal=True))
    length = cell.step(1, "len", text.str.len_chars())
    bad = ~cell.empty & (wrong_type | nul | (length > max_length))
    message = (
        pl.when(wrong_type).then(pl.lit("应为文本"))
        .when(nul).then(pl.lit(NUL_MESSAGE))
        .otherwise(pl.format("内容过长（{}个字符，最多{}个字符）", length, pl.lit(max_length)))
    )
    return Parsed(pl.when(cell.empty | bad).then(None).otherwise(text), bad, message)


def parse_number(cell: Cell) -> Parsed:
    """A finite number in 万元, rounded half up to cents; text may carry thousands separators (1,234.5)."""
    t = cell.step(0, "norm", normalised(cell.text).str.replace_all(" ", "", literal=True))
    readable = cell.is_(Kind.TEXT, Kind.NUMBER)
    number = cell.step(1, "number", pl.when(~readable).then(None)
                       .when(t.str.contains(_GROUPED_NUMBER)).then(t.str.replace_all(",", "", literal=True))
                       .when(t.str.contains(_PLAIN_NUMBER)).then(t))
    not_finite = readable & t.str.to_lowercase().str.strip_chars_start("+-").is_in(["nan", "inf", "infinity"])
    body = number.str.strip_chars_start("+-")
    digits = cell.step(2, "digits", body.str.extract(r"^([0-9]*)", 1).str.strip_chars_start("0"))
    fraction = cell.step(2, "fraction", pl.concat_str([body.str.extract(r"\.([0-9]*)$", 1).fill_null(""), pl.lit("000")]))
    too_large = digits.str.len_bytes() > MAX_MONEY_DIGITS
    cents = (
        pl.when(digits == "").then(0).otherwise(digits.str.slice(0, MAX_MONEY_DIGITS).cast(pl.Int64)) * 100
        + fraction.str.slice(0, 2).cast(pl.Int64)
        + (fraction.str.slice(2, 1) >= "5").cast(pl.Int64)
    )
    signed = cell.step(3, "cents", pl.when(number.str.starts_with("-")).then(-cents).otherwise(cents))
    value = cell.step(4, "money", pl.when(cell.empty | number.is_null() | too_large).then(None)
                      .otherwise(signed.cast(pl.Decimal(18, 2)) / 100).cast(MONEY))
    message = (
        pl.when(~readable).then(pl.lit("应为数字"))
        .when(not_finite).then(pl.lit(NOT_FINITE))
        .when(number.is_null()).then(pl.lit(NUMBER_HINT))
        .otherwise(pl.lit(TOO_LARGE))
    )
    return Parsed(value, _failed(cell, value), message)


def parse_date(cell: Cell) -> Parsed:
    """Dates: 2024-03-31 / 2024/3/31 / 2024.3.31 / 2024年3月31日 (a time after it is ignored), Excel serials."""
    t = cell.step(0, "norm", normalised(cell.text).str.replace(_TIME, "").str.replace_all(" ", "", literal=True))
    parts = cell.step(1, "parts", t.str.extract_groups(_DATE))
    numeric = cell.step(1, "numeric", (cell.is_(Kind.TEXT) & t.str.contains(_NUMERIC)) | cell.is_(Kind.NUMBER))
    year = cell.step(2, "year", parts.struct.field("1"))
    month = cell.step(2, "month", pl.coalesce(*(parts.struct.field(str(i)) for i in (2, 4, 6, 8))))
    day = cell.step(2, "day", pl.coalesce(*(parts.struct.field(str(i)) for i in (3, 5, 7, 9))))
    serial = cell.step(2, "serial", pl.when(numeric).then(t.cast(pl.Float64, strict=False)))
    written = cell.step(3, "written", cell.is_(Kind.TEXT, Kind.DATE) & year.is_not_null())
    calendar = cell.step(3, "calendar", pl.concat_str([year, pl.lit("-"), month.str.zfill(2), pl.lit("-"), day.str.zfill(2)])
                         .str.to_date("%Y-%m-%d", strict=False))
    from_serial = cell.step(3, "from_serial", pl.when(serial.is_between(MIN_SERIAL, MAX_SERIAL))
                            .then(pl.lit(EXCEL_EPOCH) + pl.duration(days=serial.floor().cast(pl.Int64))))
    value = cell.step(4, "date", pl.when(cell.empty).then(None)
                      .when(written & calendar.dt.year().is_between(MIN_YEAR, MAX_YEAR)).then(calendar)
                      .otherwise(from_serial).cast(pl.Date))
    as_int = lambda part: part.cast(pl.Int32).cast(pl.Utf8)  # noqa: E731  "03" → "3", as a user writes it
    message = (
        pl.when(written & calendar.is_null())
        .then(pl.format("不是有效的日期（{}年{}月{}日不存在）", as_int(year), as_int(month), as_int(day)))
        .when(written).then(pl.lit(f"日期超出合理范围（{MIN_YEAR}—{MAX_YEAR}年）"))
        .when(cell.is_(Kind.NUMBER)).then(pl.format("应为日期；数字 {} 不是合理的 Excel 日期序号", cell.text))
        .when(numeric).then(pl.format(f"{DATE_HINT}；数字 {{}} 不是合理的 Excel 日期序号", t))
        .otherwise(pl.lit(DATE_HINT))
    )
    return Parsed(value, _failed(cell, value), message)


def parse_nature(cell: Cell) -> Parsed:
    t = normalised(cell.text)
    value = cell.step(0, "nature", pl.when(cell.is_(Kind.TEXT) & t.is_in([NATURE_NEW, NATURE_CONTINUING])).then(t))
    return Parsed(value, _failed(cell, value), pl.lit(f"建设性质应为“{NATURE_NEW}”或“{NATURE_CONTINUING}”"))


def parse_yes_no(cell: Cell) -> Parsed:
    """是/否 (also 1/0, Y/N, true/false); empty means 否."""
    t = cell.step(0, "lower", normalised(cell.text).str.to_lowercase())
    number = cell.step(0, "number", pl.when(cell.is_(Kind.NUMBER)).then(cell.text.cast(pl.Float64, strict=False)))
    answer = cell.step(1, "answer", pl.when(cell.empty).then(False)
                       .when(cell.is_(Kind.BOOL)).then(cell.text == "True")
                       .when(number.is_in([0.0, 1.0])).then(number == 1.0)
                       .when(cell.is_(Kind.TEXT) & t.is_in(_YES)).then(True)
                       .when(cell.is_(Kind.TEXT) & t.is_in(_NO)).then(False))
    return Parsed(answer.fill_null(False), answer.is_null(), pl.lit("应为“是”或“否”"))


def parse_lists(cell: Cell) -> Parsed:
    """The list names of a cell: ';'-separated (also '；' and '、'), or a JSON array; duplicates dropped."""
    joined = pl.when(cell.is_(Kind.LIST)).then(cell.text.str.replace_all(LIST_ITEM_SEPARATOR, ";", literal=True)) \
        .when(cell.is_(Kind.TEXT)).then(cell.text.str.replace_all("[；、]", ";"))
    names = cell.step(0, "names", joined.fill_null("").str.split(";")
                      .list.eval(normalised(pl.element()))
                      .list.eval(pl.element().filter(pl.element() != ""))
                      .list.unique(maintain_order=True))
    bad = ~cell.empty & ~cell.is_(Kind.LIST, Kind.TEXT)
    return Parsed(pl.when(bad).then(None).otherwise(names), bad, pl.lit("所属清单应为清单名称，以“;”分隔"))


# ---------------------------------------------------------------- scalars


def canonical_money(value: Decimal) -> Decimal:
    """Round to 2 decimals (half up) and drop trailing zeros, so equal amounts hash alike."""
    value = value.quantize(CENT, rounding=ROUND_HALF_UP)
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def money_text(expr: pl.Expr) -> pl.Expr:
    """A Decimal(16, 2) column as ``str(canonical_money(x))``: 50000, 1234.5, 0.05 (its text always has 2 decimals)."""
    return expr.cast(pl.Utf8).str.strip_chars_end("0").str.strip_chars_end(".")


def escape_text(value: str) -> str:
    """Neutralise text a spreadsheet would run as a formula: "-foo" → "'-foo" (and "'x" → "''x")."""
    return "'" + value if value.startswith(ESCAPED_PREFIXES) else value


def unescape_text(text: pl.Expr) -> pl.Expr:
    """Undo ``escape_text`` for spreadsheet cells: "'-foo" → "-foo", "''x" → "'x"."""
    return pl.when(text.str.contains(r"^'[=+\-@']")).then(text.str.slice(1)).otherwise(text)


def looks_like_formula(text: pl.Expr) -> pl.Expr:
    return text.str.strip_chars_start(WHITESPACE).str.starts_with("=")


def storable(text: str) -> str:
    """Text any database keeps: NUL and lone surrogates replaced by visible stand-ins."""
    text = text.replace("\x00", NUL_SHOWN_AS)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


def number_text(value: float | int | Decimal) -> str:
    """A JSON number as plain digits (no exponent): 12, 1234.5, 0.00000015; "nan", "inf" as written."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return str(int(value)) if value.is_integer() else format(Decimal(repr(value)), "f")
    if isinstance(value, int):
        value = Decimal(value)  # str() of an int refuses past 4300 digits; Decimal has no such limit
    if not value.is_finite():
        return "nan" if value.is_nan() else ("-inf" if value < 0 else "inf")
    return format(value, "f")


def cell_of(value: Any) -> tuple[str | None, Kind]:
    """A JSON (or Python) value as the text and kind the column parsers read."""
    if value is None:
        return None, Kind.TEXT
    if isinstance(value, str):
        return (value, Kind.TEXT) if _encodable(value) else (storable(value), Kind.INVALID)
    if isinstance(value, bool):
        return str(value), Kind.BOOL
    if isinstance(value, (int, float, Decimal)):
        return number_text(value), Kind.NUMBER
    if isinstance(value, datetime):
        return value.isoformat(sep=" "), Kind.DATE
    if isinstance(value, date):
        return value.isoformat(), Kind.DATE
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        if not all(_encodable(item) for item in value):
            return display(value), Kind.INVALID
        return LIST_ITEM_SEPARATOR.join(value), Kind.LIST
    return display(value), Kind.OTHER


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def display(raw: Any) -> str | None:
    """The raw value as the user would recognise it, for error reports (storable, at most 200 characters)."""
    if raw is None:
        return None
    if isinstance(raw, datetime):
        text = raw.isoformat(sep=" ")
    elif isinstance(raw, date):
        text = raw.isoformat()
    elif isinstance(raw, float):
        text = str(int(raw)) if raw.is_integer() else str(raw)
    elif isinstance(raw, int) and not isinstance(raw, bool):
        text = number_text(raw)
    elif isinstance(raw, (list, tuple)):
        text = ";".join(display(x) or "" for x in raw)
    else:
        try:
            text = str(raw)
        except ValueError:  # a container holding an integer too long to print
            text = "（无法显示的值）"
    text = storable(text)
    return text if len(text) <= 200 else text[:200] + "…"


def normalise_text(raw: str) -> str:
    """Strip, and fold full-width forms (ＡＢＣ１２３、（）) to their ASCII forms."""
    return unicodedata.normalize("NFKC", raw).strip()
