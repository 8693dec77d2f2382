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


def newest_report_query(as_of: date, *extra_columns: Any) -> Select[Any]:
    """Projects joined to their newest non-pending update with 报告期 ≤ D (ties: the later arrival).

    One correlated index seek per project on (project_code, as_of, id): linear in the reserve.
    Projects with no report by D come back with empty progress columns.
    """
    newest = aliased(StatusUpdate)
    newest_id = (
        select(newest.id)
        .where(newest.project_code == Project.code, newest.as_of <= as_of, newest.status != "pending")
        .order_by(newest.as_of.desc(), newest.id.desc())
        .limit(1)
        .correlate(Project)
        .scalar_subquery()
    )
    cols = [getattr(StatusUpdate, c) for c in FACT_COLUMNS]
    return (
        select(Project.id, Project.code, Project.nature, *cols, *extra_columns)
        .select_from(Project)
        .join(StatusUpdate, StatusUpdate.id == newest_id, isouter=True)
    )


def facts_of(row: Any) -> ProjectFacts | None:
    """The facts of a row of ``newest_report_query`` (None when the project had no report by D)."""
    if row.as_of is None:
        return None
    return ProjectFacts(
        code=row.code, as_of=row.as_of, nature=row.nature, annual_plan=row.annual_plan,
        planned_start=row.planned_start, planned_completion=row.planned_completion,
        actual_start=row.actual_start, actual_completion=row.actual_completion,
        stats_included_on=row.stats_included_on, cumulative_completed=row.cumulative_completed,
        ytd_completed=row.ytd_completed, needs_coordination=bool(row.needs_coordination), problems=row.problems,
    )


def in_chunks(ids: Sequence[int] | None, size: int = CHUNK) -> Iterable[Sequence[int] | None]:
    """Split an id list for IN clauses; None (all projects) passes through as one part."""
    if ids is None:
        yield None
        return
    for i in range(0, len(ids), size):
        yield ids[i : i + size]
