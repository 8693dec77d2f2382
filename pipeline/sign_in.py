"""Signing in and out: the password check behind the throttle, the session it starts, the audit rows.

``sign_in`` refuses at once (without checking the password) while the account or the client
address is locked, and lengthens that lock; otherwise it checks the password, counts a failure
against both keys or, on success, clears the account's count and starts a session. The address's
count is not cleared by a success: otherwise a sprayer holding one valid account could reset it
between guesses at others'; it is forgotten after the window like any other.

``change_own_password`` asks for the current password behind the same throttle, so that a stolen
session cannot be used to guess it faster than the login form allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from math import ceil
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from pipeline.accounts import authenticate_password, set_password, verifies
from pipeline.audit import Actor, AuditAction, record
from pipeline.login_sessions import SessionPolicy, StartedSession, end_session, forget_lapsed, start_session
from pipeline.login_throttle import ACCOUNT, ThrottlePolicy, clear, current_locks, forget_old, keys_for, record_failure
from pipeline.models import User

SCOPE_NAMES = {ACCOUNT: "账号", "address": "来源地址"}


@dataclass(frozen=True)
class SignIn:
    user: User | None = None
    started: StartedSession | None = None
    locked_seconds: int = 0  # > 0: refused for now; try again after this

    @property
    def locked_message(self) -> str:
        return f"登录失败次数过多，请在{max(1, ceil(self.locked_seconds / 60))}分钟后再试"


def sign_in(
    session: Session, *, username: str, password: str, client: str | None, user_agent: str | None,
    now: datetime, tz: ZoneInfo, throttle: ThrottlePolicy, sessions: SessionPolicy,
) -> SignIn:
    """One attempt at the login form; the caller commits whatever the outcome (the count must stay)."""
    keys = keys_for(username, client)
    actor = Actor(username.strip()[:100] or "（空）", "web", client)
    forget_old(session, now=now)
    locked = current_locks(session, keys, now=now, tz=tz)
    if locked:  # a further failure while locked: lengthen the locks it ran into, and answer at once
        longer = record_failure(session, [lock.key for lock in locked], now=now, policy=throttle, tz=tz)
        return SignIn(locked_seconds=max(lock.seconds_left(now) for lock in longer or locked))
    user = authenticate_password(session, username, password)
    if user is None:
        locks = record_failure(session, keys, now=now, policy=throttle, tz=tz)
        record(session, actor, AuditAction.LOGIN_FAILED, now=now, target=username.strip()[:100] or None)
        for lock in locks:
            if lock.new:
                record(session, actor, AuditAction.LOGIN_LOCKED, now=now, target=lock.key.subject,
                       scope=SCOPE_NAMES.get(lock.key.scope, lock.key.scope), seconds=lock.seconds_left(now))
        return SignIn(locked_seconds=max((lock.seconds_left(now) for lock in locks), default=0))
    clear(session, keys[0])
    forget_lapsed(session, now=now, policy=sessions)
    started = start_session(session, user_id=user.id, now=now, policy=sessions, client=client, user_agent=user_agent)
    record(session, Actor(user.username, "web", client), AuditAction.LOGIN, now=now, target=user.username)
    return SignIn(user=user, started=started)


@dataclass(frozen=True)
class PasswordChange:
    ended: int = 0  # the user's other sessions ended by the change
    refused: str | None = None  # why not, in Chinese (the caller still commits: a failure was counted)


def change_own_password(
    session: Session, *, user_id: int, current: str, new: str, actor: Actor, now: datetime, tz: ZoneInfo,
    throttle: ThrottlePolicy, keep_session: int | None,
) -> PasswordChange:
    """A signed-in user changes their password: the current one must be right (a wrong one counts as a
    failed sign-in); the policy applies to the new one (PasswordRefused); their other sessions end."""
    user = session.get(User, user_id)
    if user is None or not user.active:
        return PasswordChange(refused="账号不存在或已停用")
    keys = keys_for(user.username, actor.client)
    locked = current_locks(session, keys, now=now, tz=tz)
    if locked:
        longer = record_failure(session, [lock.key for lock in locked], now=now, policy=throttle, tz=tz)
        return PasswordChange(refused=SignIn(locked_seconds=max(lock.seconds_left(now) for lock in longer)).locked_message)
    if not verifies(user.password_hash, current):
        locks = record_failure(session, keys, now=now, policy=throttle, tz=tz)
        record(session, actor, AuditAction.LOGIN_FAILED, now=now, target=user.username, context="修改密码")
        wait = max((lock.seconds_left(now) for lock in locks), default=0)
        return PasswordChange(refused="当前密码不正确" + (f"；{SignIn(locked_seconds=wait).locked_message}" if wait else ""))
    if new == current:
        return PasswordChange(refused="新密码不能与当前密码相同")
    ended = set_password(session, username=user.username, password=new, actor=actor, now=now,
                         keep_session=keep_session, own=True)
    return PasswordChange(ended=ended)


def sign_out(session: Session, token: str, *, actor: Actor, now: datetime) -> None:
    if end_session(session, token) is not None:
        record(session, actor, AuditAction.LOGOUT, now=now, target=actor.name)
