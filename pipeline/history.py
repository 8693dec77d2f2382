"""A project's flag history month by month (SPEC §9): from its month flags, an entry at the first
month end it was judged and at every month end where its colour or its reasons change, each dated
with the month end it describes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.models import MonthFlag

MAX_MONTHS = 600  # fifty years of month ends: one project's whole history


@dataclass(frozen=True)
class MonthEntry:
    month_end: date
    color: str
    old_color: str | None  # the colour of the entry before (None for the first)
    reasons: list[dict[str, Any]]


def _reason_key(reasons: list[dict[str, Any]]) -> tuple[tuple[str, str], ...]:
    """What makes the reasons different: the rules that fire and their colours (the numbers in the
    messages move every month; a month where only they moved is no change)."""
    return tuple(sorted((str(r.get("code")), str(r.get("color"))) for r in reasons))


def month_history(session: Session, project_id: int) -> list[MonthEntry]:
    """The project's month-end entries, oldest first, one where the colour or the reasons change."""
    rows = session.execute(
        select(MonthFlag.month_end, MonthFlag.computed_color, MonthFlag.reasons)
        .where(MonthFlag.project_id == project_id).order_by(MonthFlag.month_end).limit(MAX_MONTHS)
    ).all()
    entries: list[MonthEntry] = []
    for month_end, color, reasons in rows:
        reasons = list(reasons or [])
        last = entries[-1] if entries else None
        if last is None or last.color != color or _reason_key(last.reasons) != _reason_key(reasons):
            entries.append(MonthEntry(month_end, color, last.color if last else None, reasons))
    return entries


__all__ = ["MonthEntry", "month_history"]
