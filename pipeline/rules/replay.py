"""Evaluate template rows straight from files (the ``pipeline evaluate`` command, SPEC §7).

No database: each project's rows are ordered by 报告期 (ties: the row later in the input wins),
rows dated after D are ignored, and the project is judged on its newest row on or before D with
its newest row on or before the end of the previous month as ESCALATED's history.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from pipeline.facts import ProjectFacts
from pipeline.ingest.template import UpdateRow
from pipeline.rules.engine import evaluate_many
from pipeline.rules.metrics import previous_month_end
from pipeline.rules.scheme import Scheme


def _newest_on_or_before(rows: list[UpdateRow], day: date) -> UpdateRow | None:
    """The last row dated ≤ ``day`` in a list sorted by 报告期 (stable, so ties keep input order)."""
    found: UpdateRow | None = None
    for row in rows:
        if row.as_of > day:
            break
        found = row
    return found


def evaluate_rows(rows: Iterable[UpdateRow], *, as_of: date, scheme: Scheme) -> list[dict[str, Any]]:
    """One JSON-ready dict per project with a row on or before D, sorted by project code."""
    by_code: dict[str, list[UpdateRow]] = {}
    for row in rows:
        if row.as_of <= as_of:
            by_code.setdefault(row.code, []).append(row)
    month_end = previous_month_end(as_of)
    codes = sorted(by_code)
    items: list[tuple[ProjectFacts | None, ProjectFacts | None]] = []
    for code in codes:
        history = sorted(by_code[code], key=lambda r: r.as_of)  # stable: later input wins ties
        previous = _newest_on_or_before(history, month_end)
        items.append((history[-1].facts(), previous.facts() if previous is not None else None))
    flags = evaluate_many(scheme, items, as_of)
    day = as_of.isoformat()
    return [
        {"code": code, "as_of": day, "flag": flag.color.value, "reasons": [r.to_json() for r in flag.reasons]}
        for code, flag in zip(codes, flags)
    ]


__all__ = ["evaluate_rows"]
