"""A named lease in the database: one holder at a time; another instance stands by.

The lease is timed by the database's clock (``now()`` on PostgreSQL; the machine's clock in SQL on
SQLite, which has no server), never by the process's: two schedulers whose clocks disagree (one
moved by PIPELINE_NOW, a host whose clock drifted) still agree on when a lease lapses.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, update
from sqlalchemy.orm import Session

from pipeline.db import dialect_insert
from pipeline.models import SchedulerLease


def server_now(session: Session, plus: timedelta = timedelta(0)) -> Any:
    """The database's current instant (plus ``plus``) as an SQL expression of the lease's column type."""
    if session.get_bind().dialect.name == "postgresql":
        return func.now() + plus if plus else func.now()
    # SQLite: the format SQLAlchemy stores DateTime values in (microseconds from the millisecond '%f').
    return func.strftime("%Y-%m-%d %H:%M:%f000", "now", f"{plus.total_seconds():+.3f} seconds")


def hold_lease(session: Session, name: str, *, owner: str, ttl: timedelta) -> bool:
    """Take or renew the lease ``name`` for ``owner`` until the database's now + ttl; False if
    another holds it.

    One conditional UPDATE is the claim (it succeeds only for the holder or once the lease has
    lapsed); the first time, an INSERT that does nothing on conflict creates it. An expiry further
    ahead than any holder could have set (a clock that jumped back, a row written by a version
    that timed leases by the process's clock) counts as lapsed.
    """
    now, until = server_now(session), server_now(session, ttl)
    taken = session.execute(
        update(SchedulerLease)
        .where(SchedulerLease.name == name,
               or_(SchedulerLease.owner == owner, SchedulerLease.expires_at < now,
                   SchedulerLease.expires_at > server_now(session, 2 * ttl)))
        .values(owner=owner, expires_at=until)
    ).rowcount
    if taken:
        return True
    # RETURNING, not rowcount: an ORM-executed INSERT reports no row count on every driver.
    inserted = session.execute(
        dialect_insert(session, SchedulerLease)
        .values(name=name, owner=owner, expires_at=until)
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(SchedulerLease.name)
    ).scalar_one_or_none()
    return inserted is not None


def release_lease(session: Session, name: str, *, owner: str) -> None:
    session.execute(update(SchedulerLease).where(SchedulerLease.name == name, SchedulerLease.owner == owner)
                    .values(expires_at=datetime(1970, 1, 1).astimezone()))
