"""Cell → typed value: one parser per template type, each raising ``BadValue`` with a Chinese message.

A raw cell is whatever a reader produced: ``None``, ``str`` (csv, jsonl, xlsx text), ``float``/``int``
(xlsx numbers, JSON numbers), ``bool`` (JSON), ``date``/``datetime`` (xlsx date cells), or a list
(JSON lists). Parsers return ``None`` for an empty cell; required-ness is the validator's business.
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from pipeline.ingest.template import NATURE_CONTINUING, NATURE_NEW

# Plausible calendar years for every date of the template (and the year part of a project code).
MIN_YEAR = 1990
MAX_YEAR = 2100
# Money is in 万元 with 2 decimals; the database column is Numeric(16, 2).
MAX_MONEY = Decimal("1000000000000")  # 1e12 万元
CENT = Decimal("0.01")

_EXCEL_EPOCH = date(1899, 12, 30)  # serial 1 is 1900-01-01 (the 1900 leap-year bug is before 1990)
_MIN_SERIAL = (date(MIN_YEAR, 1, 1) - _EXCEL_EPOCH).days
_MAX_SERIAL = (date(MAX_YEAR, 12, 31) - _EXCEL_EPOCH).days

_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_GROUPED_NUMBER = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")
_DATE_PATTERNS = (
    re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})"),
    re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})"),
    re.compile(r"(\d{4})\.(\d{1,2})\.(\d{1,2})"),
    re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})日?"),
)
# A date written by a program that also wrote a midnight time ("2024-03-31 00:00:00", "...T00:00").
_MIDNIGHT = re.compile(r"(?:[ T]0{1,2}:00(?::00(?:\.0+)?)?)$")
_SERIAL_TEXT = re.compile(r"\d{5}(?:\.0+)?")
_LIST_SEPARATORS = re.compile(r"[;；、]")
_YES = frozenset({"是", "1", "y", "yes", "true", "t", "√"})
_NO = frozenset({"否", "0", "n", "no", "false", "f", "×"})
# Characters a spreadsheet would read as the start of a formula; export prefixes them with "'".
FORMULA_PREFIXES = ("=", "+", "-", "@")
ESCAPED_PREFIXES = (*FORMULA_PREFIXES, "'")


class BadValue(ValueError):
    """A cell's value cannot be used; the message (Chinese) says why."""


def is_empty(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip())


def normalise_text(raw: str) -> str:
    """Strip, and fold full-width forms (ＡＢＣ１２３、（）) to their ASCII forms."""
    return unicodedata.normalize("NFKC", raw).strip()


def escape_text(value: str) -> str:
    """Neutralise text a spreadsheet would run as a formula: "-foo" → "'-foo" (and "'x" → "''x")."""
    return "'" + value if value.startswith(ESCAPED_PREFIXES) else value


def unescape_text(value: str) -> str:
    """Undo ``escape_text`` for a spreadsheet cell: "'-foo" → "-foo", "''x" → "'x"."""
    if len(value) > 1 and value[0] == "'" and value[1] in ESCAPED_PREFIXES:
        return value[1:]
    return value


def looks_like_formula(raw: Any) -> bool:
    return isinstance(raw, str) and raw.lstrip().startswith("=")


def _number_as_text(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_text(raw: Any, *, max_length: int) -> str | None:
    if is_empty(raw):
        return None
    if isinstance(raw, bool):
        raise BadValue("应为文本")
    if isinstance(raw, (int, float)):
        if isinstance(raw, float) and not math.isfinite(raw):
            raise BadValue("应为文本")
        text = _number_as_text(raw)
    elif isinstance(raw, str):
        text = raw.strip()
    else:
        raise BadValue("应为文本")
    if len(text) > max_length:
        raise BadValue(f"内容过长（{len(text)}个字符，最多{max_length}个字符）")
    return text


def canonical_money(value: Decimal) -> Decimal:
    """Round to 2 decimals (half up) and drop trailing zeros, so equal amounts hash alike."""
    value = value.quantize(CENT, rounding=ROUND_HALF_UP)
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def parse_number(raw: Any) -> Decimal | None:
    """A finite number; text may carry thousands separators (1,234.5). Sign rules are the validator's."""
    if is_empty(raw):
        return None
    if isinstance(raw, bool):
        raise BadValue("应为数字")
    if isinstance(raw, int):
        value = Decimal(raw)
    elif isinstance(raw, float):
        if not math.isfinite(raw):
            raise BadValue("应为有限的数字，不能是 NaN 或无穷大")
        value = Decimal(repr(raw))
    elif isinstance(raw, Decimal):
        if not raw.is_finite():
            raise BadValue("应为有限的数字，不能是 NaN 或无穷大")
        value = raw
    elif isinstance(raw, str):
        text = normalise_text(raw).replace(" ", "")
        if _PLAIN_NUMBER.fullmatch(text):
            value = Decimal(text)
        elif _GROUPED_NUMBER.fullmatch(text):
            value = Decimal(text.replace(",", ""))
        elif text.lower().lstrip("+-") in ("nan", "inf", "infinity"):
            raise BadValue("应为有限的数字，不能是 NaN 或无穷大")
        else:
            raise BadValue("应为数字（可带千位分隔符，如 1,234.5）")
    else:
        raise BadValue("应为数字")
    if abs(value) >= MAX_MONEY:
        raise BadValue("数值过大（单位为万元，请检查是否误填为元）")
    try:
        return canonical_money(value)
    except InvalidOperation as exc:  # pragma: no cover - guarded by the range check above
        raise BadValue("应为数字") from exc


def _checked_date(year: int, month: int, day: int) -> date:
    try:
        value = date(year, month, day)
    except ValueError as exc:
        raise BadValue(f"不是有效的日期（{year}年{month}月{day}日不存在）") from exc
    return _in_range(value)


def _in_range(value: date) -> date:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise BadValue(f"日期超出合理范围（{MIN_YEAR}—{MAX_YEAR}年）")
    return value


def _from_serial(serial: float) -> date:
    if not math.isfinite(serial) or not _MIN_SERIAL <= serial <= _MAX_SERIAL:
        raise BadValue(f"应为日期；数字 {_number_as_text(serial)} 不是合理的 Excel 日期序号")
    return _EXCEL_EPOCH + timedelta(days=int(serial))


_DATE_HINT = "应为日期，如 2024-03-31、2024/3/31 或 2024年3月31日"


def parse_date(raw: Any) -> date | None:
    """Dates: Excel date cells, Excel serial numbers, and 2024-03-31 / 2024/3/31 / 2024.3.31 / 2024年3月31日."""
    if is_empty(raw):
        return None
    if isinstance(raw, datetime):
        return _in_range(raw.date())
    if isinstance(raw, date):
        return _in_range(raw)
    if isinstance(raw, bool) or isinstance(raw, (time, timedelta)):
        raise BadValue(_DATE_HINT)
    if isinstance(raw, (int, float)):
        return _from_serial(float(raw))
    if not isinstance(raw, str):
        raise BadValue(_DATE_HINT)
    text = _MIDNIGHT.sub("", normalise_text(raw)).replace(" ", "")
    for pattern in _DATE_PATTERNS:
        match = pattern.fullmatch(text)
        if match:
            return _checked_date(int(match[1]), int(match[2]), int(match[3]))
    if _SERIAL_TEXT.fullmatch(text):
        return _from_serial(float(text))
    raise BadValue(_DATE_HINT)


def parse_nature(raw: Any) -> str | None:
    if is_empty(raw):
        return None
    text = normalise_text(raw) if isinstance(raw, str) else None
    if text in (NATURE_NEW, NATURE_CONTINUING):
        return text
    raise BadValue(f"建设性质应为“{NATURE_NEW}”或“{NATURE_CONTINUING}”")


def parse_yes_no(raw: Any) -> bool:
    """是/否 (also 1/0, Y/N, true/false); empty means 否."""
    if is_empty(raw):
        return False
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, (int, float)) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        text = normalise_text(raw).lower()
        if text in _YES:
            return True
        if text in _NO:
            return False
    raise BadValue("应为“是”或“否”")


def split_lists(raw: Any) -> tuple[str, ...]:
    """The list names of a cell: ';'-separated (also '；' and '、'), or a JSON array; duplicates dropped."""
    if is_empty(raw):
        return ()
    if isinstance(raw, (list, tuple)):
        parts = []
        for item in raw:
            if not isinstance(item, str):
                raise BadValue("所属清单应为清单名称，以“;”分隔")
            parts.append(item)
    elif isinstance(raw, str):
        parts = _LIST_SEPARATORS.split(raw)
    else:
        raise BadValue("所属清单应为清单名称，以“;”分隔")
    names: list[str] = []
    for part in parts:
        name = normalise_text(part)
        if name and name not in names:
            names.append(name)
    return tuple(names)


def display(raw: Any) -> str | None:
    """The raw value as the user would recognise it, for error reports."""
    if raw is None:
        return None
    if isinstance(raw, datetime):
        return raw.isoformat(sep=" ")
    if isinstance(raw, date):
        return raw.isoformat()
    if isinstance(raw, float):
        return _number_as_text(raw) if math.isfinite(raw) else str(raw)
    if isinstance(raw, (list, tuple)):
        return ";".join(str(x) for x in raw)
    text = str(raw)
    return text if len(text) <= 200 else text[:200] + "…"
