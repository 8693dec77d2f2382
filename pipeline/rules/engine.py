"""Evaluate a scheme: project states (plain ``ProjectFacts``) as of D → ``Flag``s (SPEC §4).

The scheme is compiled once per call into per-rule closures (metric, band predicates, the
rule's applicability for D), then run over every project; nothing is parsed per project, and a
reason's values and message are built only for the rules that fire.

Rows dated after D (or, for ``previous``, after the end of the month before D) must never be
passed in: ``evaluate`` and ``evaluate_many`` raise ``ValueError`` when they are, rather than
silently judging a project on a report from its future.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pipeline.facts import ProjectFacts
from pipeline.rules.metrics import (
    METRICS, AsOf, Color, Metric, previous_month_end, time_progress, worst,
)
from pipeline.rules.scheme import Band, Rule, Scheme

_RANK = {Color.GREEN: 0, Color.YELLOW: 1, Color.RED: 2}
_NONE_TEXT = "（未填写）"


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a rule fired: its code, colour, a Chinese message with the numbers, and the numbers."""

    code: str
    color: Color
    message: str
    values: dict[str, Any] = field(hash=False)

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "color": self.color.value, "message": self.message, "values": dict(self.values)}


@dataclass(frozen=True, slots=True)
class Flag:
    """A project's computed flag as of D, and the scheme (name, version) that produced it."""

    color: Color
    base_color: Color  # the worst colour of all rules but the derived ones (ESCALATED)
    reasons: tuple[Reason, ...]  # worst colour first, then in the scheme's rule order
    scheme: str
    scheme_version: int

    def to_json(self) -> dict[str, Any]:
        return {"flag": self.color.value, "reasons": [r.to_json() for r in self.reasons]}


# --- compilation -------------------------------------------------------------------------------

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
    if len(tests) == 1:
        (test, color), = tests

        def classify_one(value: Any) -> Color | None:
            return color if test(value) else None

        return classify_one

    def classify(value: Any) -> Color | None:
        for test, color in tests:
            if test(value):
                return color
        return None

    return classify


@dataclass(frozen=True, slots=True)
class _Compiled:
    index: int  # position in the scheme (order of reasons within a colour)
    rule: Rule
    metric: Metric
    classify: Callable[[Any], Color | None]
    fields: tuple[str, ...]  # the placeholders the rule's message uses


@dataclass(frozen=True)
class _Program:
    """A scheme compiled for one call: the rules split by kind and by completed-project use."""

    scheme: Scheme
    base: tuple[_Compiled, ...]
    derived: tuple[_Compiled, ...]

    @classmethod
    def of(cls, scheme: Scheme) -> _Program:
        compiled = [
            _Compiled(i, rule, METRICS[rule.metric], _classifier(rule), _placeholders(rule.message))
            for i, rule in enumerate(scheme.rules)
        ]
        return cls(
            scheme=scheme,
            base=tuple(c for c in compiled if not c.metric.is_derived),
            derived=tuple(c for c in compiled if c.metric.is_derived),
        )

    def at(self, d: date) -> _Day:
        """The rules that apply on D (their ``when`` holds), for open and for completed projects."""
        at = AsOf.of(d)
        done = self.scheme.completed_projects
        base = tuple(c for c in self.base if c.rule.when.holds(d.month))
        derived = tuple(c for c in self.derived if c.rule.when.holds(d.month))
        return _Day(
            at=at,
            base=tuple((c, c.metric.compute) for c in base),
            base_completed=tuple((c, c.metric.compute) for c in base if c.rule.code in done),
            derived=derived,
            derived_completed=tuple(c for c in derived if c.rule.code in done),
        )


@dataclass(frozen=True)
class _Day:
    at: AsOf
    base: tuple[tuple[_Compiled, Any], ...]
    base_completed: tuple[tuple[_Compiled, Any], ...]
    derived: tuple[_Compiled, ...]
    derived_completed: tuple[_Compiled, ...]


class _Trail:
    """The base flag now and (computed only when asked) at the end of the previous month."""

    __slots__ = ("_base_now", "_previous_row", "_previous_day", "_previous")

    def __init__(self, base_now: Color, previous_row: ProjectFacts | None, previous_day: _Day) -> None:
        self._base_now = base_now
        self._previous_row = previous_row
        self._previous_day = previous_day
        self._previous: Color | None = None

    @property
    def base_now(self) -> Color:
        return self._base_now

    @property
    def base_previous(self) -> Color:
        if self._previous is None:
            self._previous = _base_color(self._previous_row, self._previous_day)
        return self._previous


def _base_color(row: ProjectFacts | None, day: _Day) -> Color:
    """The base flag only (no reasons): the worst colour among the non-derived rules."""
    if row is None:
        return Color.GREEN
    at = day.at
    result = Color.GREEN
    for compiled, compute in day.base_completed if row.actual_completion is not None else day.base:
        value = compute(row, at)
        if value is None:
            continue
        color = compiled.classify(value)
        if color is Color.RED:
            return color
        if color is Color.YELLOW:
            result = color
    return result


def _placeholders(template: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(f for _, f, _, _ in string.Formatter().parse(template) if f))


def _format(template: str, fields: tuple[str, ...], values: dict[str, Any]) -> str:
    return template.format_map({k: _show(values[k]) for k in fields})


def _show(value: Any) -> Any:
    if value is None:
        return _NONE_TEXT
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _reason(compiled: _Compiled, color: Color, row: ProjectFacts, at: AsOf, value: Any) -> Reason:
    explain = compiled.metric.explain
    values = explain(row, at, value) if explain is not None else {}
    return Reason(compiled.rule.code, color, _format(compiled.rule.message, compiled.fields, values), values)


def _check_dates(row: ProjectFacts | None, previous: ProjectFacts | None, as_of: date, month_end: date) -> None:
    if row is not None and row.as_of > as_of:
        raise ValueError(f"项目 {row.code} 的报告期 {row.as_of} 晚于评价日期 {as_of}")
    if previous is not None and previous.as_of > month_end:
        raise ValueError(f"项目 {previous.code} 的上月末行报告期 {previous.as_of} 晚于 {month_end}")


def _flag(
    program: _Program, row: ProjectFacts | None, previous: ProjectFacts | None, day: _Day, previous_day: _Day
) -> Flag:
    scheme = program.scheme
    if row is None:
        return Flag(Color.GREEN, Color.GREEN, (), scheme.name, scheme.version)
    at = day.at
    completed = row.actual_completion is not None
    fired: list[tuple[int, int, Reason]] = []
    base_rank = 0
    for compiled, compute in day.base_completed if completed else day.base:
        value = compute(row, at)
        if value is None:
            continue
        color = compiled.classify(value)
        if color is None:
            continue
        rank = _RANK[color]
        if rank > base_rank:
            base_rank = rank
        fired.append((-rank, compiled.index, _reason(compiled, color, row, at, value)))
    base_color = (Color.GREEN, Color.YELLOW, Color.RED)[base_rank]
    rank_all = base_rank
    derived = day.derived_completed if completed else day.derived
    if derived:
        trail = _Trail(base_color, previous, previous_day)
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
    if len(fired) > 1:
        fired.sort(key=lambda item: (item[0], item[1]))
    return Flag(
        (Color.GREEN, Color.YELLOW, Color.RED)[rank_all], base_color, tuple(r for _, _, r in fired),
        scheme.name, scheme.version,
    )


# --- the API ---------------------------------------------------------------------------------------


def evaluate(scheme: Scheme, row: ProjectFacts | None, as_of: date, previous: ProjectFacts | None) -> Flag:
    """The flag of one project as of D.

    ``row`` is the project's newest row with 报告期 ≤ D (None: green, no reasons); ``previous``
    its newest row with 报告期 ≤ the end of the month before D (None: green then), which the
    derived rule ESCALATED compares against.
    """
    return evaluate_many(scheme, [(row, previous)], as_of)[0]


def evaluate_many(
    scheme: Scheme,
    items: Sequence[tuple[ProjectFacts | None, ProjectFacts | None]],
    as_of: date,
) -> list[Flag]:
    """The flags of many projects as of D, each item ``(row, previous)`` as in ``evaluate``."""
    program = _Program.of(scheme)
    day = program.at(as_of)
    month_end = previous_month_end(as_of)
    previous_day = program.at(month_end)
    flags: list[Flag] = []
    append = flags.append
    for row, previous in items:
        if (row is not None and row.as_of > as_of) or (previous is not None and previous.as_of > month_end):
            _check_dates(row, previous, as_of, month_end)
        append(_flag(program, row, previous, day, previous_day))
    return flags


__all__ = [
    "Color", "Flag", "Reason", "evaluate", "evaluate_many", "previous_month_end", "time_progress", "worst",
]
