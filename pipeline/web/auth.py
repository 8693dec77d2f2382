"""Signing in and out of the web workspace, and changing one's own password.

The login form goes through ``pipeline.sign_in`` (throttled per account and per client address,
answered 429 with the wait while locked); a successful sign-in starts a server-side session whose
random id goes into the (signed) session cookie. Logout ends that session; changing the password
ends the user's other sessions.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from pipeline.accounts import Principal
from pipeline.db import session_scope
from pipeline.errors import ActionRefused
from pipeline.login_sessions import SessionPolicy
from pipeline.login_throttle import ThrottlePolicy
from pipeline.passwords import POLICY
from pipeline.sign_in import change_own_password, sign_in, sign_out
from pipeline.web.security import (
    CSRF_FIELD,
    SESSION_ID,
    actor_of,
    check_csrf,
    client_of,
    csrf_token,
    current_principal,
    resolve_principal,
    runtime_of,
)

router = APIRouter(include_in_schema=False)
BAD_LOGIN = "用户名或密码错误，或账号已停用"


def safe_next(target: str | None) -> str:
    """Only a local path may follow the sign-in (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def render_login(request: Request, *, error: str | None = None, status: int = 200, username: str = "",
                 headers: dict[str, str] | None = None) -> Response:
    return request.app.state.templates.TemplateResponse(
        request, "login.html",
        {"csrf": csrf_token(request), "error": error, "next": safe_next(request.query_params.get("next")),
         "username": username, "principal": None},
        status_code=status, headers=headers,
    )


@router.get("/login")
def login_page(request: Request) -> Response:
    return render_login(request)


@router.post("/login")
def login(request: Request, username: str = Form(""), password: str = Form(""), csrf_token_: str = Form("", alias="csrf_token"),
          next_: str = Form("/", alias="next")) -> Response:
    check_csrf(request, None, csrf_token_)
    rt = runtime_of(request)
    with session_scope(rt.session_factory) as session:
        result = sign_in(
            session, username=username, password=password, client=client_of(request),
            user_agent=request.headers.get("user-agent"), now=rt.clock.now(), tz=rt.settings.tz,
            throttle=ThrottlePolicy.from_settings(rt.settings), sessions=SessionPolicy.from_settings(rt.settings),
        )
    if result.locked_seconds:
        return render_login(request, error=result.locked_message, status=429, username=username,
                            headers={"Retry-After": str(result.locked_seconds)})
    if result.started is None:
        return render_login(request, error=BAD_LOGIN, status=401, username=username)
    request.session.clear()  # a new session at sign-in: nothing of the anonymous one carries over
    request.session[SESSION_ID] = result.started.token
    csrf_token(request)
    return RedirectResponse(safe_next(next_), status_code=303)


@router.post("/logout")
def logout(request: Request, csrf_token_: str = Form("", alias="csrf_token")) -> Response:
    principal = resolve_principal(request)
    if principal is None:
        request.session.clear()
        return RedirectResponse("/login", status_code=303)
    check_csrf(request, principal, csrf_token_)
    sid = request.session.get(SESSION_ID)
    if isinstance(sid, str):
        rt = runtime_of(request)
        with session_scope(rt.session_factory) as session:
            sign_out(session, sid, actor=actor_of(request, principal), now=rt.clock.now())
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


def render_password(request: Request, principal: Principal, *, error: str | None = None, done: str | None = None,
                    status: int = 200) -> Response:
    rt = runtime_of(request)
    return request.app.state.templates.TemplateResponse(
        request, "password.html",
        {"principal": principal, "csrf": csrf_token(request), "error": error, "done": done, "policy": POLICY,
         "flashes": [], "scheme": rt.scheme},
        status_code=status,
    )


@router.get("/account/password")
def password_page(request: Request, principal: Principal = Depends(current_principal)) -> Response:
    return render_password(request, principal)


@router.post("/account/password")
def change_password(request: Request, current: str = Form(""), new: str = Form(""), again: str = Form(""),
                    csrf: str = Form("", alias=CSRF_FIELD),
                    principal: Principal = Depends(current_principal)) -> Response:
    check_csrf(request, principal, csrf)
    if principal.via != "session":
        return render_password(request, principal, status=409,
                               error="通过单点登录或 API 令牌访问的账号不能在此修改密码")
    if new != again:
        return render_password(request, principal, status=422, error="两次输入的新密码不一致")
    rt = runtime_of(request)
    try:
        with session_scope(rt.session_factory) as session:
            change = change_own_password(
                session, user_id=principal.user_id, current=current, new=new, actor=actor_of(request, principal),
                now=rt.clock.now(), tz=rt.settings.tz, throttle=ThrottlePolicy.from_settings(rt.settings),
                keep_session=principal.session_id)
    except ActionRefused as exc:  # the new password breaks the policy
        return render_password(request, principal, status=422, error=str(exc))
    if change.refused:
        return render_password(request, principal, status=422, error=change.refused)
    ended = change.ended
    others = f"，您在其他浏览器或设备上的 {ended} 个登录已退出" if ended else ""
    return render_password(request, principal, done=f"密码已修改{others}。")
