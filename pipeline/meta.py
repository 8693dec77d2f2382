"""Installation facts kept in the database, and the date the reserve is evaluated as of."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.clock import Clock
from pipeline.models import SystemMeta

REFERENCE_DATE = "reference_date"
LAST_EVALUATED = "last_evaluated"


def get_meta(session: Session, key: str) -> str | None:
    return session.scalar(select(SystemMeta.value).where(SystemMeta.key == key))


def set_meta(session: Session, key: str, value: str) -> None:
    row = session.get(SystemMeta, key)
    if row is None:
        session.add(SystemMeta(key=key, value=value))
    else:
        row.value = value


def evaluation_date(session: Session, clock: Clock) -> date:
    """The date flags are evaluated as of: a pinned clock, else the reserve's reference date, else today.

    A reserve loaded for a past year (the demo's 2024) carries a reference date, so that its flags
    describe that year rather than how stale it looks today.
    """
    if clock.pinned_date is not None:
        return clock.pinned_date
    stored = get_meta(session, REFERENCE_DATE)
    return date.fromisoformat(stored) if stored else clock.today()
