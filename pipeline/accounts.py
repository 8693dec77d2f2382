"""Accounts of the web workspace: users (office, leader, unit), their passwords and API tokens.

Passwords are hashed with argon2id (argon2-cffi) and must pass the policy of ``pipeline.passwords``;
a token is 32 random bytes shown once, and only its SHA-256 is stored. A disabled account can
neither sign in nor use its tokens, and its sessions end at once, as they do (but for the one
making the change) when its password changes. Every change is written to the audit log with the
actor the caller passes in. The CLI (`pipeline user …`, `pipeline token …`) and the web call these
functions; nothing here knows of HTTP.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from pipeline.audit import Actor, AuditAction, record
from pipeline.clock import Clock
from pipeline.db import dialect_insert
from pipeline.errors import ActionRefused
from pipeline.login_sessions import end_sessions_of
from pipeline.models import ApiToken, Leader, Unit, User, WebSession
from pipeline.passwords import check_password

from pipeline.roles import ROLE_NAMES, ROLES  # noqa: E402,F401  (re-exported)
TOKEN_PREFIX = "ppm_"

_hasher = PasswordHasher()


@dataclass(frozen=True)
class Principal:
    """Who is asking, as the web sees it: the user and what they may touch."""

    user_id: int
    username: str
    display_name: str
    role: str
    leader_id: int | None = None
    unit_id: int | None = None
    via: str = "session"  # session | token | header
    session_id: int | None = None  # the web session, when signed in through one

    @property
    def is_office(self) -> bool:
        return self.role == "office"

    def actor(self, client: str | None) -> Actor:
        """This user as the actor of an audited action, by the way they came in."""
        return Actor(self.username, VIA_OF.get(self.via, self.via), client)

    @property
    def role_name(self) -> str:
        return ROLE_NAMES.get(self.role, self.role)


VIA_OF = {"session": "web", "token": "api", "header": "sso"}


def principal_of(user: User, *, via: str, session_id: int | None = None) -> Principal:
    return Principal(user.id, user.username, user.display_name, user.role, user.leader_id, user.unit_id, via,
                     session_id)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _named_id(session: Session, model: type[Leader] | type[Unit], name: str) -> int:
    """The id of the leader or unit with this name, inserting it when it is not known yet."""
    session.execute(dialect_insert(session, model).values(name=name).on_conflict_do_nothing(index_elements=["name"]))
    found = session.scalar(select(model.id).where(model.name == name))
    assert found is not None
    return int(found)


def add_user(
    session: Session, *, username: str, role: str, password: str | None, clock: Clock, actor: Actor,
    display_name: str | None = None, leader: str | None = None, unit: str | None = None,
) -> User:
    """Create a user; a leader or unit user is linked to that leader or unit (created if new)."""
    username = username.strip()
    if not username:
        raise ActionRefused("用户名不能为空")
    if role not in ROLES:
        raise ActionRefused(f"角色无效：{role}（应为 office、leader 或 unit）")
    if role == "leader" and not (leader or "").strip():
        raise ActionRefused("包保领导账号须用 --leader 指定领导姓名")
    if role == "unit" and not (unit or "").strip():
        raise ActionRefused("责任单位账号须用 --unit 指定单位名称")
    if role == "office" and (leader or unit):
        raise ActionRefused("投资科账号不关联领导或单位")
    if len(username) > 100:
        raise ActionRefused("用户名太长：至多 100 个字符")
    if password is not None:
        check_password(password, username=username)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise ActionRefused(f"用户名已存在：{username}")
    leader_id = _named_id(session, Leader, leader.strip()) if role == "leader" and leader else None
    unit_id = _named_id(session, Unit, unit.strip()) if role == "unit" and unit else None
    user = User(
        username=username, display_name=(display_name or leader or unit or username).strip(), role=role,
        leader_id=leader_id, unit_id=unit_id, password_hash=hash_password(password) if password else None,
        active=True, created_at=clock.now(),
    )
    session.add(user)
    session.flush()
    record(session, actor, AuditAction.USER_ADDED, now=clock.now(), target=username, role=role,
           leader=leader.strip() if leader else None, unit=unit.strip() if unit else None)
    return user


def user_named(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username.strip()))
    if user is None:
        raise ActionRefused(f"用户不存在：{username}")
    return user


def set_password(
    session: Session, *, username: str, password: str, actor: Actor, now: datetime, keep_session: int | None = None,
    own: bool = False,
) -> int:
    """Set the user's password (after the policy) and end their sessions but ``keep_session`` (the one
    of a user changing their own password, ``own``; otherwise it is a reset by the office or the CLI).
    Returns the number of sessions ended."""
    user = user_named(session, username)
    check_password(password, username=user.username)
    user.password_hash = hash_password(password)
    ended = end_sessions_of(session, user.id, keep=keep_session)
    record(session, actor, AuditAction.PASSWORD_CHANGED if own else AuditAction.PASSWORD_RESET, now=now,
           target=user.username, sessions_ended=ended)
    return ended


def set_active(session: Session, *, username: str, active: bool, actor: Actor, now: datetime) -> int:
    """Disable or enable an account. Disabling ends its sessions at once (and its tokens stop working,
    since only active users' tokens are accepted); the last active office account cannot be disabled.
    Returns the number of sessions ended."""
    user = user_named(session, username)
    if user.active == active:
        raise ActionRefused(f"账号 {user.username} 已经是{'启用' if active else '停用'}状态")
    if not active and user.role == "office":
        others = session.scalar(select(func.count()).select_from(User).where(
            User.role == "office", User.active.is_(True), User.id != user.id)) or 0
        if not others:
            raise ActionRefused("不能停用最后一个启用的投资科账号")
    user.active = active
    ended = 0 if active else end_sessions_of(session, user.id)
    record(session, actor, AuditAction.USER_ENABLED if active else AuditAction.USER_DISABLED, now=now,
           target=user.username, sessions_ended=ended if not active else None)
    return ended


def verifies(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def authenticate_password(session: Session, username: str, password: str) -> User | None:
    """The active user with this username and password, else None (same answer for every failure)."""
    user = session.scalar(select(User).where(User.username == username.strip()))
    if user is None or not user.active or not user.password_hash:
        _hasher.hash("timing-equaliser")  # spend the same time whether or not the user exists
        return None
    if not verifies(user.password_hash, password):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def create_token(session: Session, *, username: str, clock: Clock, actor: Actor, label: str | None = None) -> str:
    """A new API token for the user; returned once, stored only as its SHA-256."""
    user = user_named(session, username)
    if not user.active:
        raise ActionRefused(f"用户已停用：{username}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(token_sha256=token_digest(token), user_id=user.id, label=label, created_at=clock.now()))
    session.flush()
    record(session, actor, AuditAction.TOKEN_CREATED, now=clock.now(), target=user.username, label=label)
    return token


def user_for_token(session: Session, token: str, *, now: datetime) -> User | None:
    """The active user owning this unrevoked token (and note when it was last used)."""
    digest = token_digest(token.strip())
    row = session.execute(
        select(ApiToken.id, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_sha256 == digest, ApiToken.revoked_at.is_(None), User.active.is_(True))
    ).first()
    if row is None:
        return None
    session.execute(update(ApiToken).where(ApiToken.id == row[0]).values(last_used_at=now))
    return row[1]


def active_user(session: Session, *, user_id: int | None = None, username: str | None = None) -> User | None:
    q = select(User).where(User.active.is_(True))
    q = q.where(User.id == user_id) if user_id is not None else q.where(User.username == (username or "").strip())
    return session.scalar(q)


def revoke_tokens(session: Session, *, username: str, now: datetime, actor: Actor) -> int:
    user = user_named(session, username)
    revoked = session.execute(
        update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None)).values(revoked_at=now)
    ).rowcount or 0
    record(session, actor, AuditAction.TOKENS_REVOKED, now=now, target=user.username, tokens=revoked)
    return revoked


@dataclass(frozen=True)
class UserRow:
    """A user as the account lists show it."""

    username: str
    display_name: str
    role: str
    scope: str | None  # the leader or unit the account answers for
    active: bool
    created_at: datetime
    sessions: int  # live-or-lapsed sessions still stored
    last_seen_at: datetime | None

    @property
    def role_name(self) -> str:
        return ROLE_NAMES.get(self.role, self.role)


def list_users(session: Session) -> list[UserRow]:
    """Every account, by username, with what it answers for and its stored sessions."""
    seen = (select(WebSession.user_id, func.count().label("n"), func.max(WebSession.last_seen_at).label("last"))
            .group_by(WebSession.user_id).subquery())
    rows = session.execute(
        select(User, Leader.name, Unit.name, seen.c.n, seen.c.last)
        .join(Leader, Leader.id == User.leader_id, isouter=True)
        .join(Unit, Unit.id == User.unit_id, isouter=True)
        .join(seen, seen.c.user_id == User.id, isouter=True)
        .order_by(User.username)
    ).all()
    return [UserRow(u.username, u.display_name, u.role, leader or unit, u.active, u.created_at, int(n or 0), last)
            for u, leader, unit, n, last in rows]
