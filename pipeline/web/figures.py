"""Derived figures for the overview, the leader page and /api/rates: the domain's rates, cached.

The rates are computed by ``pipeline.rates_as_of.rates_by`` (as ``pipeline rates`` computes them):
every grouping of one (evaluation date, scope) from one chunked pass over the reserve. Results are
kept per (evaluation date, grouping, scope) together with the "applied version" they were computed
at (number of applied batches, latest applied time):
while no batch is applied, a request costs one small version query. After an import, /api/rates
recomputes at once (exact answers); the pages may instead show the previous figures, marked as
such, while one background thread recomputes them, so that no page waits seconds on a large
reserve (100,000 projects: ~4 s).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from pipeline.accounts import Principal
from pipeline.alerts.calendar import ReviewCalendar
from pipeline.db import session_scope
from pipeline.rates import GROUPINGS, GroupRates
from pipeline.rates_as_of import CHUNK, rates_by
from pipeline.reference import Reference
from pipeline.rules.metrics import time_progress
from pipeline.web.queries import applied_version
from pipeline.web.security import scope_filter, scope_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedRates:
    groups: list[GroupRates]
    version: tuple[Any, ...]
    stale: bool = False  # computed before the latest import; a fresh computation is under way


class RatesCache:
    """Rates per (date, grouping, scope) with the version they were computed at; thread-safe."""

    def __init__(self, session_factory: sessionmaker[Session], *, reference: Reference,
                 max_entries: int = 256, chunk_size: int = CHUNK) -> None:
        self._factory = session_factory
        self._reference = reference
        self._chunk = chunk_size
        self._lock = threading.Lock()
        self._entries: dict[tuple[Any, ...], CachedRates] = {}
        self._refreshing: set[tuple[Any, ...]] = set()
        self._max = max_entries

    def _compute(self, session: Session, *, as_of: date, by: str, principal: Principal,
                 version: tuple[Any, ...]) -> CachedRates:
        """Every grouping's rates for the principal's projects (one pass), kept; ``by``'s returned."""
        every = rates_by(session, as_of, GROUPINGS, order=self._reference.order_for, among=scope_filter(principal),
                         chunk_size=self._chunk)
        entries = {(as_of, grouping, scope_key(principal)): CachedRates(groups, version)
                   for grouping, groups in every.items()}
        with self._lock:
            if len(self._entries) + len(entries) > self._max:
                self._entries.clear()
            self._entries.update(entries)
        return entries[(as_of, by, scope_key(principal))]

    def rates(self, session: Session, *, as_of: date, by: str, principal: Principal,
              allow_stale: bool = False) -> CachedRates:
        version = applied_version(session)
        key = (as_of, by, scope_key(principal))
        with self._lock:
            found = self._entries.get(key)
        if found is not None and found.version == version:
            return found
        if found is not None and allow_stale:
            # one refresh per (date, scope): it computes every grouping
            self._refresh_later((as_of, scope_key(principal)), lambda s: self._compute(
                s, as_of=as_of, by=by, principal=principal, version=applied_version(s)))
            return CachedRates(found.groups, found.version, stale=True)
        return self._compute(session, as_of=as_of, by=by, principal=principal, version=version)

    def _refresh_later(self, key: tuple[Any, ...], work: Callable[[Session], object]) -> None:
        with self._lock:
            if key in self._refreshing:
                return
            self._refreshing.add(key)

        def run() -> None:
            try:
                with session_scope(self._factory) as session:
                    work(session)
            except Exception:  # noqa: BLE001  (a thread boundary: log it, the next request tries again)
                log.exception("recomputing the rates for %s failed", key)
            finally:
                with self._lock:
                    self._refreshing.discard(key)

        threading.Thread(target=run, name="rates-refresh", daemon=True).start()


@dataclass(frozen=True)
class ReviewInfo:
    date: date
    days_left: int
    digest_at: datetime


def upcoming_review(calendar: ReviewCalendar, today: date) -> ReviewInfo:
    """The next 双月述职 on or after today and the days left."""
    return upcoming_reviews(calendar, today, count=1)[0]


def upcoming_reviews(calendar: ReviewCalendar, today: date, *, count: int = 6) -> list[ReviewInfo]:
    out: list[ReviewInfo] = []
    after = date.fromordinal(today.toordinal() - 1)
    for _ in range(count):
        review = calendar.next_review(after)
        out.append(ReviewInfo(review, (review - today).days, calendar.digest_send_at(review)))
        after = review
    return out


def ratio_percent(numerator: Any, denominator: Any) -> float | None:
    if not denominator:
        return None
    return round(float(numerator) / float(denominator) * 100, 1)


def chart_data(groups: list[GroupRates], as_of: date) -> dict[str, Any]:
    """What the overview's charts draw: per group the three rates and investment against 序时进度."""
    return {
        "groups": [g.group for g in groups],
        "start_rate": [ratio_percent(g.start_rate.numerator, g.start_rate.denominator) for g in groups],
        "completion_rate": [ratio_percent(g.completion_rate.numerator, g.completion_rate.denominator) for g in groups],
        "stats_rate": [ratio_percent(g.stats_rate.numerator, g.stats_rate.denominator) for g in groups],
        "investment": [ratio_percent(g.investment.ytd_sum, g.investment.plan_sum) for g in groups],
        "time_progress": round(float(time_progress(as_of)) * 100, 1),
    }


def trend_chart_data(points: list[Any]) -> dict[str, Any]:
    """What a trend chart draws (``TrendPoint``s of one group, oldest first): the colour counts and
    the three rates and investment at each month end, in percent."""
    return {
        "months": [f"{p.month_end.year}年{p.month_end.month}月" for p in points],
        "red": [p.red for p in points], "yellow": [p.yellow for p in points], "green": [p.green for p in points],
        "start_rate": [ratio_percent(p.rates.start_rate.numerator, p.rates.start_rate.denominator) for p in points],
        "completion_rate": [ratio_percent(p.rates.completion_rate.numerator, p.rates.completion_rate.denominator)
                            for p in points],
        "stats_rate": [ratio_percent(p.rates.stats_rate.numerator, p.rates.stats_rate.denominator) for p in points],
        "investment": [ratio_percent(p.rates.investment.ytd_sum, p.rates.investment.plan_sum) for p in points],
    }
