"""Where the lists read a project's flag and report from: the stored flags and current states (the
evaluation date, "today"), or the flags staged as of a past date (pipeline/as_of.py, SPEC §9), so
the same filtered, sorted, paginated queries serve both (the 截至日期 picker)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from fastapi import Query
from sqlalchemy import Date, Integer, Numeric, String, Text, case, column, false, null, table
from sqlalchemy.orm import Session

from pipeline.as_of import STAGED, stage_flags_as_of
from pipeline.meta import evaluation_date
from pipeline.models import Project, ProjectFlag, ProjectState
from pipeline.overrides import acknowledged_now
from pipeline.runtime import Runtime
from pipeline.web.errors import WebError

STAGED_TABLE = table(
    STAGED, column("project_id", Integer), column("color", String), column("reasons", Text),
    column("report_as_of", Date), column("annual_plan", Numeric), column("ytd_completed", Numeric),
)


@dataclass(frozen=True)
class FlagSource:
    """The columns of the flag (``color``: the effective one) and of the report a list shows, and
    the tables they come from (joined on the project: ``flags`` for the flag, ``reports`` for the
    report; the same table when one holds both)."""

    color: Any
    computed: Any
    override_id: Any
    reasons: Any
    acknowledged: Any
    plan: Any
    ytd: Any
    report_as_of: Any
    flags: Any
    flags_on: Any
    reports: Any
    reports_on: Any
    past: date | None = None  # the date of a staged view; None: the stored flags

    @property
    def severity(self) -> Any:
        return case({"red": 0, "yellow": 1, "green": 2}, value=self.color, else_=3)


NOW = FlagSource(
    color=ProjectFlag.effective_color, computed=ProjectFlag.computed_color, override_id=ProjectFlag.override_id,
    reasons=ProjectFlag.reasons, acknowledged=acknowledged_now(Project.id), plan=ProjectState.annual_plan,
    ytd=ProjectState.ytd_completed, report_as_of=ProjectState.as_of, flags=ProjectFlag,
    flags_on=ProjectFlag.project_id == Project.id, reports=ProjectState, reports_on=ProjectState.project_id == Project.id,
)


def staged_source(day: date) -> FlagSource:
    """The flags staged as of ``day`` in this transaction (no override, no acknowledgement then)."""
    t = STAGED_TABLE.c
    on = t.project_id == Project.id
    return FlagSource(
        color=t.color, computed=t.color, override_id=null(), reasons=t.reasons, acknowledged=false(),
        plan=t.annual_plan, ytd=t.ytd_completed, report_as_of=t.report_as_of, flags=STAGED_TABLE, flags_on=on,
        reports=STAGED_TABLE, reports_on=on, past=day,
    )


def source_as_of(session: Session, rt: Runtime, requested: date | None) -> tuple[date, FlagSource]:
    """The date a page shows and where its flags come from: the stored flags on the evaluation
    date (the default), else the reserve evaluated as of the requested past date, staged for this
    transaction. A date after the evaluation date is refused."""
    today = evaluation_date(session, rt.clock)
    if requested is None or requested == today:
        return today, NOW
    if requested > today:
        raise WebError(400, f"截至日期 {requested.isoformat()} 晚于评估日期 {today.isoformat()}，只能查看此前的情况")
    stage_flags_as_of(session, requested, scheme=rt.scheme, compiled=rt.compiled,
                      chunk_size=rt.settings.reflag_chunk_size)
    return requested, staged_source(requested)




def as_of_query(as_of: str | None = Query(None, description="截至日期 YYYY-MM-DD（默认为评估日期）")) -> date | None:
    """The 截至日期 query argument of a page or an endpoint (empty: the evaluation date)."""
    if as_of is None or not as_of.strip():
        return None
    try:
        return date.fromisoformat(as_of.strip())
    except ValueError:
        raise WebError(422, f"截至日期格式应为 YYYY-MM-DD：{as_of}",
                       [{"row": None, "field": "as_of", "message": "日期格式应为 YYYY-MM-DD"}]) from None


__all__ = ["NOW", "FlagSource", "as_of_query", "source_as_of", "staged_source"]
