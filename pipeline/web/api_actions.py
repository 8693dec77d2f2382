"""Actions: override a flag, acknowledge a red flag, the outbox and resending what failed."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Path
from starlette.concurrency import run_in_threadpool

from pipeline.accounts import Principal
from pipeline.alerts.outbox import resend
from pipeline.db import session_scope
from pipeline.models import ProjectFlag
from pipeline.overrides import acknowledge, revoke_override, set_override
from pipeline.web.api_projects import ANSWERS
from pipeline.web.errors import WebError
from pipeline.web.queries import outbox_page, project_by_code
from pipeline.web.schemas import MAX_ID, MAX_PAGE, AcknowledgeIn, ActionOut, OutboxPage, OverrideIn
from pipeline.web.security import (
    actor_of,
    check_csrf,
    check_project,
    current_principal,
    require_office,
    require_role,
    runtime_of,
)

router = APIRouter(prefix="/api", tags=["操作"], dependencies=[Depends(current_principal)],
                   responses={**ANSWERS, 409: {"description": "操作被拒绝（原因见 detail）"}})
OUTBOX_STATUSES = ("pending", "sending", "sent", "failed", "skipped")


def visible_project(session, principal: Principal, code: str):  # type: ignore[no-untyped-def]
    project = project_by_code(session, code)
    if project is None:
        raise WebError(404, f"项目代码不存在：{code}")
    check_project(principal, project)
    return project


def do_override(request: Request, principal: Principal, code: str, body: OverrideIn) -> ActionOut:
    require_office(principal)
    rt = runtime_of(request)
    with session_scope(rt.session_factory) as session:
        visible_project(session, principal, code)
        result = set_override(session, code=code, color=body.color, reason=body.reason, set_by=principal.display_name,
                              expires_on=body.expires_on, reflag=rt.reflag_projects, clock=rt.clock,
                              actor=actor_of(request, principal))
        project = project_by_code(session, code)
        flag = session.get(ProjectFlag, project.id) if project else None
        colour = flag.effective_color if flag else None
    from pipeline.tasks.dispatch import hand_over_outbox

    if result.outcome.turned_red:
        hand_over_outbox(rt)
    return ActionOut(message=f"已人工调整项目 {code} 的挂牌，有效期至 {body.expires_on.isoformat()}", flag=colour)


def do_revoke(request: Request, principal: Principal, code: str) -> ActionOut:
    require_office(principal)
    rt = runtime_of(request)
    with session_scope(rt.session_factory) as session:
        visible_project(session, principal, code)
        revoke_override(session, code=code, reflag=rt.reflag_projects, clock=rt.clock, actor=actor_of(request, principal))
    return ActionOut(message=f"已撤销项目 {code} 的人工调整")


def do_acknowledge(request: Request, principal: Principal, code: str, note: str) -> ActionOut:
    require_role(principal, "leader")
    rt = runtime_of(request)
    with session_scope(rt.session_factory) as session:
        visible_project(session, principal, code)
        acknowledge(session, code=code, note=note, by=principal.display_name, clock=rt.clock,
                    actor=actor_of(request, principal))
    return ActionOut(message=f"已确认项目 {code} 的红牌：本次红牌不再重复提醒", flag="red")


def do_resend(request: Request, principal: Principal, message_id: int) -> ActionOut:
    require_office(principal)
    rt = runtime_of(request)
    with session_scope(rt.session_factory) as session:
        resend(session, message_id, now=rt.clock.now(), actor=actor_of(request, principal))
    from pipeline.tasks.dispatch import hand_over_outbox

    hand_over_outbox(rt)
    return ActionOut(message=f"消息 {message_id} 已重新排队发送")


@router.post("/projects/{code}/override", response_model=ActionOut, summary="人工调整挂牌（仅投资科；须理由与到期日）")
def post_override(code: str, body: OverrideIn, request: Request,
                  principal: Principal = Depends(current_principal)) -> ActionOut:
    check_csrf(request, principal, None)
    return do_override(request, principal, code, body)


@router.delete("/projects/{code}/override", response_model=ActionOut, summary="撤销人工调整（仅投资科）")
def delete_override(code: str, request: Request, principal: Principal = Depends(current_principal)) -> ActionOut:
    check_csrf(request, principal, None)
    return do_revoke(request, principal, code)


@router.post("/projects/{code}/acknowledge", response_model=ActionOut, summary="确认红牌并附说明（包保领导或投资科）")
def post_acknowledge(code: str, body: AcknowledgeIn, request: Request,
                     principal: Principal = Depends(current_principal)) -> ActionOut:
    check_csrf(request, principal, None)
    return do_acknowledge(request, principal, code, body.note)


@router.get("/outbox", response_model=OutboxPage, summary="发送队列（可按状态筛选，如 status=failed）")
def get_outbox(request: Request, status: str | None = Query(None, description="|".join(OUTBOX_STATUSES)),
               page: int = Query(1, ge=1, le=MAX_PAGE), per_page: int = Query(50, ge=1, le=200),
               principal: Principal = Depends(current_principal)) -> OutboxPage:
    require_office(principal)
    if status and status not in OUTBOX_STATUSES:
        raise WebError(422, f"参数 status 无效：{status}（应为 {'|'.join(OUTBOX_STATUSES)}）",
                       [{"row": None, "field": "status", "message": "取值不在允许范围内"}])
    rt = runtime_of(request)
    with session_scope(rt.session_factory) as session:
        total, rows = outbox_page(session, status=status, page=page, per_page=per_page)
    return OutboxPage(total=total, page=page, per_page=per_page, items=rows)


@router.post("/outbox/{message_id}/resend", response_model=ActionOut, summary="重发一条发送失败的消息（仅投资科）")
async def post_resend(request: Request, message_id: int = Path(..., ge=1, le=MAX_ID),
                      principal: Principal = Depends(current_principal)) -> ActionOut:
    check_csrf(request, principal, None)
    return await run_in_threadpool(do_resend, request, principal, message_id)
