"""Signing in and out of the web workspace (the session cookie is signed by SessionMiddleware)."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from pipeline.accounts import authenticate_password
from pipeline.db import session_scope
from pipeline.web.security import SESSION_CSRF, SESSION_USER, check_csrf, csrf_token, resolve_principal, runtime_of

router = APIRouter(include_in_schema=False)
BAD_LOGIN = "用户名或密码错误，或账号已停用"


def safe_next(target: str | None) -> str:
    """Only a local path may follow the sign-in (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def render_login(request: Request, *, error: str | None = None, status: int = 200, username: str = "") -> Response:
    return request.app.state.templates.TemplateResponse(
        request, "login.html",
        {"csrf": csrf_token(request), "error": error, "next": safe_next(request.query_params.get("next")),
         "username": username, "principal": None},
        status_code=status,
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
        user = authenticate_password(session, username, password)
        uid = user.id if user is not None else None
    if uid is None:
        return render_login(request, error=BAD_LOGIN, status=401, username=username)
    request.session.clear()  # a new session at sign-in: nothing of the anonymous one carries over
    request.session[SESSION_USER] = uid
    csrf_token(request)
    return RedirectResponse(safe_next(next_), status_code=303)


@router.post("/logout")
def logout(request: Request, csrf_token_: str = Form("", alias="csrf_token")) -> Response:
    principal = resolve_principal(request)
    if principal is None:
        return RedirectResponse("/login", status_code=303)
    check_csrf(request, principal, csrf_token_)
    request.session.pop(SESSION_USER, None)
    request.session.pop(SESSION_CSRF, None)
    return RedirectResponse("/login", status_code=303)
