"""The per-process runtime: settings, engine, session factory, scheme, clock, reference data.

Built on first use by a factory, never at import; a worker process rebuilds it after fork so
that no connection is shared between processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from functools import cached_property

import polars as pl
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.alerts.calendar import ReviewCalendar, load_review_calendar
from pipeline.alerts.digest_runs import finish_digest_run, gather_chunk, render_part
from pipeline.alerts.holidays import WorkingCalendar, load_working_calendar
from pipeline.alerts.planning import AlertContext, plan_missing_red_notices, plan_red_notices
from pipeline.alerts.recipients import RecipientsConfig, load_recipients
from pipeline.clock import Clock
from pipeline.db import end_session, make_engine, make_read_session_factory, make_session_factory, session_scope
from pipeline.ingest.apply import AppliedBatch
from pipeline.ingest.delivery import apply_delivered
from pipeline.meta import evaluation_date
from pipeline.months import refresh_months
from pipeline.nightly import ChunkRead, finish_chunk, plan_run, read_chunk
from pipeline.notices import settled
from pipeline.reference import Reference, load_reference
from pipeline.reflag import ReflagOutcome, lock_ids, reflag_ids
from pipeline.rules import Scheme, load_scheme
from pipeline.rules.columnar import CompiledScheme, compile_scheme
from pipeline.settings import Settings, load_settings


CONFIGURATION = ("scheme", "compiled", "reference", "recipients", "working_calendar", "review_calendar")


@dataclass
class Runtime:
    settings: Settings

    def forked(self) -> Runtime:
        """The runtime of a process forked from this one: no engine or connection of ours, and the
        configuration this process has read (and checked at start-up), not read again."""
        child = Runtime(self.settings)
        child.__dict__.update({name: self.__dict__[name] for name in CONFIGURATION if name in self.__dict__})
        return child

    @cached_property
    def engine(self) -> Engine:
        s = self.settings
        return make_engine(s.effective_database_url, statement_timeout=s.db_statement_timeout,
                           lock_timeout=s.db_lock_timeout)

    @cached_property
    def session_factory(self) -> sessionmaker[Session]:
        return make_session_factory(self.engine)

    @cached_property
    def read_session_factory(self) -> sessionmaker[Session]:
        """Sessions that only read (on SQLite, without the write lock)."""
        return make_read_session_factory(self.engine)

    @cached_property
    def scheme(self) -> Scheme:
        return load_scheme(self.settings.scheme, config_dir=self.settings.config_dir)

    @cached_property
    def compiled(self) -> CompiledScheme:
        return compile_scheme(self.scheme)

    @cached_property
    def reference(self) -> Reference:
        return load_reference(self.settings.config_dir)

    @property
    def clock(self) -> Clock:
        return Clock(self.settings.tz, self.settings.as_of, self.settings.clock_offset)

    @cached_property
    def recipients(self) -> RecipientsConfig:
        return load_recipients(self.settings.config_dir / "recipients.yaml")

    @cached_property
    def working_calendar(self) -> WorkingCalendar:
        return load_working_calendar(self.settings.config_dir / "holidays.yaml")

    @cached_property
    def review_calendar(self) -> ReviewCalendar:
        return ReviewCalendar(load_review_calendar(self.settings.config_dir / "reviews.yaml"), self.working_calendar)

    def check_config(self) -> None:
        """Read every configuration file now: a fault (the scheme, the reference lists, reviews.yaml,
        holidays.yaml, recipients.yaml) stops a long-running process at start-up, naming the file,
        instead of failing its jobs one by one later."""
        _ = (self.scheme, self.reference, self.review_calendar, self.recipients)

    def alert_context(self) -> AlertContext:
        return AlertContext(scheme=self.scheme, recipients=self.recipients, link_base=self.settings.public_url,
                            now=self.clock.now(), county_order=self.reference.order_for("county"))

    # --- re-flagging ---------------------------------------------------------------------------

    def plan_notices(self, session: Session, project_ids: Sequence[int]) -> int:
        """Plan the red notices of projects that turned red, except those a later report already
        waiting will re-judge (a backlog's passing states are not news)."""
        ready = settled(session, project_ids)
        return plan_red_notices(session, ready, ctx=self.alert_context()) if ready else 0

    def reflag_projects(self, session: Session, project_ids: Sequence[int], *, cause: str = "update",
                        as_of: date | None = None) -> ReflagOutcome:
        """Re-flag some projects in the caller's transaction and plan their red notices."""
        d = as_of or evaluation_date(session, self.clock)
        outcome = reflag_ids(session, project_ids, as_of=d, scheme=self.scheme, clock=self.clock, cause=cause,
                             compiled=self.compiled)
        if outcome.turned_red:
            self.plan_notices(session, outcome.turned_red)
        return outcome

    def after_apply(self, session: Session, touched: pl.DataFrame, *, notify: bool = True) -> ReflagOutcome:
        """The hook ingest calls after merging a batch: re-judge the month ends its reports changed,
        then the touched projects' current flags (and plan the red notices, unless ``notify`` is off)."""
        d = evaluation_date(session, self.clock)
        lock_ids(session, touched["project_id"])
        refresh_months(session, touched, as_of=d, scheme=self.scheme, compiled=self.compiled)
        outcome = reflag_ids(session, touched["project_id"], as_of=d, scheme=self.scheme, clock=self.clock,
                             cause="update", compiled=self.compiled)
        if notify and outcome.turned_red:
            self.plan_notices(session, outcome.turned_red)
        return outcome

    def reflag_reserve(self, *, as_of: date | None = None, cause: str = "reflag") -> ReflagOutcome:
        """The whole-reserve run, in this process: close the month ends it looks back on, re-flag
        every chunk (each its own transaction, with the red notices of the projects it turned red);
        on PostgreSQL each chunk is read while the one before it is written."""
        with session_scope(self.session_factory) as session:
            d = as_of or evaluation_date(session, self.clock)
            plan = plan_run(session, as_of=d, scheme=self.scheme, cause=cause, clock=self.clock,
                            chunk_size=self.settings.reflag_chunk_size)
        outcome = ReflagOutcome(d)
        if self.engine.dialect.name != "postgresql" or len(plan.chunks) < 2:
            for chunk in plan.chunks:
                done = self.run_reflag_chunk(plan.run_id, chunk)
                if done is not None:
                    outcome += done
            return outcome
        # On PostgreSQL each chunk after the first is read (under its lock, in a transaction of its
        # own) on a second thread while the chunk before it is evaluated and written: the server
        # sends the next rows while this process judges the last ones.
        with ThreadPoolExecutor(1, thread_name_prefix="reflag-read") as reader:
            ahead: Future[tuple[Session, ChunkRead | None]] | None = reader.submit(
                self._read_chunk, plan.run_id, plan.chunks[0])
            try:
                for following in [*plan.chunks[1:], None]:
                    assert ahead is not None
                    session, read = ahead.result()
                    ahead = None if following is None else reader.submit(self._read_chunk, plan.run_id, following)
                    done = self._finish_chunk(session, read)
                    if done is not None:
                        outcome += done
            except BaseException:
                if ahead is not None and ahead.exception() is None:  # a chunk read ahead, not to be written
                    end_session(ahead.result()[0], commit=False)
                raise
        return outcome

    def _read_chunk(self, run_id: int, chunk: int) -> tuple[Session, ChunkRead | None]:
        """A chunk read in a transaction of its own, left open for ``_finish_chunk``."""
        session = self.session_factory()
        try:
            return session, read_chunk(session, run_id, chunk, scheme=self.scheme, compiled=self.compiled)
        except BaseException:
            end_session(session, commit=False)
            raise

    def _finish_chunk(self, session: Session, read: ChunkRead | None) -> ReflagOutcome | None:
        """A chunk read by ``_read_chunk`` evaluated, written and committed (with its red notices)."""
        try:
            outcome = None if read is None else finish_chunk(
                session, read, scheme=self.scheme, compiled=self.compiled, clock=self.clock,
                notify=lambda ids: self.plan_notices(session, ids))[0]
        except BaseException:
            end_session(session, commit=False)
            raise
        end_session(session, commit=True)
        return outcome

    def run_reflag_chunk(self, run_id: int, chunk: int) -> ReflagOutcome | None:
        """One chunk of a whole-reserve run (a worker's task, or the in-process loop), with the red
        notices of the projects it turned red, in the same transaction."""
        return self._finish_chunk(*self._read_chunk(run_id, chunk))

    def run_digest_chunk(self, review: date, chunk: int) -> tuple[int, ...]:
        """One chunk of a review's digests (a worker's task); the chunk that completes the set
        divides the rendering. Returns the parts to render (queued by the caller), or () when this
        chunk did not complete the set."""
        try:
            with session_scope(self.session_factory) as session:
                complete = gather_chunk(session, review, chunk, calendar=self.review_calendar, scheme=self.scheme,
                                        compiled=self.compiled)
        except IntegrityError:  # the same chunk stored by another delivery meanwhile
            return ()
        return self.finish_digest_run(review) if complete else ()

    def finish_digest_run(self, review: date) -> tuple[int, ...]:
        """Divide a gathered run's rendering (once); the parts to render, () when divided before."""
        with session_scope(self.session_factory) as session:
            return finish_digest_run(session, review, calendar=self.review_calendar, ctx=self.alert_context()) or ()

    def render_digest_part(self, review: date, part: int) -> int | None:
        """One part of a review's rendering (a worker's task): its new messages, None when the part
        was rendered before (or by another delivery meanwhile)."""
        try:
            with session_scope(self.session_factory) as session:
                return render_part(session, review, part, calendar=self.review_calendar, ctx=self.alert_context())
        except IntegrityError:
            return None

    def plan_missing_red_notices(self, session: Session, *, among: Sequence[int] | None = None) -> int:
        return plan_missing_red_notices(session, ctx=self.alert_context(), among=among)

    def apply_delivered(self, batch_id: int) -> AppliedBatch | None:
        """Apply one delivered batch (the worker's and the embedded worker's job), then plan the red
        notices an earlier batch or run left for its projects (deferred while this batch's reports
        waited). Only the batch's projects are looked at: the scheduler's tick catches up on the
        rest (a process that died between a commit and its planning)."""
        result = apply_delivered(self.engine, batch_id, clock=self.clock, max_attempts=self.settings.task_max_attempts,
                                 touched=self.after_apply)
        if result is not None and not result.already_done and result.touched_project_ids:
            with session_scope(self.session_factory) as session:
                self.plan_missing_red_notices(session, among=result.touched_project_ids)
        return result

    def dispose(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()


_current: Runtime | None = None


def get_runtime() -> Runtime:
    global _current
    if _current is None:
        _current = Runtime(load_settings())
    return _current


def set_runtime(runtime: Runtime | None) -> None:
    """Install a runtime (tests, CLI start-up) or forget it (after fork)."""
    global _current
    _current = runtime
