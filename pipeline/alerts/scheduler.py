"""The scheduler: one process (guarded by a database lease) whose jobs plan work, never send.

Every tick, the instance holding the lease runs its jobs in turn: the nightly re-flag when the date
moves on, the digests whose time has come (catching up on any missed while it was down), any red
notice that is missing, the re-queue of lost ingest batches, and the hand-over of due outbox rows
to the senders. Each job runs in its own error boundary: one that fails is logged with its name and
the others still run, this tick and the next. A year without an official holiday calendar never
stops a job (working days are then assumed Monday to Friday); the scheduler warns of it instead.
A second instance finds the lease held and stands by; it takes over when the lease lapses.

While a tick's jobs run (planning a review may take minutes), a heartbeat thread renews the lease
every third of its length, so a standby never takes it from a holder that is merely busy; should
the lease be lost all the same (the database away longer than the lease), the tick stops before its
next job. The lease is timed by the database's clock (pipeline.alerts.lease).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TypeVar

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

from pipeline.alerts.channels.base import short
from pipeline.alerts.digest_runs import start_digest_run
from pipeline.alerts.holidays import missing_year_notice, relevant_years
from pipeline.alerts.lease import hold_lease
from pipeline.alerts.planning import DigestPlanning, plan_due_digests
from pipeline.db import session_scope
from pipeline.meta import evaluation_date, get_meta, set_meta
from pipeline.outage import DATABASE_DOWN
from pipeline.reflag import reserve_chunks
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)
LEASE_NAME = "scheduler"
SCHEDULING_SINCE = "scheduling_since"
# The jobs of a tick, by the names the log gives them.
REFLAG, DIGESTS, RED_NOTICES, SWEEP, HAND_OVER, CALENDAR_CHECK = (
    "夜间重评", "述职提醒", "补发红牌提醒", "补发批次", "交给发送", "节假日安排检查")
T = TypeVar("T")


@dataclass(frozen=True)
class TickReport:
    holder: bool
    digests: DigestPlanning = DigestPlanning()
    reflagged: bool = False
    failed: tuple[str, ...] = ()  # the jobs that raised this tick, by name
    assumed_years: tuple[int, ...] = ()  # years without an official calendar that this tick met


class ReviewScheduler:
    def __init__(self, runtime: Runtime, *, hand_over: Callable[[], None], tick_seconds: float = 30.0,
                 owner: str | None = None) -> None:
        self.runtime = runtime
        self.hand_over = hand_over  # queue (production) or run (embedded) the outbox senders
        self.tick_seconds = tick_seconds
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self._warned: tuple[tuple[int, ...], date] | None = None

    @property
    def lease_ttl(self) -> timedelta:
        return timedelta(seconds=self.runtime.settings.scheduler_lease_seconds)

    def hold(self) -> bool:
        """Take or renew the lease, in a transaction of its own."""
        with session_scope(self.runtime.session_factory) as session:
            return hold_lease(session, LEASE_NAME, owner=self.owner, ttl=self.lease_ttl)

    @contextmanager
    def heartbeat(self) -> Iterator[threading.Event]:
        """Renew the lease every third of its length while the block runs; the event yielded is set
        once the lease is lost to another instance."""
        stop, lost = threading.Event(), threading.Event()
        every = self.lease_ttl.total_seconds() / 3

        def beat() -> None:
            while not stop.wait(every):
                try:
                    if not self.hold():
                        log.warning("调度租约已被另一调度实例接管，本轮检查停止")
                        lost.set()
                        return
                except DATABASE_DOWN as error:  # the database away: keep trying while the jobs wait it out
                    log.warning("续租调度租约失败：数据库不可用（%s），稍后重试", short(str(error), 160))
                except Exception:
                    log.exception("续租调度租约出错，稍后重试")

        thread = threading.Thread(target=beat, name="scheduler-lease-heartbeat", daemon=True)
        thread.start()
        try:
            yield lost
        finally:
            stop.set()
            thread.join()

    def tick(self) -> TickReport:
        """One round of the jobs; a no-op for an instance that does not hold the lease."""
        from pipeline.tasks.dispatch import reflag_if_new_day, sweep_once

        rt = self.runtime
        if not self.hold():
            return TickReport(holder=False)
        failed: list[str] = []

        with self.heartbeat() as lost:
            def job(name: str, run: Callable[[], T], fallback: T) -> T:
                if lost.is_set():  # another instance holds the lease now: its jobs, not ours
                    return fallback
                try:
                    return run()
                except DATABASE_DOWN as error:  # an outage: one line per job and tick, no stack trace
                    log.warning("调度任务“%s”暂未完成：数据库不可用（%s），下一轮再试", name, short(str(error), 160))
                    failed.append(name)
                    return fallback
                except Exception:  # the job boundary: log it by name, let the other jobs run
                    log.exception("调度任务“%s”出错，其余任务照常进行", name)
                    failed.append(name)
                    return fallback

            reflagged = job(REFLAG, lambda: reflag_if_new_day(rt), False)
            digests = job(DIGESTS, self._plan_digests, DigestPlanning())
            job(RED_NOTICES, self._plan_missing_red_notices, 0)
            job(SWEEP, lambda: sweep_once(rt), [])
            job(HAND_OVER, self.hand_over, None)
            assumed = job(CALENDAR_CHECK, self._missing_calendars, [])
        return TickReport(True, digests, reflagged, tuple(failed), tuple(assumed))

    def _plan_digests(self) -> DigestPlanning:
        """Plan the digests that are due; at province and national scale (a broker, and a reserve of
        more than one chunk) hand each to the workers as chunk tasks instead."""
        from pipeline.tasks.dispatch import enqueue_digest_chunks

        rt = self.runtime
        runs: list[tuple[date, tuple[int, ...]]] = []
        with session_scope(rt.session_factory) as session:
            since = get_meta(session, SCHEDULING_SINCE)
            if since is None:
                since = rt.clock.now().isoformat()
                set_meta(session, SCHEDULING_SINCE, since)
            as_of, size = evaluation_date(session, rt.clock), rt.settings.reflag_chunk_size

            def start(review: date, send_at: datetime) -> None:
                runs.append((review, start_digest_run(session, review=review, current=as_of, send_at=send_at,
                                                      chunk_size=size, clock=rt.clock)))

            parallel = not rt.settings.is_embedded and len(reserve_chunks(session, size)) > 1
            digests = plan_due_digests(session, calendar=rt.review_calendar, as_of=as_of, ctx=rt.alert_context(),
                                       since=datetime.fromisoformat(since), start=start if parallel else None)
        for review, chunks in runs:  # once the runs are recorded
            enqueue_digest_chunks(rt, review, chunks)
            log.info("已将 %s 双月述职的提醒交给后台进程分 %d 块生成", review, len(chunks))
        for review in digests.planned:
            log.info("已生成 %s 双月述职的提醒", review)
        for review in digests.missed:
            log.warning("%s 双月述职的提醒已错过（发送时间调度进程未运行，述职已过）", review)
        return digests

    def _plan_missing_red_notices(self) -> int:
        # A red episode whose notice was never planned (a worker died between its commit and the
        # planning) gets it now.
        with session_scope(self.runtime.session_factory) as session:
            notices = self.runtime.plan_missing_red_notices(session)
        if notices:
            log.info("已补生成 %d 条红牌提醒", notices)
        return notices

    def _missing_calendars(self) -> list[int]:
        """The years this tick met (or that matter now) with no official calendar; warned of once a
        day per set of years, not on every tick."""
        rt = self.runtime
        today = rt.clock.now().astimezone(rt.review_calendar.tz).date()
        days = rt.working_calendar
        years = sorted(set(days.take_assumed_years()) | set(days.missing_years(relevant_years(today))))
        if years and self._warned != (tuple(years), today):
            for year in years:
                log.warning("%s（请在 config/holidays.yaml 中录入当年国务院办公厅节假日安排通知）",
                            missing_year_notice(year))
            self._warned = (tuple(years), today)
        return years

    def _add_jobs(self, scheduler: BaseScheduler) -> None:
        # APScheduler times the ticks on the real clock; the jobs read the injected one.
        scheduler.add_job(self._safe_tick, IntervalTrigger(seconds=self.tick_seconds), id="tick",
                          max_instances=1, coalesce=True, next_run_time=datetime.now(self.runtime.settings.tz))

    def _safe_tick(self) -> None:
        try:
            self.tick()
        except Exception:  # the lease itself could not be held (database down): try again next tick
            log.exception("调度检查失败（数据库不可用？），下次检查时重试")

    def run_forever(self) -> None:
        scheduler = BlockingScheduler(timezone=self.runtime.settings.tz)
        self._add_jobs(scheduler)
        scheduler.start()

    def start_background(self) -> BackgroundScheduler:
        scheduler = BackgroundScheduler(timezone=self.runtime.settings.tz)
        self._add_jobs(scheduler)
        scheduler.start()
        return scheduler
