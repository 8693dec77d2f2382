"""A named lease in the database: one holder at a time; another instance stands by."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from pipeline.db import dialect_insert
from pipeline.models import SchedulerLease


def hold_lease(session: Session, name: str, *, owner: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew the lease ``name`` for ``owner`` until now + ttl; False if another holds it.

    One conditional UPDATE is the claim (it succeeds only for the holder or once the lease has
    lapsed); the first time, an INSERT that does nothing on conflict creates it.
    """
    taken = session.execute(
        update(SchedulerLease)
        .where(SchedulerLease.name == name, or_(SchedulerLease.owner == owner, SchedulerLease.expires_at < now))
        .values(owner=owner, expires_at=now + ttl)
    ).rowcount
    if taken:
        return True
    # RETURNING, not rowcount: an ORM-executed INSERT reports no row count on every driver.
    inserted = session.execute(
        dialect_insert(session, SchedulerLease)
        .values(name=name, owner=owner, expires_at=now + ttl)
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(SchedulerLease.name)
    ).scalar_one_or_none()
    return inserted is not None


def release_lease(session: Session, name: str, *, owner: str) -> None:
    session.execute(update(SchedulerLease).where(SchedulerLease.name == name, SchedulerLease.owner == owner)
                    .values(expires_at=datetime(1970, 1, 1).astimezone()))
