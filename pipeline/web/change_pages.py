"""变更申请: the units' master-data changes (SPEC §3) as the office decides them, on a page and in the API.

The office sees every request and approves or rejects it (a note optional to approve, required to
reject); a unit sees its own requests, a leader those about their projects, both read-only. Every
decision is a call to ``pipeline.change_requests`` with the signed-in user as the actor.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from pipeline.accounts import Principal
from pipeline.change_requests import (
    STATUS_NAMES,
    ChangeRow,
    Decision,
    approve,
    list_requests,
    pending_count,
    reject,
)
from pipeline.db import session_scope
from pipeline.errors import ActionRefused
from pipeline.runtime import Runtime
from pipeline.web.api_projects import ANSWERS
from pipeline.web.errors import WebError
from pipeline.web.pages import flash, render
from pipeline.web.schemas import MAX_ID, MAX_PAGE, ActionOut
from pipeline.web.security import (
    CSRF_FIELD,
    actor_of,
    change_scope,
    check_csrf,
    current_principal,
    require_office,
    runtime_of,
)

pages = APIRouter(include_in_schema=False, dependencies=[Depends(current_principal)])
api = APIRouter(prefix="/api", tags=["变更申请"], dependencies=[Depends(current_principal)],
                responses={**ANSWERS, 409: {"description": "操作被拒绝（原因见 detail，如申请已过期）"}})
PER_PAGE = 50
MAX_NOTE = 1000


def pending_for(rt: Runtime, principal: Principal) -> int:
    """The count beside 变更申请 in the menu: the requests waiting that the user sees (none shown when
    the database cannot say, e.g. on the error page of a database fault)."""
    try:
        with session_scope(rt.session_factory) as session:
            return pending_count(session, change_scope(principal))
    except SQLAlchemyError:
        return 0


def _decide(request: Request, principal: Principal, ids: list[int], note: str | None, *, approving: bool) -> Decision:
    require_office(principal)
    rt = runtime_of(request)
    actor = actor_of(request, principal)
    with session_scope(rt.session_factory) as session:
        if approving:
            decision = approve(session, ids, actor=actor, clock=rt.clock, reflag=rt.reflag_projects, note=note)
        else:
            decision = reject(session, ids, actor=actor, clock=rt.clock, note=note or "")
    outcome = decision.outcome
    if outcome is not None and outcome.turned_red:
        from pipeline.tasks.dispatch import hand_over_outbox

        hand_over_outbox(rt)
    return decision


def _message(decision: Decision, verb: str) -> str:
    parts = []
    if decision.decided:
        parts.append(f"已{verb}变更申请 {'、'.join(map(str, decision.decided))}")
    if decision.unchanged:
        parts.append(f"申请 {'、'.join(map(str, decision.unchanged))} 此前已{verb}，未重复处理")
    return "；".join(parts)


# --- the page ------------------------------------------------------------------------------------


@pages.get("/changes")
def changes_page(request: Request, status: str | None = Query(None), code: str | None = Query(None, max_length=100),
                 page: int = Query(1, ge=1, le=MAX_PAGE), principal: Principal = Depends(current_principal)) -> Response:
    if status not in (*STATUS_NAMES, "all"):
        status = "pending" if principal.is_office else "all"
    code = (code or "").strip() or None
    rt = runtime_of(request)
    with session_scope(rt.session_factory) as session:
        result = list_requests(session, change_scope(principal, status=None if status == "all" else status,
                                                     project_code=code),
                               tz=rt.clock.tz, page=page, per_page=PER_PAGE)

    def link(p: int | None = None, to: str | None = None) -> str:
        query = {"status": to or status, **({"code": code} if code else {}), **({"page": p} if p else {})}
        return "/changes?" + urlencode(query)

    return render(request, "changes.html", principal, result=result, status=status, statuses=STATUS_NAMES,
                  link=link, code=code, max_note=MAX_NOTE)


@pages.post("/changes/{request_id}/approve")
def approve_form(request: Request, request_id: int = PathParam(..., ge=1, le=MAX_ID),
                 note: str = Form("", max_length=MAX_NOTE), back: str = Form("pending"),
                 csrf: str = Form("", alias=CSRF_FIELD), principal: Principal = Depends(current_principal)) -> Response:
    return _decide_form(request, principal, request_id, note, back, csrf, approving=True)


@pages.post("/changes/{request_id}/reject")
def reject_form(request: Request, request_id: int = PathParam(..., ge=1, le=MAX_ID),
                note: str = Form("", max_length=MAX_NOTE), back: str = Form("pending"),
                csrf: str = Form("", alias=CSRF_FIELD), principal: Principal = Depends(current_principal)) -> Response:
    return _decide_form(request, principal, request_id, note, back, csrf, approving=False)


def _decide_form(request: Request, principal: Principal, request_id: int, note: str, back: str, csrf: str, *,
                 approving: bool) -> Response:
    check_csrf(request, principal, csrf)
    try:
        decision = _decide(request, principal, [request_id], note.strip() or None, approving=approving)
        flash(request, _message(decision, "批准" if approving else "驳回"))
    except ActionRefused as exc:
        flash(request, str(exc), "error")
    target = back if back in (*STATUS_NAMES, "all") else "pending"
    return RedirectResponse(f"/changes?status={target}#c-{request_id}", status_code=303)


# --- the API -------------------------------------------------------------------------------------


class ChangeRequestOut(BaseModel):
    id: int
    code: str = Field(..., description="项目代码")
    name: str = Field(..., description="项目名称")
    field: str = Field(..., description="字段（模板的英文别名，如 leader、county）")
    field_name: str = Field(..., description="字段的中文名（模板表头）")
    current: str | None = Field(..., description="申请时项目库中的值")
    proposed: str | None = Field(..., description="责任单位报送的值")
    reserve: str | None = Field(..., description="项目库中现在的值")
    stale: bool = Field(..., description="待审核但库内值已不是申请时的值：不能批准")
    unit: str | None
    status: str = Field(..., description="pending | approved | rejected")
    created_at: str
    decided_by: str | None
    decided_at: str | None
    note: str | None = Field(None, description="投资科处理时的说明")


class ChangeRequestPage(BaseModel):
    total: int
    page: int
    per_page: int
    items: list[ChangeRequestOut]


class ChangeDecisionIn(BaseModel):
    ids: list[int] = Field(..., min_length=1, max_length=1000, description="变更申请编号")
    note: str | None = Field(None, max_length=MAX_NOTE, description="说明（驳回时必填）")


class ChangeDecisionOut(ActionOut):
    decided: list[int]
    unchanged: list[int] = Field(..., description="此前已按同样方式处理的申请（不重复处理）")


def _out(r: ChangeRow) -> ChangeRequestOut:
    return ChangeRequestOut(
        id=r.id, code=r.code, name=r.project_name, field=r.field, field_name=r.field_name, current=r.current_value,
        proposed=r.proposed_value, reserve=r.reserve_value, stale=r.stale, unit=r.unit, status=r.status,
        created_at=r.created_at.isoformat(), decided_by=r.decided_by,
        decided_at=r.decided_at.isoformat() if r.decided_at else None, note=r.note)


@api.get("/change-requests", response_model=ChangeRequestPage,
         summary="变更申请（投资科看全部；责任单位看本单位的；包保领导看其包保项目的）")
def get_change_requests(request: Request, status: str | None = Query(None, description="pending|approved|rejected"),
                        code: str | None = Query(None, max_length=100, description="项目代码"),
                        page: int = Query(1, ge=1, le=MAX_PAGE), per_page: int = Query(50, ge=1, le=200),
                        principal: Principal = Depends(current_principal)) -> ChangeRequestPage:
    if status is not None and status not in STATUS_NAMES:
        raise WebError(422, f"参数 status 无效：{status}（应为 {'|'.join(STATUS_NAMES)}）",
                       [{"row": None, "field": "status", "message": "取值不在允许范围内"}])
    rt = runtime_of(request)
    with session_scope(rt.session_factory) as session:
        result = list_requests(session, change_scope(principal, status=status, project_code=code), tz=rt.clock.tz,
                               page=page, per_page=per_page)
    return ChangeRequestPage(total=result.total, page=result.page, per_page=result.per_page,
                             items=[_out(r) for r in result.rows])


def _decide_api(request: Request, principal: Principal, body: ChangeDecisionIn, *, approving: bool) -> ChangeDecisionOut:
    check_csrf(request, principal, None)
    bad = [i for i in body.ids if not 1 <= i <= MAX_ID]
    if bad:
        raise WebError(422, "变更申请编号超出范围", [{"row": None, "field": "ids", "value": str(bad[0])[:50],
                                                      "message": "编号应为正整数"}])
    decision = _decide(request, principal, body.ids, body.note, approving=approving)
    return ChangeDecisionOut(message=_message(decision, "批准" if approving else "驳回"), decided=list(decision.decided),
                             unchanged=list(decision.unchanged))


@api.post("/change-requests/approve", response_model=ChangeDecisionOut,
          summary="批准变更申请（仅投资科）：申请值写入项目库；已过期的申请被拒绝（409）")
def post_approve(body: ChangeDecisionIn, request: Request,
                 principal: Principal = Depends(current_principal)) -> ChangeDecisionOut:
    return _decide_api(request, principal, body, approving=True)


@api.post("/change-requests/reject", response_model=ChangeDecisionOut,
          summary="驳回变更申请（仅投资科；须填写理由）：项目库保持原值")
def post_reject(body: ChangeDecisionIn, request: Request,
                principal: Principal = Depends(current_principal)) -> ChangeDecisionOut:
    return _decide_api(request, principal, body, approving=False)
