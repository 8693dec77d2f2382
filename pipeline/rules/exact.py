"""Exact numbers for the rules: rounding and the text of a value, for one value and for a column.

Reason values are JSON numbers whose Python types are part of the contract: a money amount is an
``int`` when whole and a ``float`` otherwise (``number``), a ratio or percentage is a ``float``
rounded half away from zero (``rounded``). The columnar engine never rounds in floating point:
it carries amounts as integers (cents; Int64, or Int128 where products need it) and writes the
digits of ``whole / 10**places`` itself. For |whole| < 10**15 (at most 15 significant digits)
those digits are exactly what Python's ``repr`` of the float shows, so the text is the one
``json.dumps`` would write; the rare larger values are written by Python, row by row
(``python_texts``). (Polars' own float division is not always correctly rounded, so no float
is ever divided.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any

import polars as pl

NONE_TEXT = "（未填写）"  # how a missing value reads in a message
INT128_SAFE = 2**126  # products stay below this, with room for one more addition
REPR_EXACT = 10**15  # integers below this (15 significant digits) print exactly as a float's repr


# --- one value ----------------------------------------------------------------------------------


def number(value: Decimal | int | None) -> int | float | None:
    """A Decimal as an int when integral, else a float (None stays None)."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def rounded(value: Fraction, places: int) -> float:
    """``value`` rounded half away from zero to ``places`` decimals, as a float."""
    scale = 10**places
    num, den = value.numerator, value.denominator  # den > 0
    whole = (2 * abs(num) * scale + den) // (2 * den)  # floor(|value| × scale + 1/2), in integers
    return (whole if num >= 0 else -whole) / scale


def show(value: Any) -> Any:
    """How a value reads in a message: None as （未填写）, an integral float as an int."""
    if value is None:
        return NONE_TEXT
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def json_text(value: Any) -> str:
    """The JSON text of one value, as ``json.dumps(..., ensure_ascii=False)`` writes it."""
    return json.dumps(value, ensure_ascii=False)


def message_text(value: Any) -> str:
    """The text of one value in a message, escaped for use inside a JSON string."""
    return json_text(str(show(value)))[1:-1]


def half_away(num: int, den: int) -> int:
    """num / den (den > 0) rounded half away from zero to an integer."""
    whole = (2 * abs(num) + den) // (2 * den)
    return whole if num >= 0 else -whole


# --- a column -----------------------------------------------------------------------------------


def half_away_expr(num: pl.Expr, den: pl.Expr | int, dtype: pl.DataType) -> pl.Expr:
    """num / den (den > 0, integers of ``dtype``, no overflow: the caller checks its bounds)
    rounded half away from zero to an integer."""
    den_expr = den if isinstance(den, pl.Expr) else pl.lit(den, dtype=dtype)
    whole = (num.abs() * 2 + den_expr) // (den_expr * 2)
    return pl.when(num < 0).then(pl.lit(0, dtype=dtype) - whole).otherwise(whole)  # (Int128 has no negation)


def python_texts(fn: Callable[[Any], tuple[str, str]], column: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(JSON text, message text) of each value computed by Python: the exact way for values too
    large for the integer path. Runs only over the rows a reason is built for."""

    def batch(series: pl.Series) -> pl.Series:
        pairs = [fn(v) for v in series.to_list()]
        return pl.Series([{"j": j, "m": m} for j, m in pairs], dtype=pl.Struct({"j": pl.String, "m": pl.String}))

    both = column.map_batches(batch, return_dtype=pl.Struct({"j": pl.String, "m": pl.String}))
    return both.struct.field("j"), both.struct.field("m")


@lru_cache(maxsize=8)
def _fraction_digits(places: int, integral: str) -> pl.Series:
    """Text after the integer part for each remainder 0 .. 10**places − 1: "" (or ``integral``)
    for 0, else "." and the digits without trailing zeros (25 → ".25" for two places)."""
    texts = [integral] + [("." + str(i).zfill(places).rstrip("0")) for i in range(1, 10**places)]
    return pl.Series(texts, dtype=pl.String)


def decimal_texts(whole: pl.Expr, places: int, *, as_number: bool, exact_repr: bool) -> tuple[pl.Expr, pl.Expr]:
    """(JSON text, message text) of ``whole / 10**places`` (``whole`` an integer expression).

    ``as_number``: the value is ``number()`` of a Decimal (an int when integral), else a float
    from ``rounded`` (integral floats keep their ``.0`` in JSON). ``exact_repr`` promises
    |whole| < 10**15 for every row; otherwise Python writes the text.
    """
    scale = 10**places
    if not exact_repr:
        def py(w: int) -> tuple[str, str]:
            if as_number and w % scale == 0:
                value: int | float = w // scale
            else:
                value = w / scale  # int / int: the correctly rounded float, as rounded() gives
            return json_text(value), message_text(value)

        return python_texts(py, whole)
    magnitude = whole.abs()
    sign = pl.when(whole < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    integral = (magnitude // scale).cast(pl.String)
    if places == 0:
        text = pl.concat_str([sign, integral])
        return (text if as_number else pl.concat_str([text, pl.lit(".0")])), text
    remainder = (magnitude % scale).cast(pl.UInt32)
    message = pl.concat_str([sign, integral, pl.lit(_fraction_digits(places, "")).gather(remainder)])
    if as_number:
        return message, message
    return pl.concat_str([sign, integral, pl.lit(_fraction_digits(places, ".0")).gather(remainder)]), message


def integer_type(bounds: Iterable[int]) -> pl.DataType | None:
    """The narrowest integer type whose products stay exact under ``bounds``: Int64, Int128, or
    None (Python integers needed)."""
    largest = max(bounds, default=0)
    if largest < 2**62:
        return pl.Int64()
    if largest < INT128_SAFE:
        return pl.Int128()
    return None


__all__ = [
    "INT128_SAFE", "NONE_TEXT", "REPR_EXACT", "decimal_texts", "half_away", "half_away_expr", "integer_type",
    "json_text", "message_text", "number", "python_texts", "rounded", "show",
]
