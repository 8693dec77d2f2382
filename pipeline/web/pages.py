"""The server-rendered pages (Chinese): overview, project list and export, project, leader, upload, alerts."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from pipeline.accounts import Principal
from pipeline.alerts.content import gather_leader_digest
from pipeline.db import session_scope
from pipeline.errors import ActionRefused
from pipeline.meta import evaluation_date
from pipeline.models import Leader
from pipeline.rules.metrics import time_progress
from pipeline.web import api_actions
from pipeline.web.api_projects import filters_from
from pipeline.web.errors import WebError, forbidden
from pipeline.web.export import MAX_ROWS, projects_xlsx
from pipeline.web.figures import chart_data, upcoming_review
from pipeline.web.queries import (
    ProjectFilters,
    batch_rejections,
    colour_counts,
    filter_choices,
    iter_projects,
    latest_changes,
    leader_row,
    leaders_board,
    list_projects,
    outbox_counts,
    outbox_page,
    project_by_code,
    project_detail,
    recent_batches,
)
from pipeline.web.schemas import OverrideIn
from pipeline.web.security import (
    CSRF_FIELD,
    check_csrf,
    check_project,
    csrf_token,
    current_principal,
    require_office,
    require_role,
    runtime_of,
)
from pipeline.web.uploads import form_capped, save_upload, submit_file, temp_folder

router = APIRouter(include_in_schema=False, dependencies=[Depends(current_principal)])
FLASH = "flash"


def flash(request: Request, message: str, kind: str = "ok") -> None:
    request.session.setdefault(FLASH, []).append([kind, message])


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
def overview(request: Request, principal: Principal = Depends(current_principal)) -> Response:
    rt = runtime_of(request)
    with session_scope(rt.session_factory) as session:
        d = evaluation_date(session, rt.clock)
        counts = colour_counts(session, principal)
        cache = request.app.state.rates
        by_county = cache.rates(session, as_of=d, by="county", principal=principal, allow_stale=True)
        city = cache.rates(session, as_of=d, by="city", principal=principal, allow_stale=True)
        changes = latest_changes(session, principal, limit=12)
    review = upcoming_review(rt.review_calendar, d)
    return render(request, "overview.html", principal, as_of=d, counts=counts, total=sum(counts.values()),
                  city=city.groups[0], groups=by_county.groups, charts=chart_data(by_county.groups, d),
                  stale=by_county.stale or city.stale, review=review, changes=changes,
                  progress=float(time_progress(d)) * 100)


@router.get("/projects")
def projects(request: Request, f: ProjectFilters = Depends(filters_from),
             principal: Principal = Depends(current_principal)) -> Response:
    rt = runtime_of(request)
    f = f.normalised()
    with session_scope(rt.session_factory) as session:
        total, rows = list_projects(session, f, principal)
        choices = filter_choices(session, principal)
    pages = max(1, -(-total // f.per_page))
    return render(request, "projects.html", principal, f=f, total=total, rows=rows, pages=pages, choices=choices,
                  link=lambda **changes: "/projects?" + urlencode(f.query_args(**changes)),
                  export_link="/projects/export.xlsx?" + urlencode(f.query_args(page=1)))


@router.get("/projects/export.xlsx")
def export_projects(request: Request, f: ProjectFilters = Depends(filters_from),
                    principal: Principal = Depends(current_principal)) -> Response:
    rt = runtime_of(request)
    with session_scope(rt.session_factory) as session:
        data = projects_xlsx(iter_projects(session, f, principal, limit=MAX_ROWS), title="项目清单")
    name = quote("项目清单.xlsx")
    return Response(data, media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": f"attachment; filename=projects.xlsx; filename*=UTF-8''{name}"})


@router.get("/projects/{code}")
def project_page(code: str, request: Request, principal: Principal = Depends(current_principal)) -> Response:
    rt = runtime_of(request)
    with session_scope(rt.session_factory) as session:
        project = project_by_code(session, code)
        if project is None:
            raise WebError(404, f"项目代码不存在：{code}")
        check_project(principal, project)
        detail = project_detail(session, project)
        d = evaluation_date(session, rt.clock)
    return render(request, "project.html", principal, as_of=d, **detail)


def _back(code: str) -> RedirectResponse:
    return RedirectResponse(f"/projects/{quote(code)}#timeline", status_code=303)


@router.post("/projects/{code}/acknowledge")
def acknowledge_form(code: str, request: Request, note: str = Form(""), csrf: str = Form("", alias=CSRF_FIELD),
                     principal: Principal = Depends(current_principal)) -> Response:
    check_csrf(request, principal, csrf)
    try:
        result = api_actions.do_acknowledge(request, principal, code, note)
        flash(request, result.message)
    except ActionRefused as exc:
        flash(request, str(exc), "error")
    return _back(code)


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
    try:
        result = api_actions.do_override(request, principal, code, OverrideIn(color=color, reason=reason, expires_on=until))
        flash(request, result.message)
    except ActionRefused as exc:
        flash(request, str(exc), "error")
    return _back(code)


@router.post("/projects/{code}/override/revoke")
def revoke_form(code: str, request: Request, csrf: str = Form("", alias=CSRF_FIELD),
                principal: Principal = Depends(current_principal)) -> Response:
    check_csrf(request, principal, csrf)
    try:
        flash(request, api_actions.do_revoke(request, principal, code).message)
    except ActionRefused as exc:
        flash(request, str(exc), "error")
    return _back(code)


@router.get("/leaders")
def leaders(request: Request, principal: Principal = Depends(current_principal)) -> Response:
    rt = runtime_of(request)
    with session_scope(rt.session_factory) as session:
        if principal.role == "leader":
            own = session.get(Leader, principal.leader_id) if principal.leader_id else None
            if own is None:
                raise forbidden("该账号未关联包保领导")
            return RedirectResponse(f"/leaders/{quote(own.name)}", status_code=303)
        require_office(principal)
        board = leaders_board(session)
    return render(request, "leaders.html", principal, board=board)


@router.get("/leaders/{name}")
def leader_page(name: str, request: Request, principal: Principal = Depends(current_principal)) -> Response:
    """One leader's portfolio, as in their 双月述职 digest (the digest's own gathering, for the next review)."""
    rt = runtime_of(request)
    with session_scope(rt.session_factory) as session:
        leader = leader_row(session, name)
        if leader is None:
            raise WebError(404, f"包保领导不存在：{name}")
        if not (principal.is_office or (principal.role == "leader" and principal.leader_id == leader.id)):
            raise forbidden("只能查看本人包保的项目")
        d = evaluation_date(session, rt.clock)
        review = upcoming_review(rt.review_calendar, d)
        digest = gather_leader_digest(
            session, leader_id=leader.id, review_date=review.date, as_of=d,
            previous_review=rt.review_calendar.previous_review(review.date), scheme=rt.scheme, link_base="",
        )
    return render(request, "leader.html", principal, leader=leader, digest=digest, as_of=d, review=review,
                  progress=float(time_progress(d)) * 100)


@router.get("/upload")
def upload_page(request: Request, principal: Principal = Depends(current_principal)) -> Response:
    require_role(principal, "unit")
    rt = runtime_of(request)
    with session_scope(rt.session_factory) as session:
        batches = recent_batches(session) if principal.is_office else []
    return render(request, "upload.html", principal, sub=None, batches=batches, error=None,
                  limit_mb=rt.settings.max_upload_bytes / 1024 / 1024)


@router.post("/upload")
async def upload(request: Request, principal: Principal = Depends(current_principal)) -> Response:
    require_role(principal, "unit")
    rt = runtime_of(request)
    limit_mb = rt.settings.max_upload_bytes / 1024 / 1024
    try:
        form = await form_capped(request, rt.settings.max_upload_bytes)
        token = form.get(CSRF_FIELD)
        check_csrf(request, principal, token if isinstance(token, str) else None)
        upload_file = form.get("file")
        if not isinstance(upload_file, UploadFile) or not upload_file.filename:
            raise WebError(422, "请选择要上传的 Excel 文件")
        with temp_folder() as folder:
            path = await save_upload(upload_file, Path(folder), rt.settings.max_upload_bytes)
            sub = await run_in_threadpool(submit_file, rt, principal, path)
    except WebError as exc:
        if exc.status == 403 and not exc.errors:
            raise
        return render(request, "upload.html", principal, status_code=exc.status, sub=None, batches=[], error=exc.message,
                      foreign=exc.errors, limit_mb=limit_mb)
    rejections = []
    if sub.batch_id is not None and not sub.created:
        with session_scope(rt.session_factory) as session:
            rejections = batch_rejections(session, sub.batch_id)
    return render(request, "upload.html", principal, sub=sub, rejections=rejections, batches=[], error=None,
                  limit_mb=limit_mb)


@router.get("/alerts")
def alerts_page(request: Request, status: str | None = Query(None), page: int = Query(1, ge=1),
                principal: Principal = Depends(current_principal)) -> Response:
    require_office(principal)
    if status and status not in api_actions.OUTBOX_STATUSES:
        status = None
    rt = runtime_of(request)
    with session_scope(rt.session_factory) as session:
        counts = outbox_counts(session)
        total, rows = outbox_page(session, status=status, page=page, per_page=50)
    pages = max(1, -(-total // 50))
    return render(request, "alerts.html", principal, counts=counts, rows=rows, total=total, status=status,
                  page=page, pages=pages)


@router.post("/alerts/{message_id}/resend")
def resend_form(message_id: int, request: Request, csrf: str = Form("", alias=CSRF_FIELD),
                principal: Principal = Depends(current_principal)) -> Response:
    check_csrf(request, principal, csrf)
    try:
        flash(request, api_actions.do_resend(request, principal, message_id).message)
    except ActionRefused as exc:
        flash(request, str(exc), "error")
    return RedirectResponse("/alerts?status=failed", status_code=303)
