"""What a rule can measure about one project as of a date D: the metric registry (SPEC §4).

A metric is a pure function of the project's newest row on or before D (a ``ProjectFacts``)
and of D. It returns ``None`` when it does not apply (the rule then gives no reason), else a
value that the rule's colour bands classify. Only when a rule fires does the engine ask the
metric to ``explain`` the value: the JSON-ready ``values`` dict of the reason, whose keys are
the placeholders a message may use.

A *derived* metric (``consecutive_yellow``) reads the base flag now and at the end of the
previous calendar month instead of the row's fields; the engine supplies both through a
``Trail``.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from enum import Enum
from fractions import Fraction
from typing import Any, Literal, Protocol

from pipeline.facts import ProjectFacts


class Color(str, Enum):
    """A flag colour, ordered green < yellow < red."""

    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Color):
            return NotImplemented
        return _RANK[self] < _RANK[other]

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Color):
            return NotImplemented
        return _RANK[self] <= _RANK[other]

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Color):
            return NotImplemented
        return _RANK[self] > _RANK[other]

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Color):
            return NotImplemented
        return _RANK[self] >= _RANK[other]

    def __str__(self) -> str:
        return self.value


_RANK: dict[Color, int] = {Color.GREEN: 0, Color.YELLOW: 1, Color.RED: 2}
COLOR_NAMES_ZH: dict[Color, str] = {Color.GREEN: "绿牌", Color.YELLOW: "黄牌", Color.RED: "红牌"}


def worst(colors: Iterable[Color]) -> Color:
    """The worst colour of ``colors``; green when there are none."""
    result = Color.GREEN
    for color in colors:
        if _RANK[color] > _RANK[result]:
            result = color
    return result


# --- the calendar of D -------------------------------------------------------------------------


def time_progress(d: date) -> Fraction:
    """序时进度 f(D) = (m − 1 + d / days_in_month) / 12, exactly m/12 at each month end."""
    days_in_month = calendar.monthrange(d.year, d.month)[1]
    return (Fraction(d.month - 1) + Fraction(d.day, days_in_month)) / 12


def previous_month_end(d: date) -> date:
    """The last day of the calendar month before ``d``'s (2025-01-15 → 2024-12-31)."""
    return d.replace(day=1) - timedelta(days=1)


@dataclass(frozen=True, slots=True)
class AsOf:
    """The evaluation date D with what every metric needs of it, computed once per evaluation."""

    date: date
    iso: str
    year: int
    month: int
    progress: Fraction  # f(D)
    progress_percent: float  # f(D) as a percentage, 2 decimals
    previous_month_end: date

    @classmethod
    def of(cls, d: date) -> AsOf:
        progress = time_progress(d)
        return cls(
            date=d, iso=d.isoformat(), year=d.year, month=d.month, progress=progress,
            progress_percent=rounded(progress * 100, 2), previous_month_end=previous_month_end(d),
        )


class Trail(Protocol):
    """What a derived metric sees: the base flag now and at the previous month's end (lazy)."""

    @property
    def base_now(self) -> Color: ...

    @property
    def base_previous(self) -> Color: ...


# --- JSON-ready values ---------------------------------------------------------------------------


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


# --- the registry ---------------------------------------------------------------------------------

Compute = Callable[[ProjectFacts, AsOf], Any]
Explain = Callable[[ProjectFacts, AsOf, Any], dict[str, Any]]
DerivedCompute = Callable[[Trail], Any]


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Literal["number", "boolean"]
    values: tuple[str, ...]  # keys of the reason's values dict: the placeholders a message may use
    description: str
    compute: Compute | None = None  # (row, D) → value, None when the metric does not apply
    explain: Explain | None = None  # (row, D, value) → values dict
    derived: DerivedCompute | None = None  # for derived metrics: (trail) → value or None

    @property
    def is_derived(self) -> bool:
        return self.derived is not None


def _start_overdue_days(row: ProjectFacts, at: AsOf) -> int | None:
    ps = row.planned_start
    if ps is None or row.actual_start is not None or ps >= at.date:
        return None
    return (at.date - ps).days


def _start_overdue_values(row: ProjectFacts, at: AsOf, value: int) -> dict[str, Any]:
    ps = row.planned_start
    assert ps is not None
    return {"planned_start": ps.isoformat(), "overdue_days": (at.date - ps).days, "as_of": at.iso}


def _start_delay_month(row: ProjectFacts, at: AsOf) -> int | None:
    ps = row.planned_start
    if ps is None or row.actual_start is not None or ps >= at.date:
        return None
    return (at.year - ps.year) * 12 + at.month - ps.month + 1


def _start_delay_values(row: ProjectFacts, at: AsOf, value: int) -> dict[str, Any]:
    return {**_start_overdue_values(row, at, value), "delay_month": value}


def _completion_overdue_days(row: ProjectFacts, at: AsOf) -> int | None:
    pc = row.planned_completion
    if pc is None or row.actual_completion is not None or pc >= at.date:
        return None
    return (at.date - pc).days


def _completion_overdue_values(row: ProjectFacts, at: AsOf, value: int) -> dict[str, Any]:
    pc = row.planned_completion
    assert pc is not None
    return {"planned_completion": pc.isoformat(), "overdue_days": value, "as_of": at.iso}


def _days_since_start_not_in_stats(row: ProjectFacts, at: AsOf) -> int | None:
    if row.actual_start is None or row.stats_included_on is not None:
        return None
    return (at.date - row.actual_start).days


def _not_in_stats_values(row: ProjectFacts, at: AsOf, value: int) -> dict[str, Any]:
    assert row.actual_start is not None
    return {"actual_start": row.actual_start.isoformat(), "days_since_start": value, "as_of": at.iso}


def _ratio(value: Decimal | int | float | None) -> tuple[int, int]:
    """An exact (numerator, denominator) of a money amount; None counts as 0."""
    return value.as_integer_ratio() if value else (0, 1)


def _pace_ratio(row: ProjectFacts, at: AsOf) -> Fraction | None:
    """r = ytd / (plan × f), exact; None unless started with annual_plan > 0."""
    plan = row.annual_plan
    if row.actual_start is None or plan is None or plan <= 0:
        return None
    (y_num, y_den), (p_num, p_den) = _ratio(row.ytd_completed), _ratio(plan)
    f = at.progress
    return Fraction(y_num * p_den * f.denominator, y_den * p_num * f.numerator)


def _pace_common(row: ProjectFacts, at: AsOf) -> dict[str, Any]:
    plan = Fraction(row.annual_plan or 0)
    return {
        "ytd_completed": number(row.ytd_completed) or 0,
        "annual_plan": number(row.annual_plan),
        "time_progress": at.progress_percent,
        "target": rounded(plan * at.progress, 2),
        "as_of": at.iso,
    }


def _pace_ratio_values(row: ProjectFacts, at: AsOf, value: Fraction) -> dict[str, Any]:
    return {**_pace_common(row, at), "pace_ratio": rounded(value, 4), "pace_percent": rounded(value * 100, 2)}


def _pace_gap(row: ProjectFacts, at: AsOf) -> Fraction | None:
    """gap = (plan × f − ytd) / plan × 100 = (f − ytd / plan) × 100, exact."""
    plan = row.annual_plan
    if row.actual_start is None or plan is None or plan <= 0:
        return None
    (y_num, y_den), (p_num, p_den) = _ratio(row.ytd_completed), _ratio(plan)
    f = at.progress
    # (f.n / f.d − y_num·p_den / (y_den·p_num)) × 100 over a common denominator
    den = f.denominator * y_den * p_num
    return Fraction((f.numerator * y_den * p_num - y_num * p_den * f.denominator) * 100, den)


def _pace_gap_values(row: ProjectFacts, at: AsOf, value: Fraction) -> dict[str, Any]:
    return {**_pace_common(row, at), "pace_gap": rounded(value, 2)}


def _days_since_report(row: ProjectFacts, at: AsOf) -> int:
    return (at.date - row.as_of).days


def _days_since_report_values(row: ProjectFacts, at: AsOf, value: int) -> dict[str, Any]:
    return {"report_date": row.as_of.isoformat(), "days_since_report": value, "as_of": at.iso}


def _needs_coordination(row: ProjectFacts, at: AsOf) -> bool | None:
    return True if row.needs_coordination else None


def _needs_coordination_values(row: ProjectFacts, at: AsOf, value: bool) -> dict[str, Any]:
    return {"problems": row.problems, "as_of": at.iso}


def _consecutive_yellow(trail: Trail) -> bool | None:
    if trail.base_now is Color.YELLOW and trail.base_previous is Color.YELLOW:
        return True
    return None


def _consecutive_yellow_values(row: ProjectFacts, at: AsOf, value: bool) -> dict[str, Any]:
    return {"previous_month_end": at.previous_month_end.isoformat(), "as_of": at.iso}


_OVERDUE = ("planned_start", "overdue_days", "as_of")
_PACE = ("ytd_completed", "annual_plan", "time_progress", "target", "as_of")

METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("start_overdue_days", "number", _OVERDUE, "计划开工日期已过、尚未开工的天数",
               _start_overdue_days, _start_overdue_values),
        Metric("start_delay_month", "number", (*_OVERDUE, "delay_month"), "未开工的延期月份（计划开工当月为第1个月）",
               _start_delay_month, _start_delay_values),
        Metric("completion_overdue_days", "number", ("planned_completion", "overdue_days", "as_of"),
               "计划竣工日期已过、尚未竣工的天数", _completion_overdue_days, _completion_overdue_values),
        Metric("days_since_start_not_in_stats", "number", ("actual_start", "days_since_start", "as_of"),
               "已开工未入统的天数", _days_since_start_not_in_stats, _not_in_stats_values),
        Metric("pace_ratio", "number", (*_PACE, "pace_ratio", "pace_percent"), "本年完成投资与序时进度目标之比",
               _pace_ratio, _pace_ratio_values),
        Metric("pace_gap", "number", (*_PACE, "pace_gap"), "落后序时进度的百分点",
               _pace_gap, _pace_gap_values),
        Metric("days_since_report", "number", ("report_date", "days_since_report", "as_of"),
               "最近一次报告期距今的天数", _days_since_report, _days_since_report_values),
        Metric("needs_coordination", "boolean", ("problems", "as_of"), "需协调（是）",
               _needs_coordination, _needs_coordination_values),
        Metric("consecutive_yellow", "boolean", ("previous_month_end", "as_of"),
               "本期基础挂牌与上月末基础挂牌均为黄牌", None, _consecutive_yellow_values, _consecutive_yellow),
    )
}


__all__ = [
    "COLOR_NAMES_ZH", "METRICS", "AsOf", "Color", "Metric", "Trail", "number", "previous_month_end",
    "rounded", "time_progress", "worst",
]
