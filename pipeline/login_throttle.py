"""Throttling failed sign-ins, per account and per client address, kept in the database.

Each failure counts against the account's key (the username as typed, lower-cased: unknown names
are throttled like real ones, so the answer never tells them apart) and the client address's key.
When a key reaches its limit it is locked for ``lock``; each further failure while it is locked
(or before it is forgotten) doubles the lock, up to ``max_lock``. A key is forgotten ``window``
after its last failure or the end of its lock, whichever is later; forgotten rows are deleted.

The counting is one INSERT ... ON CONFLICT DO UPDATE per key (SQLite and PostgreSQL): the row is
locked by that statement until the transaction ends, so two processes counting the same key
serialise, and the lock survives restarts because it lives in the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from math import ceil
from zoneinfo import ZoneInfo

from sqlalchemy import case, delete, select, tuple_, update
from sqlalchemy.orm import Session

from pipeline.clock import in_zone
from pipeline.db import dialect_insert
from pipeline.models import LoginThrottle
from pipeline.settings import Settings

ACCOUNT, ADDRESS = "account", "address"
MAX_DOUBLINGS = 30  # 2**30 times any lock is past any cap


@dataclass(frozen=True)
class ThrottlePolicy:
    max_failures_account: int = 5
    max_failures_address: int = 20
    lock: timedelta = timedelta(minutes=3)
    max_lock: timedelta = timedelta(hours=1)
    window: timedelta = timedelta(minutes=15)

    @classmethod
    def from_settings(cls, settings: Settings) -> ThrottlePolicy:
        return cls(
            max_failures_account=settings.login_max_failures,
            max_failures_address=settings.login_max_failures_per_address,
            lock=timedelta(seconds=settings.login_lock_seconds),
            max_lock=timedelta(seconds=settings.login_lock_max_seconds),
            window=timedelta(seconds=settings.login_window_seconds),
        )

    def lock_after(self, scope: str, failures: int) -> timedelta | None:
        """The lock earned by this many failures (None: not yet locked)."""
        over = failures - (self.max_failures_account if scope == ACCOUNT else self.max_failures_address)
        if over < 0:
            return None
        return min(self.max_lock, self.lock * (2 ** min(over, MAX_DOUBLINGS)))


@dataclass(frozen=True)
class ThrottleKey:
    scope: str  # account | address
    subject: str


def keys_for(username: str, address: str | None) -> list[ThrottleKey]:
    keys = [ThrottleKey(ACCOUNT, username.strip().lower()[:200])]
    if address:
        keys.append(ThrottleKey(ADDRESS, address[:200]))
    return keys


@dataclass(frozen=True)
class Lock:
    key: ThrottleKey
    until: datetime
    new: bool  # this failure started it (it was not locked before)

    def seconds_left(self, now: datetime) -> int:
        return max(1, ceil((self.until - now).total_seconds()))


def _pairs(keys: Sequence[ThrottleKey]) -> object:
    return tuple_(LoginThrottle.scope, LoginThrottle.subject).in_([(k.scope, k.subject) for k in keys])


def current_locks(session: Session, keys: Sequence[ThrottleKey], *, now: datetime, tz: ZoneInfo) -> list[Lock]:
    """The keys locked now, with when their lock ends."""
    rows = session.execute(
        select(LoginThrottle.scope, LoginThrottle.subject, LoginThrottle.locked_until)
        .where(_pairs(keys), LoginThrottle.locked_until > now)
    ).all()
    return [Lock(ThrottleKey(r.scope, r.subject), in_zone(r.locked_until, tz), False) for r in rows]


def record_failure(
    session: Session, keys: Sequence[ThrottleKey], *, now: datetime, policy: ThrottlePolicy, tz: ZoneInfo,
) -> list[Lock]:
    """Count one failure against each key; returns the keys locked after it."""
    t = LoginThrottle.__table__.c
    forgotten = t.forget_at <= now
    locks = []
    for key in keys:
        stmt = dialect_insert(session, LoginThrottle).values(
            scope=key.scope, subject=key.subject, failures=1, last_failure_at=now, locked_until=None,
            forget_at=now + policy.window,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["scope", "subject"],
            set_={
                "failures": case((forgotten, 1), else_=t.failures + 1),
                "locked_until": case((forgotten, None), else_=t.locked_until),
                "last_failure_at": now,
                "forget_at": now + policy.window,
            },
        ).returning(t.failures, t.locked_until)
        failures, locked_before = session.execute(stmt).one()
        lock = policy.lock_after(key.scope, failures)
        was_locked = locked_before is not None and in_zone(locked_before, tz) > now
        if lock is None:
            continue
        until = now + lock
        session.execute(update(LoginThrottle).where(_pairs([key])).values(
            locked_until=until, forget_at=until + policy.window))
        locks.append(Lock(key, until, not was_locked))
    return locks


def clear(session: Session, key: ThrottleKey) -> None:
    session.execute(delete(LoginThrottle).where(_pairs([key])))


def forget_old(session: Session, *, now: datetime) -> int:
    """Delete the rows whose window has passed (the table stays as small as the current attacks)."""
    return session.execute(delete(LoginThrottle).where(LoginThrottle.forget_at <= now)).rowcount or 0
