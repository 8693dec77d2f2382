"""The scheduler: one process (guarded by a database lease) whose jobs plan work, never send.

Every tick, the instance holding the lease plans the digests whose time has come (catching up
on any missed while it was down), runs the nightly re-flag when the date moves on, plans any red
notice that is missing, re-queues lost ingest batches, and hands due outbox rows to the senders.
A second instance finds the lease held and stands by; it takes over when the lease lapses.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

from pipeline.alerts.lease import hold_lease
from pipeline.alerts.planning import DigestPlanning, plan_due_digests
from pipeline.db import session_scope
from pipeline.meta import evaluation_date, get_meta, set_meta
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)
LEASE_NAME = "scheduler"
SCHEDULING_SINCE = "scheduling_since"


@dataclass(frozen=True)
class TickReport:
    holder: bool
    digests: DigestPlanning = DigestPlanning()
    reflagged: bool = False


class ReviewScheduler:
    def __init__(self, runtime: Runtime, *, hand_over: Callable[[], None], tick_seconds: float = 30.0,
                 owner: str | None = None) -> None:
        self.runtime = runtime
        self.hand_over = hand_over  # queue (production) or run (embedded) the outbox senders
        self.tick_seconds = tick_seconds
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"

    def tick(self) -> TickReport:
        """One round of planning; a no-op for an instance that does not hold the lease."""
        from datetime import timedelta

        from pipeline.tasks.dispatch import reflag_if_new_day, sweep_once

        rt = self.runtime
        with session_scope(rt.session_factory) as session:
            if not hold_lease(session, LEASE_NAME, owner=self.owner, now=rt.clock.now(),
                              ttl=timedelta(seconds=rt.settings.scheduler_lease_seconds)):
                return TickReport(holder=False)
        reflagged = reflag_if_new_day(rt)
        with session_scope(rt.session_factory) as session:
            since = get_meta(session, SCHEDULING_SINCE)
            if since is None:
                since = rt.clock.now().isoformat()
                set_meta(session, SCHEDULING_SINCE, since)
            digests = plan_due_digests(session, calendar=rt.review_calendar,
                                       as_of=evaluation_date(session, rt.clock), ctx=rt.alert_context(),
                                       since=datetime.fromisoformat(since))
            # A red episode whose notice was never planned (a worker died between its commit and the
            # planning) gets it now.
            notices = rt.plan_missing_red_notices(session)
        if notices:
            log.info("planned %d red notices that were missing", notices)
        for review in digests.planned:
            log.info("planned the digests for the review of %s", review)
        for review in digests.missed:
            log.warning("the digests for the review of %s were missed (scheduler down at send time)", review)
        sweep_once(rt)
        self.hand_over()
        return TickReport(True, digests, reflagged)

    def _add_jobs(self, scheduler: BaseScheduler) -> None:
        scheduler.add_job(self._safe_tick, IntervalTrigger(seconds=self.tick_seconds), id="tick",
                          max_instances=1, coalesce=True, next_run_time=self.runtime.clock.now())

    def _safe_tick(self) -> None:
        try:
            self.tick()
        except Exception:  # the job boundary: log, keep the scheduler alive for the next tick
            log.exception("scheduler tick failed")

    def run_forever(self) -> None:
        scheduler = BlockingScheduler(timezone=self.runtime.settings.tz)
        self._add_jobs(scheduler)
        scheduler.start()

    def start_background(self) -> BackgroundScheduler:
        scheduler = BackgroundScheduler(timezone=self.runtime.settings.tz)
        self._add_jobs(scheduler)
        scheduler.start()
        return scheduler
