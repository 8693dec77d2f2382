"""The per-row rules engine, kept as the oracle the columnar engine is tested against.

This is the product's former evaluation code (one project at a time, exact ``Fraction``
arithmetic), unchanged but for one addition: ``ytd_scale`` (SPEC §10's forecast) multiplies each
project's ytd_completed by an exact rational before the pace metrics read it, and the reported
``ytd_completed`` is that scaled amount rounded half away from zero to cents.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any

from pipeline.facts import ProjectFacts
from pipeline.rules import Color, Flag, Reason
from pipeline.rules.exact import half_away, number, rounded, show
from pipeline.rules.metrics import AsOf, previous_month_end
from pipeline.rules.scheme import Band, Rule, Scheme

_RANK = {Color.GREEN: 0, Color.YELLOW: 1, Color.RED: 2}


@dataclass(frozen=True)
class At:
    """D for the oracle: the product's ``AsOf`` and the ytd scale (1: no forecast)."""

    date: date
    iso: str
    year: int
    month: int
    progress: Fraction
    progress_percent: float
    previous_month_end: date
    scale: Fraction = Fraction(1)

    @classmethod
    def of(cls, d: date, scale: Fraction = Fraction(1)) -> At:
        a = AsOf.of(d)
        return cls(a.date, a.iso, a.year, a.month, a.progress, a.progress_percent, a.previous_month_end, scale)


# --- the metrics, one row at a time ------------------------------------------------------------


def _start_overdue_days(row: ProjectFacts, at: At) -> int | None:
    ps = row.planned_start
    if ps is None or row.actual_start is not None or ps >= at.date:
        return None
    return (at.date - ps).days


def _start_overdue_values(row: ProjectFacts, at: At, value: int) -> dict[str, Any]:
    ps = row.planned_start
    assert ps is not None
    return {"planned_start": ps.isoformat(), "overdue_days": (at.date - ps).days, "as_of": at.iso}


def _start_delay_month(row: ProjectFacts, at: At) -> int | None:
    ps = row.planned_start
    if ps is None or row.actual_start is not None or ps >= at.date:
        return None
    return (at.year - ps.year) * 12 + at.month - ps.month + 1


def _start_delay_values(row: ProjectFacts, at: At, value: int) -> dict[str, Any]:
    return {**_start_overdue_values(row, at, value), "delay_month": value}


def _completion_overdue_days(row: ProjectFacts, at: At) -> int | None:
    pc = row.planned_completion
    if pc is None or row.actual_completion is not None or pc >= at.date:
        return None
    return (at.date - pc).days


def _completion_overdue_values(row: ProjectFacts, at: At, value: int) -> dict[str, Any]:
    pc = row.planned_completion
    assert pc is not None
    return {"planned_completion": pc.isoformat(), "overdue_days": value, "as_of": at.iso}


def _days_since_start_not_in_stats(row: ProjectFacts, at: At) -> int | None:
    if row.actual_start is None or row.stats_included_on is not None:
        return None
    return (at.date - row.actual_start).days


def _not_in_stats_values(row: ProjectFacts, at: At, value: int) -> dict[str, Any]:
    assert row.actual_start is not None
    return {"actual_start": row.actual_start.isoformat(), "days_since_start": value, "as_of": at.iso}


def _ratio(value: Decimal | int | float | None) -> tuple[int, int]:
    """An exact (numerator, denominator) of a money amount; None counts as 0."""
    return value.as_integer_ratio() if value else (0, 1)


def _scaled_ytd(row: ProjectFacts, at: At) -> tuple[int, int]:
    y_num, y_den = _ratio(row.ytd_completed)
    scaled = Fraction(y_num, y_den) * at.scale
    return scaled.numerator, scaled.denominator


def _pace_ratio(row: ProjectFacts, at: At) -> Fraction | None:
    """r = ytd / (plan × f), exact; None unless started with annual_plan > 0."""
    plan = row.annual_plan
    if row.actual_start is None or plan is None or plan <= 0:
        return None
    (y_num, y_den), (p_num, p_den) = _scaled_ytd(row, at), _ratio(plan)
    f = at.progress
    return Fraction(y_num * p_den * f.denominator, y_den * p_num * f.numerator)


def _reported_ytd(row: ProjectFacts, at: At) -> Decimal | None:
    """The ytd amount a reason shows: as reported, or scaled and rounded half away to cents."""
    if at.scale == 1 or row.ytd_completed is None:
        return row.ytd_completed
    scaled = Fraction(row.ytd_completed) * at.scale * 100
    return Decimal(f"{half_away(scaled.numerator, scaled.denominator)}e-2")  # exact at any size


def _pace_common(row: ProjectFacts, at: At) -> dict[str, Any]:
    plan = Fraction(row.annual_plan or 0)
    return {
        "ytd_completed": number(_reported_ytd(row, at)) or 0,
        "annual_plan": number(row.annual_plan),
        "time_progress": at.progress_percent,
        "target": rounded(plan * at.progress, 2),
        "as_of": at.iso,
    }


def _pace_ratio_values(row: ProjectFacts, at: At, value: Fraction) -> dict[str, Any]:
    return {**_pace_common(row, at), "pace_ratio": rounded(value, 4), "pace_percent": rounded(value * 100, 2)}


def _pace_gap(row: ProjectFacts, at: At) -> Fraction | None:
    """gap = (plan × f − ytd) / plan × 100 = (f − ytd / plan) × 100, exact."""
    plan = row.annual_plan
    if row.actual_start is None or plan is None or plan <= 0:
        return None
    (y_num, y_den), (p_num, p_den) = _scaled_ytd(row, at), _ratio(plan)
    f = at.progress
    den = f.denominator * y_den * p_num
    return Fraction((f.numerator * y_den * p_num - y_num * p_den * f.denominator) * 100, den)


def _pace_gap_values(row: ProjectFacts, at: At, value: Fraction) -> dict[str, Any]:
    return {**_pace_common(row, at), "pace_gap": rounded(value, 2)}


def _days_since_report(row: ProjectFacts, at: At) -> int:
    return (at.date - row.as_of).days


def _days_since_report_values(row: ProjectFacts, at: At, value: int) -> dict[str, Any]:
    return {"report_date": row.as_of.isoformat(), "days_since_report": value, "as_of": at.iso}


def _needs_coordination(row: ProjectFacts, at: At) -> bool | None:
    return True if row.needs_coordination else None


def _needs_coordination_values(row: ProjectFacts, at: At, value: bool) -> dict[str, Any]:
    return {"problems": row.problems, "as_of": at.iso}


def _consecutive_yellow(trail: _Trail) -> bool | None:
    if trail.base_now is Color.YELLOW and trail.base_previous is Color.YELLOW:
        return True
    return None


def _consecutive_yellow_values(row: ProjectFacts, at: At, value: bool) -> dict[str, Any]:
    return {"previous_month_end": at.previous_month_end.isoformat(), "as_of": at.iso}


@dataclass(frozen=True)
class OracleMetric:
    compute: Callable[[ProjectFacts, At], Any] | None  # None: derived
    explain: Callable[[ProjectFacts, At, Any], dict[str, Any]]
    derived: Callable[[Any], Any] | None = None

    @property
    def is_derived(self) -> bool:
        return self.derived is not None


ORACLE_METRICS: dict[str, OracleMetric] = {
    "start_overdue_days": OracleMetric(_start_overdue_days, _start_overdue_values),
    "start_delay_month": OracleMetric(_start_delay_month, _start_delay_values),
    "completion_overdue_days": OracleMetric(_completion_overdue_days, _completion_overdue_values),
    "days_since_start_not_in_stats": OracleMetric(_days_since_start_not_in_stats, _not_in_stats_values),
    "pace_ratio": OracleMetric(_pace_ratio, _pace_ratio_values),
    "pace_gap": OracleMetric(_pace_gap, _pace_gap_values),
    "days_since_report": OracleMetric(_days_since_report, _days_since_report_values),
    "needs_coordination": OracleMetric(_needs_coordination, _needs_coordination_values),
    "consecutive_yellow": OracleMetric(None, _consecutive_yellow_values, _consecutive_yellow),
}


# --- the engine, one project at a time --------------------------------------------------------

Predicate = Callable[[Any], bool]


def _predicate(band: Band) -> Predicate:
    """A closure testing one band, specialised to the operators it uses."""
    if band.equals is not None:
        expected = band.equals
        return lambda v: bool(v) is expected
    low, low_closed, high, high_closed = band.interval()
    if low is None and high is None:
        return lambda v: True
    if high is None:
        return (lambda v: v >= low) if low_closed else (lambda v: v > low)
    if low is None:
        return (lambda v: v <= high) if high_closed else (lambda v: v < high)
    if low_closed and high_closed:
        return lambda v: low <= v <= high
    if low_closed:
        return lambda v: low <= v < high
    if high_closed:
        return lambda v: low < v <= high
    return lambda v: low < v < high


def _classifier(rule: Rule) -> Callable[[Any], Color | None]:
    tests = tuple((_predicate(b), b.color) for b in rule.bands)  # worst colour first

    def classify(value: Any) -> Color | None:
        for test, color in tests:
            if test(value):
                return color
        return None

    return classify


@dataclass(frozen=True, slots=True)
class _Compiled:
    index: int
    rule: Rule
    metric: OracleMetric
    classify: Callable[[Any], Color | None]
    fields: tuple[str, ...]


@dataclass(frozen=True)
class _Day:
    at: At
    base: tuple[_Compiled, ...]
    base_completed: tuple[_Compiled, ...]
    derived: tuple[_Compiled, ...]
    derived_completed: tuple[_Compiled, ...]


def _program(scheme: Scheme, d: date, scale: Fraction = Fraction(1)) -> _Day:
    compiled = [
        _Compiled(i, rule, ORACLE_METRICS[rule.metric], _classifier(rule), _placeholders(rule.message))
        for i, rule in enumerate(scheme.rules)
        if rule.when.holds(d.month)
    ]
    done = scheme.completed_projects
    base = tuple(c for c in compiled if not c.metric.is_derived)
    derived = tuple(c for c in compiled if c.metric.is_derived)
    return _Day(
        at=At.of(d, scale), base=base, base_completed=tuple(c for c in base if c.rule.code in done),
        derived=derived, derived_completed=tuple(c for c in derived if c.rule.code in done),
    )


class _Trail:
    """The base flag now and (computed only when asked) at the end of the previous month."""

    def __init__(self, base_now: Color, previous_row: ProjectFacts | None, previous_day: _Day) -> None:
        self.base_now = base_now
        self._previous_row = previous_row
        self._previous_day = previous_day

    @property
    def base_previous(self) -> Color:
        return base_color(self._previous_row, self._previous_day)


def base_color(row: ProjectFacts | None, day: _Day) -> Color:
    """The base flag only (no reasons): the worst colour among the non-derived rules."""
    if row is None:
        return Color.GREEN
    result = Color.GREEN
    for compiled in day.base_completed if row.actual_completion is not None else day.base:
        assert compiled.metric.compute is not None
        value = compiled.metric.compute(row, day.at)
        if value is None:
            continue
        color = compiled.classify(value)
        if color is not None and _RANK[color] > _RANK[result]:
            result = color
    return result


def _placeholders(template: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(f for _, f, _, _ in string.Formatter().parse(template) if f))


def _reason(compiled: _Compiled, color: Color, row: ProjectFacts, at: At, value: Any) -> Reason:
    values = compiled.metric.explain(row, at, value)
    message = compiled.rule.message.format_map({k: show(values[k]) for k in compiled.fields})
    return Reason(compiled.rule.code, color, message, values)


def _flag(scheme: Scheme, row: ProjectFacts | None, previous: ProjectFacts | None, day: _Day, previous_day: _Day) -> Flag:
    if row is None:
        return Flag(Color.GREEN, Color.GREEN, (), scheme.name, scheme.version)
    at = day.at
    completed = row.actual_completion is not None
    fired: list[tuple[int, int, Reason]] = []
    base_rank = 0
    for compiled in day.base_completed if completed else day.base:
        assert compiled.metric.compute is not None
        value = compiled.metric.compute(row, at)
        if value is None:
            continue
        color = compiled.classify(value)
        if color is None:
            continue
        rank = _RANK[color]
        base_rank = max(base_rank, rank)
        fired.append((-rank, compiled.index, _reason(compiled, color, row, at, value)))
    base = (Color.GREEN, Color.YELLOW, Color.RED)[base_rank]
    rank_all = base_rank
    derived = day.derived_completed if completed else day.derived
    if derived:
        trail = _Trail(base, previous, previous_day)
        for compiled in derived:
            assert compiled.metric.derived is not None
            value = compiled.metric.derived(trail)
            if value is None:
                continue
            color = compiled.classify(value)
            if color is None:
                continue
            rank = _RANK[color]
            rank_all = max(rank_all, rank)
            fired.append((-rank, compiled.index, _reason(compiled, color, row, at, value)))
    fired.sort(key=lambda item: (item[0], item[1]))
    return Flag((Color.GREEN, Color.YELLOW, Color.RED)[rank_all], base, tuple(r for _, _, r in fired),
                scheme.name, scheme.version)


def oracle_evaluate_many(
    scheme: Scheme,
    items: Sequence[tuple[ProjectFacts | None, ProjectFacts | None]],
    as_of: date,
    *,
    ytd_scale: Fraction | None = None,
) -> list[Flag]:
    """Each item ``(row, previous)`` judged as of D, one at a time (the former ``evaluate_many``)."""
    day = _program(scheme, as_of, Fraction(1) if ytd_scale is None else Fraction(ytd_scale))
    month_end = previous_month_end(as_of)
    previous_day = _program(scheme, month_end)
    flags = []
    for row, previous in items:
        if row is not None and row.as_of > as_of:
            raise ValueError(f"项目 {row.code} 的报告期 {row.as_of} 晚于评价日期 {as_of}")
        if previous is not None and previous.as_of > month_end:
            raise ValueError(f"项目 {previous.code} 的上月末行报告期 {previous.as_of} 晚于 {month_end}")
        flags.append(_flag(scheme, row, previous, day, previous_day))
    return flags


def oracle_evaluate(scheme: Scheme, row: ProjectFacts | None, as_of: date, previous: ProjectFacts | None) -> Flag:
    return oracle_evaluate_many(scheme, [(row, previous)], as_of)[0]


def oracle_base_color(scheme: Scheme, row: ProjectFacts | None, as_of: date) -> Color:
    return base_color(row, _program(scheme, as_of))


__all__ = ["ORACLE_METRICS", "At", "oracle_base_color", "oracle_evaluate", "oracle_evaluate_many"]
