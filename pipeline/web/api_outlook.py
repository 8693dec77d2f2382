"""Read API: the forecast (预警, SPEC §10), scoped as every read is (the office: all projects or one
leader's; a leader: their own; a unit: its own)."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session

from pipeline.accounts import Principal
from pipeline.db import session_scope
from pipeline.errors import ActionRefused
from pipeline.forecast import ForecastItem, forecast
from pipeline.meta import evaluation_date
from pipeline.runtime import Runtime
from pipeline.web.api_projects import ANSWERS
from pipeline.web.errors import WebError, forbidden
from pipeline.web.queries import leader_row
from pipeline.web.schemas import ForecastAnswer, ForecastItemOut
from pipeline.web.security import current_principal, runtime_of

router = APIRouter(prefix="/api", tags=["查询"], dependencies=[Depends(current_principal)], responses=ANSWERS)


def leader_id_of(session: Session, name: str | None) -> int | None:
    """The id of the leader named (None when no name is given); 404 for an unknown name."""
    if not name:
        return None
    found = leader_row(session, name)
    if found is None:
        raise WebError(404, f"包保领导不存在：{name}")
    return found.id


def scoped_forecast(rt: Runtime, session: Session, principal: Principal, *, as_of: date, review: date | None,
                    leader_id: int | None = None) -> tuple[date, list[ForecastItem]]:
    """The forecast the user may see (``leader_id``: one leader's projects) and its review date
    (by default the next review after D). Refused (422) when the review is not after D. Writes
    nothing (temporary tables only)."""
    unit_id = None
    if principal.role == "leader":
        if leader_id is not None and leader_id != principal.leader_id:
            raise forbidden("只能查看本人包保的项目")
        leader_id = principal.leader_id if principal.leader_id is not None else -1
    elif principal.role == "unit":
        unit_id = principal.unit_id if principal.unit_id is not None else -1
    try:
        r = review or rt.review_calendar.next_review(as_of)
        items = forecast(session, scheme=rt.scheme, compiled=rt.compiled, calendar=rt.review_calendar, as_of=as_of,
                         review=r, leader_id=leader_id, unit_id=unit_id,
                         chunk_size=rt.settings.reflag_chunk_size)
    except ActionRefused as exc:
        raise WebError(422, str(exc), [{"row": None, "field": "review", "message": str(exc)}]) from exc
    return r, items


@router.get("/forecast", response_model=ForecastAnswer, summary="预警：如情况不变，述职前将转红、转黄的项目")
def get_forecast(
    request: Request,
    as_of: date | None = Query(None, description="截至日期，默认为系统评估日期"),
    review: date | None = Query(None, description="述职日期，默认为截至日期之后的下一次双月述职"),
    leader: str | None = Query(None, description="包保领导姓名（只看其包保项目）"),
    principal: Principal = Depends(current_principal),
) -> ForecastAnswer:
    rt = runtime_of(request)
    with session_scope(rt.session_factory) as session:
        d = as_of or evaluation_date(session, rt.clock)
        r, items = scoped_forecast(rt, session, principal, as_of=d, review=review, leader_id=leader_id_of(session, leader))
    return ForecastAnswer(
        as_of=d, review=r, red=sum(i.flag_at_review == "red" for i in items),
        yellow=sum(i.flag_at_review == "yellow" for i in items),
        items=[ForecastItemOut(code=i.code, name=i.name, leader=i.leader, flag_now=i.flag_now,  # type: ignore[arg-type]
                               flag_at_review=i.flag_at_review, reasons=i.reasons)  # type: ignore[arg-type]
               for i in items],
    )
