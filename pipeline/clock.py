"""The clock, injected: nothing in the domain reads the time by itself.

``offset`` moves the wall clock (PIPELINE_NOW, for drills and demos: the clock starts at the given
instant and runs on in real time); ``pinned_date`` pins only the evaluation date (PIPELINE_AS_OF).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Clock:
    tz: ZoneInfo
    pinned_date: date | None = None
    offset: timedelta = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(self.tz) + self.offset

    def today(self) -> date:
        return self.pinned_date or self.now().date()


def in_zone(value: datetime, tz: ZoneInfo) -> datetime:
    """A stored time as an aware time in ``tz``: SQLite gives back the naive wall time it was written
    with (always the clock's zone), PostgreSQL an aware one."""
    return value.replace(tzinfo=tz) if value.tzinfo is None else value.astimezone(tz)
