"""Red notices: once per red episode, for what is red after a backlog (not its passing states),
and never lost when a process dies between a flag's commit and the planning of its notice."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from pipeline.alerts.scheduler import ReviewScheduler
from pipeline.db import session_scope
from pipeline.models import Leader, OutboxMessage, Project
from pipeline.overrides import acknowledge
from pipeline.runtime import Runtime
from pipeline.tasks.dispatch import apply_inline
from tests.factories import ACTOR, code, row
from tests.test_ingest_db import record

LEADER, ADDRESS = "王建国", "wangjianguo@jingzhou.gov.cn"


def late(n: int, as_of: date):
    """Was to start on 2024-03-01 and has not: red from April on."""
    return row(n, nature="新开工", planned_start=date(2024, 3, 1), actual_start=None, stats_included_on=None,
               cumulative_completed=0, ytd_completed=0, as_of=as_of, leader=LEADER)


def started(n: int, as_of: date):
    return row(n, nature="新开工", planned_start=date(2024, 3, 1), actual_start=date(2024, 4, 20),
               stats_included_on=date(2024, 5, 10), ytd_completed=12000, as_of=as_of, leader=LEADER)


def notified(rt: Runtime) -> list[str]:
    with session_scope(rt.session_factory) as s:
        return sorted(s.scalars(
            select(Project.code).join(OutboxMessage, OutboxMessage.project_id == Project.id)
            .where(OutboxMessage.kind == "red_notice", OutboxMessage.recipient == ADDRESS)
        ))


def with_leader(rt: Runtime) -> Runtime:
    with session_scope(rt.session_factory) as s:
        s.add(Leader(name=LEADER, email=ADDRESS))
    return rt


def test_a_backlog_notifies_what_is_red_at_its_end_not_its_passing_states(any_runtime: Runtime) -> None:
    rt = with_leader(any_runtime)
    november = record(rt, [late(1, date(2024, 11, 30)), late(2, date(2024, 11, 30))])
    december = record(rt, [started(1, date(2024, 12, 31)), late(2, date(2024, 12, 31))])
    apply_inline(rt, [november, december])  # both months in one run: project 1 was red in November only
    assert notified(rt) == [code(2)]
    assert november < december
    # A month applied on its own notifies at once.
    again = record(rt, [late(3, date(2024, 12, 31))])
    rt.apply_delivered(again)
    assert notified(rt) == [code(2), code(3)]
    rt.apply_delivered(again)  # delivered again: nothing new
    assert notified(rt) == [code(2), code(3)]


def test_a_notice_lost_between_commit_and_planning_is_planned_by_the_scheduler(any_runtime: Runtime) -> None:
    rt = with_leader(any_runtime)
    batch = record(rt, [late(1, date(2024, 11, 30)), late(2, date(2024, 11, 30))])
    from pipeline.ingest.apply import apply_batch

    with session_scope(rt.session_factory) as s:  # the flags commit, the process dies before planning
        apply_batch(s, batch, clock=rt.clock, touched=lambda session, t: rt.after_apply(session, t, notify=False))
    assert notified(rt) == []
    with session_scope(rt.session_factory) as s:  # project 2's red was seen and acknowledged meanwhile
        acknowledge(s, code=code(2), note="已协调，下月开工", by="投资科", clock=rt.clock, actor=ACTOR)
    scheduler = ReviewScheduler(rt, hand_over=lambda: None, owner="only")
    scheduler.tick()
    scheduler.tick()
    assert notified(rt) == [code(1)]


def test_an_episode_acknowledged_before_its_notice_is_planned_gets_none(any_runtime: Runtime) -> None:
    """Planning the notices of given projects (a re-flag's turned-red ones) skips an episode the
    office has acknowledged: its leader has been dealt with."""
    rt = with_leader(any_runtime)
    batch = record(rt, [late(1, date(2024, 11, 30)), late(2, date(2024, 11, 30))])
    from pipeline.ingest.apply import apply_batch

    with session_scope(rt.session_factory) as s:
        apply_batch(s, batch, clock=rt.clock, touched=lambda session, t: rt.after_apply(session, t, notify=False))
    with session_scope(rt.session_factory) as s:
        acknowledge(s, code=code(2), note="已协调，下月开工", by="投资科", clock=rt.clock, actor=ACTOR)
    with session_scope(rt.session_factory) as s:
        ids = s.scalars(select(Project.id).where(Project.code.in_([code(1), code(2)]))).all()
        assert rt.plan_notices(s, ids) == 1
    assert notified(rt) == [code(1)]


def test_a_backlog_queued_batch_by_batch_notifies_once_its_newer_reports_are_in(any_runtime: Runtime) -> None:
    """Each batch's own task arrives in order: the earlier one re-flags without notices while a
    newer report of the same projects waits; the last applies, then the notices go for what is red."""
    rt = with_leader(any_runtime)
    november = record(rt, [late(1, date(2024, 11, 30)), late(2, date(2024, 11, 30))])
    december = record(rt, [started(1, date(2024, 12, 31)), late(2, date(2024, 12, 31))])
    scheduler = ReviewScheduler(rt, hand_over=lambda: None, owner="only")
    rt.apply_delivered(november)
    scheduler.tick()  # December still waits: no notice for November's passing state
    assert notified(rt) == []
    rt.apply_delivered(december)
    assert notified(rt) == [code(2)]


def test_applying_a_batch_plans_the_missing_notices_of_its_own_projects_the_tick_the_rest(
        any_runtime: Runtime) -> None:
    """A batch's apply looks only at its own projects for notices left to plan (a reserve of
    thousands of red projects is not re-read once per batch); the scheduler's tick catches up on
    the others (a notice lost between a commit and its planning)."""
    rt = with_leader(any_runtime)
    lost = record(rt, [late(1, date(2024, 11, 30))])
    from pipeline.ingest.apply import apply_batch

    with session_scope(rt.session_factory) as s:  # project 1's flag commits, its planning is lost
        apply_batch(s, lost, clock=rt.clock, touched=lambda session, t: rt.after_apply(session, t, notify=False))
    rt.apply_delivered(record(rt, [late(2, date(2024, 11, 30))]))
    assert notified(rt) == [code(2)]
    ReviewScheduler(rt, hand_over=lambda: None, owner="only").tick()
    assert notified(rt) == [code(1), code(2)]
