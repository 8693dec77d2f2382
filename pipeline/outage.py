"""Outliving a database outage: a unit of work is tried again until the database takes it.

Long-running processes (the sweeper, the scheduler, the senders, the workers at start-up) use
this instead of ending on the first refused connection: a restarting PostgreSQL ("the database
system is starting up"), a dropped connection or a busy SQLite are logged and waited out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity
from sqlalchemy.exc import InterfaceError, OperationalError

from pipeline.alerts.channels.base import short

log = logging.getLogger(__name__)
T = TypeVar("T")
# The database unreachable, a connection dropped under us, SQLite busy: wait and try again.
DATABASE_DOWN = (OperationalError, InterfaceError)


@dataclass
class DatabaseWait:
    """Runs a unit of work until the database takes it: a dropped or refused connection is logged,
    waited out (exponential, at most ``longest`` seconds) and tried again. With ``stop`` set, the
    wait ends and the last error is raised."""

    first: float = 0.5
    longest: float = 30.0
    stop: threading.Event | None = None

    def run(self, what: str, work: Callable[[], T]) -> T:
        stopping = self.stop
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(DATABASE_DOWN),
            wait=tenacity.wait_exponential(multiplier=self.first, max=self.longest),
            stop=tenacity.stop_never if stopping is None else (lambda _: stopping.is_set()),
            sleep=time.sleep if stopping is None else stopping.wait,
            before_sleep=lambda state: log.warning(
                "%s时数据库不可用（%s），%.1f 秒后重试", what,
                short(str(state.outcome.exception()) if state.outcome else "", 160),
                state.next_action.sleep if state.next_action else 0.0,
            ),
            reraise=True,
        )
        return retrying(work)
