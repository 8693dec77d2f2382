"""Who is asking and what they may do: sessions, bearer tokens, the SSO header, roles, CSRF.

A request is authenticated, in this order, by an ``Authorization: Bearer`` token, by the header
an SSO proxy sets (only when ``PIPELINE_TRUSTED_USER_HEADER`` is configured, and only when the
request comes from one of ``PIPELINE_TRUSTED_PROXIES``: from anywhere else the header is ignored
and logged), or by the session cookie, whose random id must name a live row of ``web_sessions``
(see ``pipeline.login_sessions``). The signed cookie also carries the CSRF token and flash
messages, which give no authority by themselves. Roles: the office may do everything; a leader
sees their own projects and may acknowledge; a unit sees its own projects and may upload. Forms
and JSON writes authenticated by an ambient credential (cookie or SSO header) must carry the
session's CSRF token.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import Any

import polars as pl
from fastapi import Request
from sqlalchemy.orm import Session

from pipeline.accounts import Principal, active_user, principal_of, user_for_token
from pipeline.audit import Actor
from pipeline.change_requests import ChangeFilter
from pipeline.db import session_scope
from pipeline.login_sessions import SessionPolicy, session_user
from pipeline.models import Project
from pipeline.runtime import Runtime
from pipeline.settings import Settings, SettingsError
from pipeline.web.clients import client_address, is_trusted
from pipeline.web.errors import forbidden, unauthorized

log = logging.getLogger(__name__)
SESSION_ID = "sid"  # the random id of the web_sessions row (only its SHA-256 is stored)
SESSION_CSRF = "csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ROLE_REFUSED = {
    "office": "该操作仅限投资科账号",
    "leader": "该操作仅限包保领导或投资科账号",
    "unit": "该操作仅限责任单位或投资科账号",
}


def session_secret(settings: Settings) -> str:
    """The key signing session cookies: PIPELINE_SECRET_KEY; on embedded defaults, one generated once
    and kept in data_dir/secret_key. A production installation (a broker configured) must set it."""
    if settings.secret_key is not None and settings.secret_key.get_secret_value():
        key = settings.secret_key.get_secret_value()
        if len(key) < 32:
            raise SettingsError("环境变量 PIPELINE_SECRET_KEY 太短：至少 32 个字符")
        return key
    if not settings.is_embedded:
        raise SettingsError("缺少环境变量 PIPELINE_SECRET_KEY：生产环境（已配置消息队列）必须设置会话签名密钥")
    path = Path(settings.data_dir) / "secret_key"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(key)
    return key


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise unauthorized("认证头格式错误：应为 Authorization: Bearer <令牌>")
    return value.strip()


def peer_of(request: Request) -> str | None:
    return request.client.host if request.client else None


def client_of(request: Request) -> str | None:
    """The client's address (the socket peer, or what a trusted proxy forwarded)."""
    return client_address(peer_of(request), request.headers, runtime_of(request).settings.trusted_proxies)


def actor_of(request: Request, principal: Principal) -> Actor:
    """The signed-in user as the actor of an audited action."""
    return principal.actor(client_of(request))


def _sso_username(request: Request) -> str | None:
    """The SSO proxy's username header, when configured, present, and sent by a trusted proxy."""
    settings = runtime_of(request).settings
    header = settings.trusted_user_header
    if not header or not request.headers.get(header):
        return None
    peer = peer_of(request)
    if not is_trusted(peer, settings.trusted_proxies):
        log.warning("ignored the SSO header %s (user %r) from %s: not one of PIPELINE_TRUSTED_PROXIES",
                    header, request.headers[header][:100], peer)
        return None
    return request.headers[header]


def resolve_principal(request: Request) -> Principal | None:
    """The signed-in user of this request, or None. A bad bearer token is refused outright."""
    rt = runtime_of(request)
    token = _bearer(request)
    with session_scope(rt.session_factory) as session:
        if token is not None:
            user = user_for_token(session, token, now=rt.clock.now())
            if user is None:
                raise unauthorized("API 令牌无效、已撤销或所属账号已停用")
            return principal_of(user, via="token")
        sso = _sso_username(request)
        if sso is not None:
            user = active_user(session, username=sso)
            if user is None:
                raise unauthorized(f"单点登录用户「{sso}」在本系统中不存在或已停用")
            return principal_of(user, via="header")
        sid = request.session.get(SESSION_ID)
        if isinstance(sid, str):
            found = session_user(session, sid, now=rt.clock.now(), policy=SessionPolicy.from_settings(rt.settings))
            if found is not None:
                return principal_of(found[0], via="session", session_id=found[1])
            request.session.clear()  # ended or lapsed: nothing of it carries over
    return None


def current_principal(request: Request) -> Principal:
    """Dependency: the signed-in user, else 401 (API) or a redirect to the login page (pages)."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    principal = resolve_principal(request)
    if principal is None:
        raise unauthorized()
    request.state.principal = principal
    return principal


def require_role(principal: Principal, *roles: str) -> None:
    """Refuse (403) unless the user is the office or has one of the roles."""
    if principal.is_office or principal.role in roles:
        return
    raise forbidden(ROLE_REFUSED.get(roles[0] if roles else "office", ROLE_REFUSED["office"]))


def require_office(principal: Principal) -> None:
    if not principal.is_office:
        raise forbidden(ROLE_REFUSED["office"])


def csrf_token(request: Request) -> str:
    token = request.session.get(SESSION_CSRF)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[SESSION_CSRF] = token
    return token


def check_csrf(request: Request, principal: Principal | None, submitted: str | None) -> None:
    """Unsafe requests carried by an ambient credential must echo the session's CSRF token."""
    if request.method in SAFE_METHODS or (principal is not None and principal.via == "token"):
        return
    expected = request.session.get(SESSION_CSRF)
    given = submitted or request.headers.get(CSRF_HEADER)
    if not isinstance(expected, str) or not given or not hmac.compare_digest(expected, given):
        raise forbidden("表单已过期或来源无法验证（CSRF 校验失败），请刷新页面后重试")


def may_see(principal: Principal, project: Project) -> bool:
    if principal.is_office:
        return True
    if principal.role == "leader":
        return principal.leader_id is not None and project.leader_id == principal.leader_id
    if principal.role == "unit":
        return principal.unit_id is not None and project.unit_id == principal.unit_id
    return False


def refuse_foreign(principal: Principal) -> None:
    who = "本单位" if principal.role == "unit" else "您包保"
    raise forbidden(f"无权访问该项目：该项目不属于{who}的项目")


def check_project(principal: Principal, project: Project) -> None:
    if not may_see(principal, project):
        refuse_foreign(principal)


def _scope(principal: Principal) -> tuple[str, int] | None:
    """The project column and value that limit what the user may see (None: all): a leader their
    projects, a unit its own; an account linked to no one sees nothing (id -1)."""
    if principal.is_office:
        return None
    if principal.role == "leader":
        return "leader_id", principal.leader_id if principal.leader_id is not None else -1
    return "unit_id", principal.unit_id if principal.unit_id is not None else -1


def scope_clause(principal: Principal):  # type: ignore[no-untyped-def]
    """A WHERE clause limiting projects to those the user may see (None: all)."""
    scope = _scope(principal)
    return None if scope is None else getattr(Project, scope[0]) == scope[1]


def scope_filter(principal: Principal) -> pl.Expr | None:
    """The same limit over a frame of projects with ``leader_id`` and ``unit_id`` columns (None: all)."""
    scope = _scope(principal)
    return None if scope is None else pl.col(scope[0]) == scope[1]


def change_scope(principal: Principal, **f: Any) -> ChangeFilter:
    """The change requests the user may see: the office all, a unit its own, a leader its projects'."""
    if principal.is_office:
        return ChangeFilter(**f)
    if principal.role == "leader":
        return ChangeFilter(**f, leader_id=principal.leader_id if principal.leader_id is not None else -1)
    return ChangeFilter(**f, unit_id=principal.unit_id if principal.unit_id is not None else -1)


def scope_key(principal: Principal) -> str:
    if principal.is_office:
        return "all"
    return f"{principal.role}:{principal.leader_id if principal.role == 'leader' else principal.unit_id}"


def open_session(request: Request) -> Session:
    return runtime_of(request).session_factory()
