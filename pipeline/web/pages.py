"""The server-rendered pages (Chinese): overview, project list and export, project, leaders (upload and
alerts pages are in ``upload_pages`` and ``alert_pages``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from pipeline.accounts import Principal
from pipeline.alerts.content import gather_leader_digest
from pipeline.alerts.review_data import digest_dates
from pipeline.change_requests import list_requests
from pipeline.db import session_scope
from pipeline.errors import ActionRefused
from pipeline.meta import evaluation_date
from pipeline.rules.metrics import time_progress
from pipeline.web import api_actions
from pipeline.web.api_outlook import scoped_forecast
from pipeline.web.api_projects import filters_from
from pipeline.web.auth import safe_next
from pipeline.web.errors import WebError, forbidden
from pipeline.rates import CITY_GROUP
from pipeline.trends import trend
from pipeline.web.figures import chart_data, trend_chart_data, upcoming_review
from pipeline.web.flag_source import as_of_query, source_as_of
from pipeline.web.leader_as_of import leader_digest_as_of
from pipeline.web.queries import (
    ProjectFilters,
    colour_counts,
    filter_choices,
    iter_export_rows,
    latest_changes,
    leader_row,
    leaders_board,
    list_projects,
    notices_to,
    project_by_code,
    project_detail,
)
from pipeline.web.schemas import ActionOut, OverrideIn
from pipeline.web.security import (
    CSRF_FIELD,
    change_scope,
    check_csrf,
    check_project,
    csrf_token,
    current_principal,
    require_office,
    runtime_of,
)

router = APIRouter(include_in_schema=False, dependencies=[Depends(current_principal)])
FLASH = "flash"


def flash(request: Request, message: str, kind: str = "ok") -> None:
    request.session.setdefault(FLASH, []).append([kind, message])


def flash_outcome(request: Request, action: Callable[[], ActionOut]) -> None:
    """Do a form's action and say how it went: its message, or why it was refused."""
    try:
        flash(request, action().message)
    except ActionRefused as exc:
        flash(request, str(exc), "error")


def render(request: Request, name: str, principal: Principal, status_code: int = 200, **context: Any) -> Response:
    rt = runtime_of(request)
    messages = request.session.pop(FLASH, [])
    return request.app.state.templates.TemplateResponse(
        request, name,
        {"principal": principal, "csrf": csrf_token(request), "flashes": messages, "reference": rt.reference,
         "scheme": rt.scheme, **context},
        status_code=status_code,
    )


@router.get("/")
def overview(request: Request, as_of: date | None = Depends(as_of_query),
             principal: Principal = Depends(current_principal)) -> Response:
    """The office's and a unit's overview; a leader's home (their portfolio, on the phone). With
    ``as_of`` (截至日期) a past date: counts and rates as the reserve stood then."""
    if principal.role == "leader":
        return leader_home(request, principal, as_of)
    rt = runtime_of(request)
    with session_scope(rt.read_session_factory) as session:
        today = evaluation_date(session, rt.clock)
        d, source = source_as_of(session, rt, as_of)
        counts = colour_counts(session, principal, source=source)
        cache = request.app.state.rates
        by_county = cache.rates(session, as_of=d, by="county", principal=principal, allow_stale=True)
        city = cache.rates(session, as_of=d, by="city", principal=principal, allow_stale=True)
        changes = latest_changes(session, principal, limit=12) if source.past is None else []
        points = (trend(session, group_by="city", group=CITY_GROUP, until=d, now=rt.clock.now())
                  if principal.is_office else None)
    review = upcoming_review(rt.review_calendar, d)
    scope_title = "全市" if principal.is_office else "本单位项目"
    return render(request, "overview.html", principal, as_of=d, today=today, counts=counts,
                  total=sum(counts.values()), city=city.groups[0], groups=by_county.groups,
                  charts=chart_data(by_county.groups, d), stale=by_county.stale or city.stale, review=review,
                  changes=changes, progress=float(time_progress(d)) * 100, scope_title=scope_title,
                  past=source.past is not None, color_link=_color_link(d, today),
                  trend=trend_chart_data(points) if points is not None else None)


def _color_link(d: date, today: date) -> Callable[[str], str]:
    """The list of one colour, as of the page's date."""
    return lambda color: "/projects?" + urlencode({"color": color, **({"as_of": d.isoformat()} if d != today else {})})


@router.get("/projects")
def projects(request: Request, f: ProjectFilters = Depends(filters_from),
             principal: Principal = Depends(current_principal)) -> Response:
    rt = runtime_of(request)
    f = f.normalised()
    with session_scope(rt.read_session_factory) as session:
        today = evaluation_date(session, rt.clock)
        d, source = source_as_of(session, rt, f.as_of)
        total, rows = list_projects(session, f, principal, source)
        choices = filter_choices(session, principal)
    pages = max(1, -(-total // f.per_page))
    return render(request, "projects.html", principal, f=f, total=total, rows=rows, pages=pages, choices=choices,
                  as_of=d, today=today, past=source.past is not None,
                  link=lambda **changes: "/projects?" + urlencode(f.query_args(**changes)),
                  export_link="/projects/export.xlsx?" + urlencode(f.query_args(page=1, as_of=None)))


@router.get("/projects/export.xlsx")
def export_projects(request: Request, f: ProjectFilters = Depends(filters_from),
                    principal: Principal = Depends(current_principal)) -> Response:
    """The view as an xlsx with every template column: it re-imports as it is."""
    from pipeline.web.export import MAX_ROWS, export_filename, projects_xlsx
    from pipeline.web.upload_pages import attachment

    rt = runtime_of(request)
    with session_scope(rt.read_session_factory) as session:
        d = evaluation_date(session, rt.clock)
        data = projects_xlsx(iter_export_rows(session, f, principal, limit=MAX_ROWS, list_order=rt.reference.lists))
    return attachment(data, export_filename(f.normalised(), d), "projects.xlsx")


@router.get("/projects/{code}")
def project_page(code: str, request: Request, principal: Principal = Depends(current_principal)) -> Response:
    rt = runtime_of(request)
    with session_scope(rt.read_session_factory) as session:
        project = project_by_code(session, code)
        if project is None:
            raise WebError(404, f"项目代码不存在：{code}")
        check_project(principal, project)
        detail = project_detail(session, project, list_order=rt.reference.lists)
        d = evaluation_date(session, rt.clock)
        requests = list_requests(session, change_scope(principal, status="pending", project_code=project.code),
                                tz=rt.clock.tz, per_page=20)
    return render(request, "project.html", principal, as_of=d, change_requests=requests, **detail)


def _back(code: str, target: str | None = None) -> RedirectResponse:
    return RedirectResponse(safe_next(target) if target else f"/projects/{quote(code)}#timeline", status_code=303)


@router.post("/projects/{code}/acknowledge")
def acknowledge_form(code: str, request: Request, note: str = Form(""), next_: str = Form("", alias="next"),
                     csrf: str = Form("", alias=CSRF_FIELD), principal: Principal = Depends(current_principal)) -> Response:
    check_csrf(request, principal, csrf)
    flash_outcome(request, lambda: api_actions.do_acknowledge(request, principal, code, note))
    return _back(code, next_)


@router.post("/projects/{code}/override")
def override_form(code: str, request: Request, color: str = Form(""), reason: str = Form(""),
                  expires_on: str = Form(""), csrf: str = Form("", alias=CSRF_FIELD),
                  principal: Principal = Depends(current_principal)) -> Response:
    check_csrf(request, principal, csrf)
    try:
        until = date.fromisoformat(expires_on)
    except ValueError:
        flash(request, "到期日期格式应为 YYYY-MM-DD", "error")
        return _back(code)
    if not reason.strip():
        flash(request, "请填写人工调整的理由", "error")
        return _back(code)
    flash_outcome(request, lambda: api_actions.do_override(
        request, principal, code, OverrideIn(color=color, reason=reason, expires_on=until)))
    return _back(code)


@router.post("/projects/{code}/override/revoke")
def revoke_form(code: str, request: Request, csrf: str = Form("", alias=CSRF_FIELD),
                principal: Principal = Depends(current_principal)) -> Response:
    check_csrf(request, principal, csrf)
    flash_outcome(request, lambda: api_actions.do_revoke(request, principal, code))
    return _back(code)


@router.get("/leaders")
def leaders(request: Request, as_of: date | None = Depends(as_of_query),
            principal: Principal = Depends(current_principal)) -> Response:
    if principal.role == "leader":
        return RedirectResponse("/", status_code=303)
    require_office(principal)
    rt = runtime_of(request)
    with session_scope(rt.read_session_factory) as session:
        today = evaluation_date(session, rt.clock)
        d, source = source_as_of(session, rt, as_of)
        board = leaders_board(session, source)
    return render(request, "leaders.html", principal, board=board, as_of=d, today=today,
                  keep={"as_of": d.isoformat()} if d != today else {})


@router.get("/leaders/{name}")
def leader_page(name: str, request: Request, as_of: date | None = Depends(as_of_query),
                principal: Principal = Depends(current_principal)) -> Response:
    """One leader's portfolio, as in their 双月述职 digest (the office's view; the leader's own home)."""
    rt = runtime_of(request)
    with session_scope(rt.read_session_factory) as session:
        leader = leader_row(session, name)
        if leader is None:
            raise WebError(404, f"包保领导不存在：{name}")
        if not (principal.is_office or (principal.role == "leader" and principal.leader_id == leader.id)):
            raise forbidden("只能查看本人包保的项目")
        leader_id = leader.id
    return _leader_view(request, principal, leader_id, as_of)


def leader_home(request: Request, principal: Principal, as_of: date | None = None) -> Response:
    if principal.leader_id is None:
        raise forbidden("该账号未关联包保领导")
    return _leader_view(request, principal, principal.leader_id, as_of)


def _leader_view(request: Request, principal: Principal, leader_id: int, as_of: date | None = None) -> Response:
    """Red and yellow projects with one-tap acknowledgement, the forecast (述职前将转红/转黄, SPEC
    §10), the notices sent, the rates, the trend, the changes; as of a past date on request."""
    rt = runtime_of(request)
    with session_scope(rt.read_session_factory) as session:
        today = evaluation_date(session, rt.clock)
        d, source = source_as_of(session, rt, as_of)
        review = upcoming_review(rt.review_calendar, d)
        # The changes compare, as the digests do, with the previous review's digest day (SPEC §9).
        dates = digest_dates(rt.review_calendar, review.date)
        digest = gather_leader_digest(
            session, leader_id=leader_id, review_date=review.date, as_of=d, previous_review=dates.previous_review,
            previous_as_of=dates.previous_day, scheme=rt.scheme, link_base="",
        )
        if source.past is not None:
            digest = leader_digest_as_of(session, digest, leader_id=leader_id, source=source, scheme=rt.scheme)
        notices = notices_to(session, digest.leader)
        forecast_review, forecast = scoped_forecast(rt, session, principal, as_of=d, review=None,
                                                    leader_id=leader_id)
        points = trend(session, group_by="leader", group=digest.leader, until=d, now=rt.clock.now())
    own = principal.role == "leader"
    scope = {} if own else {"leader": digest.leader}  # a leader's list is their own already
    past = {"as_of": d.isoformat()} if d != today else {}
    list_links = {c: "/projects?" + urlencode({**scope, "color": c, **past}) for c in ("red", "yellow", "green")}
    return render(request, "leader.html", principal, digest=digest, as_of=d, today=today, past=bool(past),
                  review=review, notices=notices, own=own, may_ack=principal.role in ("office", "leader") and not past,
                  forecast=forecast, forecast_review=forecast_review, list_links=list_links,
                  trend=trend_chart_data(points))
