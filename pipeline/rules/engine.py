"""Flags as objects: ``evaluate`` / ``evaluate_many`` over ``ProjectFacts``, through the columnar engine.

For callers that hold plain ``ProjectFacts`` (the re-flag, the alert content): the pairs
``(row, previous)`` become two facts frames, ``columnar`` evaluates them in one pass, and each row
comes back as a ``Flag`` with its ``Reason``s. There is one engine; this is its object view.

Rows dated after D (or, for ``previous``, after the end of the month before D) must never be
passed in: ``evaluate`` and ``evaluate_many`` raise ``ValueError`` when they are, rather than
silently judging a project on a report from its future.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pipeline.facts import ProjectFacts
from pipeline.rules.columnar import compile_scheme
from pipeline.rules.frame import facts_frame
from pipeline.rules.metrics import Color, previous_month_end, time_progress, worst
from pipeline.rules.scheme import Scheme


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


def reasons_of(text: str) -> tuple[Reason, ...]:
    """The ``Reason``s of a ``reasons`` JSON text written by the columnar engine."""
    if text == "[]":
        return ()
    return tuple(Reason(r["code"], Color(r["color"]), r["message"], r["values"]) for r in json.loads(text))


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
    month_end = previous_month_end(as_of)
    for row, previous in items:  # the first offending item, in order, names the project
        if row is not None and row.as_of > as_of:
            raise ValueError(f"项目 {row.code} 的报告期 {row.as_of} 晚于评价日期 {as_of}")
        if previous is not None and previous.as_of > month_end:
            raise ValueError(f"项目 {previous.code} 的上月末行报告期 {previous.as_of} 晚于 {month_end}")
    if not items:
        return []
    result = compile_scheme(scheme).evaluate_with_previous(
        facts_frame([row for row, _ in items]), facts_frame([previous for _, previous in items]), as_of,
    )
    return [
        Flag(Color(color), Color(base), reasons_of(reasons), scheme.name, scheme.version)
        for color, base, reasons in zip(result["color"], result["base_color"], result["reasons"])
    ]


__all__ = [
    "Color", "Flag", "Reason", "evaluate", "evaluate_many", "previous_month_end", "reasons_of", "time_progress",
    "worst",
]
