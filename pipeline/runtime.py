"""The per-process runtime: settings, engine, session factory, scheme, clock, reference data.

Built on first use by a factory, never at import; a worker process rebuilds it after fork so
that no connection is shared between processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from pipeline.alerts.calendar import ReviewCalendar, load_review_calendar
from pipeline.alerts.holidays import WorkingCalendar, load_working_calendar
from pipeline.alerts.planning import AlertContext, plan_missing_red_notices, plan_red_notices
from pipeline.alerts.recipients import RecipientsConfig, load_recipients
from pipeline.clock import Clock
from pipeline.db import make_engine, make_session_factory
from pipeline.ingest.apply import AppliedBatch
from pipeline.ingest.in_order import apply_through
from pipeline.reference import Reference, load_reference
from pipeline.reflag import ReflagOutcome, reflag
from pipeline.rules import Scheme, load_scheme
from pipeline.settings import Settings, load_settings


@dataclass
class Runtime:
    settings: Settings

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.effective_database_url)

    @cached_property
    def session_factory(self) -> sessionmaker[Session]:
        return make_session_factory(self.engine)

    @cached_property
    def scheme(self) -> Scheme:
        return load_scheme(self.settings.scheme, config_dir=self.settings.config_dir)

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

    def alert_context(self) -> AlertContext:
        return AlertContext(scheme=self.scheme, recipients=self.recipients, link_base=self.settings.public_url,
                            now=self.clock.now())

    def reflag(
        self, session: Session, project_ids: Sequence[int] | None = None, *, as_of: date | None = None,
        cause: str = "reflag", notify: bool = True,
    ) -> ReflagOutcome:
        """Re-flag projects (all when None) and, in the same transaction, plan the red notices."""
        outcome = reflag(session, scheme=self.scheme, clock=self.clock, project_ids=project_ids, as_of=as_of,
                         cause=cause)
        if notify and outcome.turned_red:
            plan_red_notices(session, outcome.turned_red, ctx=self.alert_context())
        return outcome

    def reflag_projects(self, session: Session, project_ids: Sequence[int]) -> ReflagOutcome:
        """Re-flag the projects an update touched (the hook ingest calls after applying)."""
        return self.reflag(session, project_ids, cause="update")

    def reflag_projects_quietly(self, session: Session, project_ids: Sequence[int]) -> ReflagOutcome:
        """The same, for a batch of a backlog that later batches supersede: no notices."""
        return self.reflag(session, project_ids, cause="update", notify=False)

    def plan_missing_red_notices(self, session: Session) -> int:
        return plan_missing_red_notices(session, ctx=self.alert_context())

    def apply_through(self, batch_id: int) -> list[AppliedBatch]:
        """Apply every waiting batch up to ``batch_id`` (the worker's and the embedded worker's job)."""
        return apply_through(self.session_factory, batch_id, clock=self.clock, reflag=self.reflag_projects,
                             catch_up=self.reflag_projects_quietly, settle=self.plan_missing_red_notices,
                             max_attempts=self.settings.task_max_attempts)

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
