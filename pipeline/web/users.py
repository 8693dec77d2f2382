"""The office's account pages (账号管理): list, add, disable/enable, reset a password.

Every change is a call to ``pipeline.accounts`` with the signed-in office user as the actor, so it
lands in the audit log exactly as the same change made with ``pipeline user …`` does. A generated
password is shown once, in the answer to the form that made it (never kept in a cookie or a flash).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from pipeline.accounts import ROLE_NAMES, ROLES, Principal, add_user, list_users, set_active, set_password
from pipeline.db import session_scope
from pipeline.errors import ActionRefused
from pipeline.models import Leader, Unit
from pipeline.passwords import POLICY, generate_password
from pipeline.web.pages import flash, render
from pipeline.web.security import CSRF_FIELD, actor_of, check_csrf, current_principal, require_office, runtime_of

router = APIRouter(include_in_schema=False, dependencies=[Depends(current_principal)])


def users_page(request: Request, principal: Principal, *, status: int = 200, **context: Any) -> Response:
    rt = runtime_of(request)
    with session_scope(rt.session_factory) as session:
        users = list_users(session)
        leaders = list(session.scalars(select(Leader.name).order_by(Leader.name)))
        units = list(session.scalars(select(Unit.name).order_by(Unit.name)))
    context.setdefault("form", {})
    return render(request, "users.html", principal, status_code=status, users=users, leaders=leaders, units=units,
                  roles=[(r, ROLE_NAMES[r]) for r in ROLES], policy=POLICY, **context)


@router.get("/users")
def users(request: Request, principal: Principal = Depends(current_principal)) -> Response:
    require_office(principal)
    return users_page(request, principal)


@router.post("/users")
def add(request: Request, username: str = Form(""), role: str = Form(""), scope: str = Form(""),
        display_name: str = Form(""), password: str = Form(""), csrf: str = Form("", alias=CSRF_FIELD),
        principal: Principal = Depends(current_principal)) -> Response:
    require_office(principal)
    check_csrf(request, principal, csrf)
    rt = runtime_of(request)
    secret = password or generate_password()
    form = {"username": username, "role": role, "scope": scope, "display_name": display_name}
    try:
        with session_scope(rt.session_factory) as session:
            add_user(session, username=username, role=role, password=secret, clock=rt.clock,
                     actor=actor_of(request, principal), display_name=display_name.strip() or None,
                     leader=scope if role == "leader" else None, unit=scope if role == "unit" else None)
    except ActionRefused as exc:
        return users_page(request, principal, status=422, error=str(exc), form=form)
    shown = {"username": username.strip(), "password": secret} if not password else None
    return users_page(request, principal, done=f"已创建账号 {username.strip()}（{ROLE_NAMES.get(role, role)}）",
                      shown_password=shown)


@router.post("/users/{username}/disable")
def disable(username: str, request: Request, csrf: str = Form("", alias=CSRF_FIELD),
            principal: Principal = Depends(current_principal)) -> Response:
    return _set_active(request, principal, username, csrf, active=False)


@router.post("/users/{username}/enable")
def enable(username: str, request: Request, csrf: str = Form("", alias=CSRF_FIELD),
           principal: Principal = Depends(current_principal)) -> Response:
    return _set_active(request, principal, username, csrf, active=True)


def _set_active(request: Request, principal: Principal, username: str, csrf: str, *, active: bool) -> Response:
    require_office(principal)
    check_csrf(request, principal, csrf)
    if not active and username == principal.username:
        flash(request, "不能停用自己正在使用的账号", "error")
        return RedirectResponse("/users", status_code=303)
    rt = runtime_of(request)
    try:
        with session_scope(rt.session_factory) as session:
            ended = set_active(session, username=username, active=active, actor=actor_of(request, principal),
                               now=rt.clock.now())
        flash(request, f"已启用账号 {username}" if active else
              f"已停用账号 {username}：其 {ended} 个登录已立即退出，API 令牌同时失效")
    except ActionRefused as exc:
        flash(request, str(exc), "error")
    return RedirectResponse(f"/users#u-{quote(username)}", status_code=303)


@router.post("/users/{username}/password")
def reset_password(username: str, request: Request, password: str = Form(""), csrf: str = Form("", alias=CSRF_FIELD),
                   principal: Principal = Depends(current_principal)) -> Response:
    require_office(principal)
    check_csrf(request, principal, csrf)
    rt = runtime_of(request)
    secret = password or generate_password()
    try:
        with session_scope(rt.session_factory) as session:
            ended = set_password(session, username=username, password=secret, actor=actor_of(request, principal),
                                 now=rt.clock.now(),
                                 keep_session=principal.session_id if username == principal.username else None)
    except ActionRefused as exc:
        return users_page(request, principal, status=422, error=f"{username}：{exc}")
    shown = {"username": username, "password": secret} if not password else None
    return users_page(request, principal, done=f"已重置 {username} 的密码，其 {ended} 个登录已退出",
                      shown_password=shown)
