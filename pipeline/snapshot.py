"""The reserve as of a date: each project's newest report on or before D, as plain facts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import aliased

from pipeline.facts import ProjectFacts
from pipeline.models import Project, StatusUpdate

CHUNK = 500
FACT_COLUMNS = (
    "as_of", "annual_plan", "planned_start", "planned_completion", "actual_start", "actual_completion",
    "stats_included_on", "cumulative_completed", "ytd_completed", "needs_coordination", "problems",
)

FACTS_AT = 3  # the query columns: id, code, nature, then FACT_COLUMNS
EARLIER_FACTS_AT = FACTS_AT + len(FACT_COLUMNS)  # two_reports_query: then FACT_COLUMNS again


def newest_update_id(as_of: date) -> Any:
    """Correlated to Project: the id of its newest non-pending update with 报告期 ≤ D (ties: the
    later arrival). One index seek on (project_code, as_of, id) per project."""
    newest = aliased(StatusUpdate)
    return (
        select(newest.id)
        .where(newest.project_code == Project.code, newest.as_of <= as_of, newest.status != "pending")
        .order_by(newest.as_of.desc(), newest.id.desc())
        .limit(1)
        .correlate(Project)
        .scalar_subquery()
    )


def newest_report_query(as_of: date, *extra_columns: Any) -> Select[Any]:
    """Projects joined to their newest report on or before D: linear in the reserve.
    Projects with no report by D come back with empty progress columns."""
    cols = [getattr(StatusUpdate, c) for c in FACT_COLUMNS]
    return (
        select(Project.id, Project.code, Project.nature, *cols, *extra_columns)
        .select_from(Project)
        .join(StatusUpdate, StatusUpdate.id == newest_update_id(as_of), isouter=True)
    )


def two_reports_query(as_of: date, earlier: date) -> Select[Any]:
    """Projects with their newest report on or before D and on or before an earlier date, in one
    pass: the columns of ``newest_report_query`` for D, then FACT_COLUMNS for the earlier date."""
    before = aliased(StatusUpdate)
    return newest_report_query(as_of, *(getattr(before, c) for c in FACT_COLUMNS)).join(
        before, before.id == newest_update_id(earlier), isouter=True
    )


def facts_of(row: Any, offset: int = FACTS_AT) -> ProjectFacts | None:
    """The facts of a row of ``newest_report_query`` (None when the project had no report by D);
    ``offset`` is where the FACT_COLUMNS start (``EARLIER_FACTS_AT`` for ``two_reports_query``'s
    second set). Positional, as the hot path of every re-flag."""
    code, nature = row[1], row[2]
    (as_of, annual_plan, planned_start, planned_completion, actual_start, actual_completion, stats_included_on,
     cumulative_completed, ytd_completed, needs_coordination, problems) = row[offset : offset + len(FACT_COLUMNS)]
    if as_of is None:
        return None
    return ProjectFacts(
        code, as_of, nature, annual_plan, planned_start, planned_completion, actual_start, actual_completion,
        stats_included_on, cumulative_completed, ytd_completed, bool(needs_coordination), problems,
    )


def in_chunks(ids: Sequence[int] | None, size: int = CHUNK) -> Iterable[Sequence[int] | None]:
    """Split an id list for IN clauses; None (all projects) passes through as one part."""
    if ids is None:
        yield None
        return
    for i in range(0, len(ids), size):
        yield ids[i : i + size]
