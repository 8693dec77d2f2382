"""What a rule can measure about a project as of a date D: the metric registry (SPEC §4).

A metric is a function of the project's newest row on or before D and of D. Where it does not
apply the rule gives no reason; else the rule's colour bands classify its value, and a rule that
fires carries a ``values`` dict whose keys (``Metric.values``) are the placeholders its message
may use. How each metric is computed over a whole chunk of projects lives in ``measures``.

A *derived* metric (``consecutive_yellow``) reads the base flag now and at the end of the
previous calendar month instead of the row's fields.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from enum import Enum
from fractions import Fraction
from typing import Literal

from pipeline.rules import measures as M
from pipeline.rules.exact import number, rounded
from pipeline.rules.measures import Measure


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


# --- the registry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """A metric a rule may name: its kind, the keys of its reasons' values (the placeholders a
    message may use, in the order the values are written) and how it is measured over columns."""

    name: str
    kind: Literal["number", "boolean"]
    values: tuple[str, ...]
    description: str
    measure: Measure

    @property
    def is_derived(self) -> bool:
        """Reads the base flag now and at the previous month's end rather than the row."""
        return self.measure.derived


_OVERDUE = ("planned_start", "overdue_days", "as_of")
_PACE = ("ytd_completed", "annual_plan", "time_progress", "target", "as_of")

METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("start_overdue_days", "number", _OVERDUE, "计划开工日期已过、尚未开工的天数", M.START_OVERDUE_DAYS),
        Metric("start_delay_month", "number", (*_OVERDUE, "delay_month"), "未开工的延期月份（计划开工当月为第1个月）",
               M.START_DELAY_MONTH),
        Metric("completion_overdue_days", "number", ("planned_completion", "overdue_days", "as_of"),
               "计划竣工日期已过、尚未竣工的天数", M.COMPLETION_OVERDUE_DAYS),
        Metric("days_since_start_not_in_stats", "number", ("actual_start", "days_since_start", "as_of"),
               "已开工未入统的天数", M.DAYS_SINCE_START_NOT_IN_STATS),
        Metric("pace_ratio", "number", (*_PACE, "pace_ratio", "pace_percent"), "本年完成投资与序时进度目标之比",
               M.PACE_RATIO),
        Metric("pace_gap", "number", (*_PACE, "pace_gap"), "落后序时进度的百分点", M.PACE_GAP),
        Metric("days_since_report", "number", ("report_date", "days_since_report", "as_of"),
               "最近一次报告期距今的天数", M.DAYS_SINCE_REPORT),
        Metric("needs_coordination", "boolean", ("problems", "as_of"), "需协调（是）", M.NEEDS_COORDINATION),
        Metric("consecutive_yellow", "boolean", ("previous_month_end", "as_of"),
               "本期基础挂牌与上月末基础挂牌均为黄牌", M.CONSECUTIVE_YELLOW),
    )
}


__all__ = [
    "COLOR_NAMES_ZH", "METRICS", "AsOf", "Color", "Metric", "number", "previous_month_end", "rounded",
    "time_progress", "worst",
]
