"""The clock, injected: nothing in the domain reads the time by itself."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Clock:
    tz: ZoneInfo
    pinned_date: date | None = None

    def now(self) -> datetime:
        return datetime.now(self.tz)

    def today(self) -> date:
        return self.pinned_date or self.now().date()
