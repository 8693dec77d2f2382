"""How each metric is measured over a column of projects (the columnar side of ``metrics``).

A ``Measure`` gives, over the engine's working frame (``frame.prepare``):
- ``value``: the metric's value as a column, null where the metric does not apply (None for the
  pace metrics, whose bands are tested on the amounts directly);
- ``predicate``: a colour band as a boolean expression (false or null where it does not apply);
- ``values``: the reason's values (JSON text and message text per key), built over the rows where
  the rule fires, after the ``prelude`` columns they read.

Everything is exact:
- day counts and delay months are integers; a band's fractional threshold becomes the integer
  bound it implies (days ≥ 1.5 ⟺ days ≥ 2);
- the pace metrics are affine in q = ytd / plan (both in cents): value = α + β·q with α, β
  exact fractions known per call (f(D), the ytd scale), so "value ≥ t" is the integer comparison
  ``ytd × c.den ≥ plan × c.num`` for c = (t − α) / β, and a rounded value is an integer division,
  in Int64 when the chunk's amounts allow, else Int128, else (never for real amounts) Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Protocol

import polars as pl

from pipeline.rules.exact import (
    REPR_EXACT, decimal_texts, half_away, half_away_expr, integer_type, json_text, message_text, python_texts, rounded,
)
from pipeline.rules.frame import PLAN_CENTS, PREV_BASE, YTD_CENTS

if TYPE_CHECKING:
    from pipeline.rules.metrics import AsOf
    from pipeline.rules.scheme import Band

BASE = "__base"  # the base colour rank now, for derived metrics
EPOCH = date(1970, 1, 1)
INT_LIMIT = 2**30  # beyond any day count or month number: a threshold past it is clamped

Shown = tuple[pl.Expr | str, pl.Expr | str]  # (JSON text of a value, its text in a message, JSON-escaped)
Prelude = dict[str, pl.Expr]  # helper columns the shown values read, computed first


@dataclass(frozen=True)
class MoneyBounds:
    """The largest amounts of the rows at hand (cents), which decide the integer type."""

    ytd: int = 0  # max |ytd_completed|
    plan: int = 0  # max |annual_plan|
    plan_min: int = 1  # min annual_plan among plans > 0

    @classmethod
    def of(cls, work: pl.DataFrame) -> MoneyBounds:
        ytd, plan = pl.col(YTD_CENTS), pl.col(PLAN_CENTS)
        row = work.select(
            ytd.max().alias("a"), ytd.min().alias("b"), plan.max().alias("c"), plan.min().alias("d"),
            plan.filter(plan > 0).min().alias("e"),
        ).row(0)
        y_max, y_min, p_max, p_min, p_pos = (v or 0 for v in row)
        return cls(ytd=max(abs(y_max), abs(y_min)), plan=max(abs(p_max), abs(p_min)), plan_min=p_pos or 1)


@dataclass(frozen=True)
class Day:
    """What every measure needs of one call: D, the ytd scale, and the money bounds."""

    at: AsOf
    scale: Fraction
    money: MoneyBounds

    @property
    def days(self) -> int:
        return (self.at.date - EPOCH).days


class Measure(Protocol):
    derived: bool  # reads the base colour now and before (``BASE``, ``prev_base``), not the row
    reads: tuple[str, ...]  # working columns its values read

    def value(self, day: Day) -> pl.Expr | None:
        """The metric's value, null where it does not apply (None: none as a column)."""

    def predicate(self, band: Band, day: Day, value: pl.Expr | None) -> pl.Expr:
        """True where the metric applies and its value lies in ``band``; ``value`` is the
        materialised ``value(day)``."""

    def values(self, day: Day, value: pl.Expr | None) -> tuple[Prelude, dict[str, Shown]]:
        """The reason's values, over the rows where the rule fires."""


def constant(value: Any) -> Shown:
    """A value the same on every row: literal text."""
    return json_text(value), message_text(value)


def date_shown(column: str) -> Shown:
    text = pl.col(column).cast(pl.String)
    return pl.concat_str([pl.lit('"'), text, pl.lit('"')]), text


def int_shown(expr: pl.Expr) -> Shown:
    text = expr.cast(pl.String)
    return text, text


def days_before(day: Day, column: str) -> pl.Expr:
    """D minus the date in ``column``, in whole days (Int32: dates are days since 1970)."""
    return pl.lit(day.days, dtype=pl.Int32) - pl.col(column).cast(pl.Int32)


# --- whole numbers: days, months ---------------------------------------------------------------


def integer_interval(band: Band) -> tuple[int | None, int | None]:
    """The integer values in a band: (lowest, highest), None for unbounded; clamped to ±2**30."""
    low, low_closed, high, high_closed = band.interval()
    lo = hi = None
    if low is not None:
        f = Fraction(low)
        lo = -(-f.numerator // f.denominator) if low_closed else f.numerator // f.denominator + 1
        lo = max(-INT_LIMIT, min(lo, INT_LIMIT))
    if high is not None:
        f = Fraction(high)
        hi = f.numerator // f.denominator if high_closed else -(-f.numerator // f.denominator) - 1
        hi = max(-INT_LIMIT, min(hi, INT_LIMIT))
    return lo, hi


@dataclass(frozen=True)
class Valued:
    """A metric with a value column: ``compute(day)``, null where the metric does not apply."""

    compute: Callable[[Day], pl.Expr]
    shown: Callable[[Day, pl.Expr], dict[str, Shown]]
    reads: tuple[str, ...]
    derived: bool = False

    def value(self, day: Day) -> pl.Expr:
        return self.compute(day)

    def values(self, day: Day, value: pl.Expr | None) -> tuple[Prelude, dict[str, Shown]]:
        assert value is not None
        return {}, self.shown(day, value)


class Count(Valued):
    """An integer metric (Int32)."""

    def predicate(self, band: Band, day: Day, value: pl.Expr | None) -> pl.Expr:
        assert value is not None
        lo, hi = integer_interval(band)
        if lo is not None and hi is not None:
            return (value >= pl.lit(lo, dtype=pl.Int32)) & (value <= pl.lit(hi, dtype=pl.Int32))
        if lo is not None:
            return value >= pl.lit(lo, dtype=pl.Int32)
        if hi is not None:
            return value <= pl.lit(hi, dtype=pl.Int32)
        return value.is_not_null()


class Flagged(Valued):
    """A boolean metric: true where it applies, null elsewhere (a band ``equals: false`` never fires)."""

    def predicate(self, band: Band, day: Day, value: pl.Expr | None) -> pl.Expr:
        assert value is not None
        return value == pl.lit(bool(band.equals))


def _not_started_before(day: Day) -> pl.Expr:
    return pl.col("actual_start").is_null() & (pl.col("planned_start") < day.at.date)


def start_overdue_days(day: Day) -> pl.Expr:
    return pl.when(_not_started_before(day)).then(days_before(day, "planned_start"))


def start_delay_month(day: Day) -> pl.Expr:
    ps = pl.col("planned_start")
    months = ps.dt.year().cast(pl.Int32) * 12 + ps.dt.month().cast(pl.Int32)
    return pl.when(_not_started_before(day)).then(pl.lit(day.at.year * 12 + day.at.month + 1, dtype=pl.Int32) - months)


def _overdue_values(day: Day, value: pl.Expr) -> dict[str, Shown]:
    return {
        "planned_start": date_shown("planned_start"),
        "overdue_days": int_shown(days_before(day, "planned_start")),
        "as_of": constant(day.at.iso),
    }


def _delay_values(day: Day, value: pl.Expr) -> dict[str, Shown]:
    return {**_overdue_values(day, value), "delay_month": int_shown(value)}


def completion_overdue_days(day: Day) -> pl.Expr:
    open_after = pl.col("actual_completion").is_null() & (pl.col("planned_completion") < day.at.date)
    return pl.when(open_after).then(days_before(day, "planned_completion"))


def _completion_values(day: Day, value: pl.Expr) -> dict[str, Shown]:
    return {"planned_completion": date_shown("planned_completion"), "overdue_days": int_shown(value),
            "as_of": constant(day.at.iso)}


def days_since_start_not_in_stats(day: Day) -> pl.Expr:
    started_not_in_stats = pl.col("actual_start").is_not_null() & pl.col("stats_included_on").is_null()
    return pl.when(started_not_in_stats).then(days_before(day, "actual_start"))


def _not_in_stats_values(day: Day, value: pl.Expr) -> dict[str, Shown]:
    return {"actual_start": date_shown("actual_start"), "days_since_start": int_shown(value), "as_of": constant(day.at.iso)}


def days_since_report(day: Day) -> pl.Expr:
    return days_before(day, "as_of")


def _report_values(day: Day, value: pl.Expr) -> dict[str, Shown]:
    return {"report_date": date_shown("as_of"), "days_since_report": int_shown(value), "as_of": constant(day.at.iso)}


START_OVERDUE_DAYS = Count(start_overdue_days, _overdue_values, ("planned_start",))
START_DELAY_MONTH = Count(start_delay_month, _delay_values, ("planned_start",))
COMPLETION_OVERDUE_DAYS = Count(completion_overdue_days, _completion_values, ("planned_completion",))
DAYS_SINCE_START_NOT_IN_STATS = Count(days_since_start_not_in_stats, _not_in_stats_values, ("actual_start",))
DAYS_SINCE_REPORT = Count(days_since_report, _report_values, ("as_of",))


# --- booleans ----------------------------------------------------------------------------------

def _problems_values(day: Day, value: pl.Expr) -> dict[str, Shown]:
    encoded = pl.struct(pl.col("problems").alias("p")).struct.json_encode()  # {"p":"..."} or {"p":null}
    as_json = encoded.str.strip_prefix('{"p":').str.strip_suffix("}")
    text = pl.when(pl.col("problems").is_null()).then(pl.lit(NONE_SHOWN)).otherwise(
        as_json.str.strip_prefix('"').str.strip_suffix('"')
    )
    return {"problems": (as_json, text), "as_of": constant(day.at.iso)}


NONE_SHOWN = message_text(None)


def _escalation_values(day: Day, value: pl.Expr) -> dict[str, Shown]:
    return {"previous_month_end": constant(day.at.previous_month_end.isoformat()), "as_of": constant(day.at.iso)}


NEEDS_COORDINATION = Flagged(lambda day: pl.when(pl.col("needs_coordination")).then(pl.lit(True)), _problems_values,
                             ("problems",))
CONSECUTIVE_YELLOW = Flagged(
    lambda day: pl.when((pl.col(BASE) == 1) & (pl.col(PREV_BASE) == 1)).then(pl.lit(True)),
    _escalation_values, (), derived=True,
)


# --- pace: affine in ytd / plan ----------------------------------------------------------------


def _compare(left: pl.Expr, op: str, right: pl.Expr) -> pl.Expr:
    if op == ">=":
        return left >= right
    if op == ">":
        return left > right
    if op == "<=":
        return left <= right
    return left < right


FLIPPED = {">=": "<=", ">": "<", "<=": ">=", "<": ">"}


def _edges(band: Band) -> list[tuple[str, Fraction]]:
    low, low_closed, high, high_closed = band.interval()
    edges = []
    if low is not None:
        edges.append((">=" if low_closed else ">", Fraction(low)))
    if high is not None:
        edges.append(("<=" if high_closed else "<", Fraction(high)))
    return edges


def _python(fn: Callable[[int, int | None], Any], dtype: pl.DataType) -> pl.Expr:
    """``fn(ytd_cents, plan_cents)`` for each row, in Python integers (the exact way for amounts
    whose products would leave Int128)."""
    both = pl.struct(pl.col(YTD_CENTS).alias("y"), pl.col(PLAN_CENTS).alias("p"))
    return both.map_batches(lambda s: pl.Series([fn(r["y"], r["p"]) for r in s.to_list()], dtype=dtype),
                            return_dtype=dtype)


@dataclass(frozen=True)
class Pace:
    """value = α + β·(ytd / plan) for started projects with annual_plan > 0."""

    affine: Callable[[AsOf, Fraction], tuple[Fraction, Fraction]]  # (D, ytd scale) → (α, β)
    rounded_values: tuple[tuple[str, Fraction, int], ...]  # key, factor, places: rounded(factor × value, places)
    reads: tuple[str, ...] = (YTD_CENTS, PLAN_CENTS)
    derived: bool = False

    def value(self, day: Day) -> None:
        return None

    @staticmethod
    def applies() -> pl.Expr:
        return pl.col("actual_start").is_not_null() & (pl.col(PLAN_CENTS) > 0)

    def predicate(self, band: Band, day: Day, value: pl.Expr | None) -> pl.Expr:
        alpha, beta = self.affine(day.at, day.scale)
        if beta == 0:
            return self.applies() & pl.lit(band.contains(alpha))
        edges = [(op if beta > 0 else FLIPPED[op], (threshold - alpha) / beta) for op, threshold in _edges(band)]
        # the operands must fit as well as their products (an edge of 0 makes plan·0 small, not plan)
        dtype = integer_type([day.money.ytd, day.money.plan, *(b for _, c in edges for b in (
            day.money.ytd * c.denominator, day.money.plan * abs(c.numerator)))])
        if dtype is None:
            def contains(y: int, p: int | None) -> bool:
                return p is not None and p > 0 and band.contains(alpha + beta * Fraction(y, p))

            return self.applies() & _python(contains, pl.Boolean())
        ytd, plan = pl.col(YTD_CENTS).cast(dtype), pl.col(PLAN_CENTS).cast(dtype)
        result = self.applies()
        for op, c in edges:  # q op c ⟺ ytd·c.den op plan·c.num (plan > 0, c.den > 0)
            result = result & _compare(ytd * pl.lit(c.denominator, dtype=dtype), op, plan * pl.lit(c.numerator, dtype=dtype))
        return result

    def values(self, day: Day, value: pl.Expr | None) -> tuple[Prelude, dict[str, Shown]]:
        at, scale, money = day.at, day.scale, day.money
        f = at.progress
        prelude: Prelude = {}
        shown: dict[str, Shown] = {}
        # the scaled ytd, rounded half away from zero to cents (none counts as 0, as ``or 0`` did)
        sn, sd = scale.numerator, scale.denominator
        dtype = integer_type([2 * money.ytd * sn + sd])
        if dtype is None:
            shown["ytd_completed"] = python_texts(lambda y: _number_texts(half_away(y * sn, sd)), pl.col(YTD_CENTS))
        else:
            ytd = pl.col(YTD_CENTS).cast(dtype)
            prelude["__ytd_shown"] = ytd if scale == 1 else half_away_expr(ytd * pl.lit(sn, dtype=dtype), sd, dtype)
            exact_repr = money.ytd * sn // sd + 1 < REPR_EXACT
            shown["ytd_completed"] = decimal_texts(pl.col("__ytd_shown"), 2, as_number=True, exact_repr=exact_repr)
        shown["annual_plan"] = decimal_texts(pl.col(PLAN_CENTS), 2, as_number=True, exact_repr=money.plan < REPR_EXACT)
        shown["time_progress"] = constant(at.progress_percent)
        dtype = integer_type([2 * money.plan * f.numerator + f.denominator])
        if dtype is None:
            shown["target"] = python_texts(lambda p: _float_texts(rounded(Fraction(p, 100) * f, 2)), pl.col(PLAN_CENTS))
        else:
            plan = pl.col(PLAN_CENTS).cast(dtype)
            prelude["__target"] = half_away_expr(plan * pl.lit(f.numerator, dtype=dtype), f.denominator, dtype)
            exact_repr = money.plan * f.numerator // f.denominator + 1 < REPR_EXACT
            shown["target"] = decimal_texts(pl.col("__target"), 2, as_number=False, exact_repr=exact_repr)
        shown["as_of"] = constant(at.iso)
        alpha, beta = self.affine(at, scale)
        for key, factor, places in self.rounded_values:
            # rounded(factor·value, places) is the nearest integer to factor·value·10**places
            multiple = factor * 10**places
            column = f"__whole_{multiple.numerator}_{multiple.denominator}"  # shared when equal (ratio, percent)
            shown[key] = self._rounded(alpha * multiple, beta * multiple, places, money, column, prelude)
        return prelude, shown

    @staticmethod
    def _rounded(alpha: Fraction, beta: Fraction, places: int, money: MoneyBounds, column: str, prelude: Prelude) -> Shown:
        """The text of (α + β·ytd/plan) / 10**places, the numerator rounded half away from zero:
        (αn·βd·plan + βn·αd·ytd) / (αd·βd·plan)."""
        a, b, c = alpha.numerator * beta.denominator, beta.numerator * alpha.denominator, alpha.denominator * beta.denominator
        dtype = integer_type([2 * (abs(a) * money.plan + abs(b) * money.ytd) + 2 * c * money.plan])
        if dtype is None:
            def exact(y: int, p: int | None) -> tuple[str, str]:
                assert p is not None
                return _float_texts(rounded((alpha + beta * Fraction(y, p)) / 10**places, places))

            both = pl.struct(pl.col(YTD_CENTS).alias("y"), pl.col(PLAN_CENTS).alias("p"))
            return python_texts(lambda r: exact(r["y"], r["p"]), both)
        ytd, plan = pl.col(YTD_CENTS).cast(dtype), pl.col(PLAN_CENTS).cast(dtype)
        num = plan * pl.lit(a, dtype=dtype) + ytd * pl.lit(b, dtype=dtype)
        prelude[column] = half_away_expr(num, plan * pl.lit(c, dtype=dtype), dtype)
        largest = abs(alpha) + abs(beta) * Fraction(money.ytd, money.plan_min) + 1
        return decimal_texts(pl.col(column), places, as_number=False, exact_repr=largest < REPR_EXACT)


def _float_texts(value: float) -> tuple[str, str]:
    return json_text(value), message_text(value)


def _number_texts(cents: int) -> tuple[str, str]:
    value = cents // 100 if cents % 100 == 0 else cents / 100  # number() of the Decimal amount
    return json_text(value), message_text(value)


def _ratio(at: AsOf, scale: Fraction) -> tuple[Fraction, Fraction]:
    """r = ytd·s / (plan·f)."""
    return Fraction(0), scale / at.progress


def _gap(at: AsOf, scale: Fraction) -> tuple[Fraction, Fraction]:
    """gap = (f − ytd·s / plan) × 100."""
    return at.progress * 100, -100 * scale


PACE_RATIO = Pace(_ratio, (("pace_ratio", Fraction(1), 4), ("pace_percent", Fraction(100), 2)))
PACE_GAP = Pace(_gap, (("pace_gap", Fraction(1), 2),))


__all__ = [
    "BASE", "COMPLETION_OVERDUE_DAYS", "CONSECUTIVE_YELLOW", "DAYS_SINCE_REPORT", "DAYS_SINCE_START_NOT_IN_STATS",
    "Day", "Measure", "MoneyBounds", "NEEDS_COORDINATION", "PACE_GAP", "PACE_RATIO", "START_DELAY_MONTH",
    "START_OVERDUE_DAYS", "Shown",
]
