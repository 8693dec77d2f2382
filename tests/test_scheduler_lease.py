"""The scheduler's lease: timed by the database's clock, and renewed while a long tick runs."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from sqlalchemy import update

from pipeline.alerts.lease import hold_lease, server_now
from pipeline.alerts.planning import DigestPlanning
from pipeline.alerts.scheduler import HAND_OVER, ReviewScheduler
from pipeline.db import session_scope
from pipeline.models import SchedulerLease
from pipeline.runtime import Runtime, set_runtime
from tests.conftest import PINNED_NOW, make_runtime


@pytest.fixture(params=["sqlite", "postgres"])
def two_runtimes(request: pytest.FixtureRequest, tmp_path: Path):
    """Two processes' runtimes on one database, their clocks (PIPELINE_NOW) a day apart."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    else:
        url = request.getfixturevalue("pg_url")
    made = [make_runtime(tmp_path / name, database_url=url, now=PINNED_NOW + shift, scheduler_lease_seconds=2)
            for name, shift in (("a", timedelta(0)), ("b", timedelta(days=1)))]
    yield made
    for rt in made:
        rt.dispose()
    set_runtime(None)


def wait_until(check, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_one_lease_holder_at_a_time(any_runtime: Runtime) -> None:
    rt = any_runtime
    long, short = timedelta(seconds=60), timedelta(seconds=1)
    with session_scope(rt.session_factory) as s:
        assert hold_lease(s, "scheduler", owner="a", ttl=long)
    with session_scope(rt.session_factory) as s:
        assert not hold_lease(s, "scheduler", owner="b", ttl=long)
        assert hold_lease(s, "scheduler", owner="a", ttl=short)  # renewal, now for a second only

    def b_takes_it() -> bool:
        with session_scope(rt.session_factory) as s:
            return hold_lease(s, "scheduler", owner="b", ttl=long)

    wait_until(b_takes_it)  # lapsed on the database's clock: taken
    with session_scope(rt.session_factory) as s:
        assert not hold_lease(s, "scheduler", owner="a", ttl=long)


def test_a_lease_is_timed_by_the_database_clock_not_the_process_clock(two_runtimes: list[Runtime]) -> None:
    a, b = two_runtimes
    first = ReviewScheduler(a, hand_over=lambda: None, owner="a")
    later = ReviewScheduler(b, hand_over=lambda: None, owner="b")  # its clock a day ahead of a's
    assert first.tick().holder
    assert not later.tick().holder  # a's lease has not lapsed, whatever b's clock says
    assert first.tick().holder


def test_the_lease_is_renewed_while_a_tick_runs_longer_than_the_lease(two_runtimes: list[Runtime]) -> None:
    a, b = two_runtimes
    started, release = threading.Event(), threading.Event()

    def slow_hand_over() -> None:  # a job that outlasts the 2 s lease several times
        started.set()
        release.wait(60)

    busy = ReviewScheduler(a, hand_over=slow_hand_over, owner="busy")
    standby = ReviewScheduler(b, hand_over=lambda: None, owner="standby")
    reports = []
    runner = threading.Thread(target=lambda: reports.append(busy.tick()))
    runner.start()
    try:
        assert started.wait(120)
        deadline = time.monotonic() + 8  # four lease lengths: without renewal the standby takes it
        while time.monotonic() < deadline:
            assert not standby.tick().holder
            time.sleep(0.2)
    finally:
        release.set()
        runner.join(60)
    assert reports and reports[0].holder and HAND_OVER not in reports[0].failed


def test_a_tick_that_lost_its_lease_runs_no_further_job(two_runtimes: list[Runtime], caplog) -> None:
    a, b = two_runtimes
    ran: list[str] = []
    stuck = ReviewScheduler(a, hand_over=lambda: ran.append("hand over"), owner="stuck")

    def taken_over_meanwhile() -> DigestPlanning:  # another instance took the lease during this job
        with session_scope(b.session_factory) as s:
            s.execute(update(SchedulerLease).values(owner="other", expires_at=server_now(s, timedelta(seconds=3))))
        wait_until(lambda: any("接管" in r.getMessage() for r in caplog.records))
        ran.append("digests")
        return DigestPlanning()

    stuck._plan_digests = taken_over_meanwhile  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        report = stuck.tick()
    assert report.holder and ran == ["digests"]
