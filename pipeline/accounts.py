"""Accounts of the web workspace: users (office, leader, unit), their passwords and API tokens.

Passwords are hashed with argon2id (argon2-cffi); a token is 32 random bytes shown once, and only
its SHA-256 is stored. The CLI (`pipeline user add`, `pipeline token create`) and the web call
these functions; nothing here knows of HTTP.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pipeline.clock import Clock
from pipeline.db import dialect_insert
from pipeline.errors import ActionRefused
from pipeline.models import ApiToken, Leader, Unit, User

ROLES = ("office", "leader", "unit")
ROLE_NAMES = {"office": "投资科", "leader": "包保领导", "unit": "责任单位"}
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

    @property
    def is_office(self) -> bool:
        return self.role == "office"

    @property
    def role_name(self) -> str:
        return ROLE_NAMES.get(self.role, self.role)


def principal_of(user: User, *, via: str) -> Principal:
    return Principal(user.id, user.username, user.display_name, user.role, user.leader_id, user.unit_id, via)


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
    session: Session, *, username: str, role: str, password: str | None, clock: Clock,
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
    if password is not None and len(password) < 8:
        raise ActionRefused("密码至少 8 位")
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
    return user


def set_password(session: Session, *, username: str, password: str) -> None:
    if len(password) < 8:
        raise ActionRefused("密码至少 8 位")
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise ActionRefused(f"用户不存在：{username}")
    user.password_hash = hash_password(password)


def authenticate_password(session: Session, username: str, password: str) -> User | None:
    """The active user with this username and password, else None (same answer for every failure)."""
    user = session.scalar(select(User).where(User.username == username.strip()))
    if user is None or not user.active or not user.password_hash:
        _hasher.hash("timing-equaliser")  # spend the same time whether or not the user exists
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def create_token(session: Session, *, username: str, clock: Clock, label: str | None = None) -> str:
    """A new API token for the user; returned once, stored only as its SHA-256."""
    user = session.scalar(select(User).where(User.username == username.strip()))
    if user is None:
        raise ActionRefused(f"用户不存在：{username}")
    if not user.active:
        raise ActionRefused(f"用户已停用：{username}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(token_sha256=token_digest(token), user_id=user.id, label=label, created_at=clock.now()))
    session.flush()
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


def revoke_tokens(session: Session, *, username: str, now: datetime) -> int:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise ActionRefused(f"用户不存在：{username}")
    return session.execute(
        update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None)).values(revoked_at=now)
    ).rowcount or 0
