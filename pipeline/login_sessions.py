"""Server-side sign-in sessions of the web workspace.

A session is a row of ``web_sessions``; the browser's cookie carries a random id (32 bytes) of
which only the SHA-256 is stored. A session ends when its row is deleted: at logout, when the
user's password changes (the user's other sessions), when the account is disabled; and it lapses
after ``max_age`` from sign-in or ``idle`` without a request. Lapsed rows are deleted at sign-in.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.orm import Session

from pipeline.models import User, WebSession
from pipeline.settings import Settings

TOUCH_EVERY = timedelta(seconds=60)  # last_seen_at is written at most this often per session


@dataclass(frozen=True)
class SessionPolicy:
    max_age: timedelta = timedelta(hours=12)
    idle: timedelta = timedelta(hours=2)

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionPolicy:
        return cls(timedelta(seconds=settings.session_max_age), timedelta(seconds=settings.session_idle_seconds))


@dataclass(frozen=True)
class StartedSession:
    token: str  # for the cookie; never stored
    session_id: int


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start_session(
    session: Session, *, user_id: int, now: datetime, policy: SessionPolicy, client: str | None = None,
    user_agent: str | None = None,
) -> StartedSession:
    token = secrets.token_urlsafe(32)
    session_id = session.scalar(insert(WebSession).values(
        token_sha256=_digest(token), user_id=user_id, created_at=now, last_seen_at=now,
        expires_at=now + policy.max_age, client=(client or None) and client[:100],
        user_agent=(user_agent or None) and user_agent[:300],
    ).returning(WebSession.id))
    return StartedSession(token, int(session_id))


def _live(now: datetime, policy: SessionPolicy):  # type: ignore[no-untyped-def]
    return (WebSession.expires_at > now) & (WebSession.last_seen_at > now - policy.idle)


def session_user(session: Session, token: str, *, now: datetime, policy: SessionPolicy) -> tuple[User, int] | None:
    """The active user of this live session and the session's id (its last-seen time refreshed), else None."""
    row = session.execute(
        select(User, WebSession.id, WebSession.last_seen_at)
        .join(WebSession, WebSession.user_id == User.id)
        .where(WebSession.token_sha256 == _digest(token), User.active.is_(True), _live(now, policy))
    ).first()
    if row is None:
        return None
    user, session_id, _ = row
    session.execute(update(WebSession).where(WebSession.id == session_id, WebSession.last_seen_at < now - TOUCH_EVERY)
                    .values(last_seen_at=now))
    return user, int(session_id)


def end_session(session: Session, token: str) -> int | None:
    """End the session with this cookie id; returns its user's id (None: no such session)."""
    return session.scalar(delete(WebSession).where(WebSession.token_sha256 == _digest(token))
                          .returning(WebSession.user_id))


def end_sessions_of(session: Session, user_id: int, *, keep: int | None = None) -> int:
    """End every session of the user (but ``keep``, the one making the change); returns how many."""
    q = delete(WebSession).where(WebSession.user_id == user_id)
    if keep is not None:
        q = q.where(WebSession.id != keep)
    return session.execute(q).rowcount or 0


def forget_lapsed(session: Session, *, now: datetime, policy: SessionPolicy) -> int:
    return session.execute(delete(WebSession).where(
        or_(WebSession.expires_at <= now, WebSession.last_seen_at <= now - policy.idle))).rowcount or 0
