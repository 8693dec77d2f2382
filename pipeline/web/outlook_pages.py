"""The office's outlook pages: 预警 (the forecast to a review, SPEC §10) and 方案试算 (a candidate
scheme tried on the stored history). Both read only."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from pipeline.accounts import Principal
from pipeline.db import session_scope
from pipeline.meta import evaluation_date
from pipeline.web.api_outlook import leader_id_of, scoped_forecast
from pipeline.web.errors import WebError
from pipeline.web.pages import render
from pipeline.web.queries import filter_choices
from pipeline.web.security import current_principal, require_office, runtime_of

router = APIRouter(include_in_schema=False, dependencies=[Depends(current_principal)])


def date_field(value: str | None, label: str) -> date | None:
    """A date typed in a form (empty: not given); a bad one is refused naming the field."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise WebError(422, f"{label}格式应为 YYYY-MM-DD：{text}") from exc


@router.get("/forecast")
def forecast_page(request: Request, as_of: str | None = Query(None), review: str | None = Query(None),
                  leader: str | None = Query(None), principal: Principal = Depends(current_principal)) -> Response:
    """述职前将转红/转黄: every project whose flag at the review will be worse than now."""
    require_office(principal)
    rt = runtime_of(request)
    d, r = date_field(as_of, "截至日期"), date_field(review, "述职日期")
    with session_scope(rt.session_factory) as session:
        d = d or evaluation_date(session, rt.clock)
        r, items = scoped_forecast(rt, session, principal, as_of=d, review=r, leader_id=leader_id_of(session, leader))
        leaders = filter_choices(session, principal)["leaders"]
    return render(request, "forecast.html", principal, as_of=d, review=r, leader=leader or "", leaders=leaders,
                  red=[i for i in items if i.flag_at_review == "red"],
                  yellow=[i for i in items if i.flag_at_review == "yellow"])
