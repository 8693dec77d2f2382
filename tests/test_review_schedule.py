"""A year of 双月述职 under time travel: six reviews in 2024, each leader's digest sent once, on the
fifth working day before the review (China's calendar, 调休 included), at 09:00 Asia/Shanghai."""

from __future__ import annotations

import email
import logging
from datetime import date, datetime, time, timedelta
from email import policy
from pathlib import Path
from zoneinfo import ZoneInfo

import time_machine
from sqlalchemy import select

from pipeline.alerts.channels import DeliveryError
from pipeline.alerts.holidays import WorkingCalendar
from pipeline.alerts.outbox import PlannedMessage, RetryPolicy, claim_next, enqueue, mark_attempt_failed
from pipeline.alerts.planning import DigestPlanning
from pipeline.alerts.scheduler import DIGESTS, ReviewScheduler
from pipeline.db import session_scope
from pipeline.models import ImportBatch, Leader, OutboxMessage, ReviewRun
from pipeline.runtime import Runtime
from pipeline.tasks.dispatch import deliver_now
from tests.conftest import make_runtime
from tests.factories import row
from tests.test_ingest_db import apply, record

SH = ZoneInfo("Asia/Shanghai")
REVIEWS_2024 = [date(2024, 2, 29), date(2024, 4, 30), date(2024, 6, 28), date(2024, 8, 30), date(2024, 10, 31),
                date(2024, 12, 31)]
# The fifth working day before each: Apr 24 counts the 调休 Sunday Apr 28 as a working day.
SEND_DAYS = [date(2024, 2, 22), date(2024, 4, 24), date(2024, 6, 21), date(2024, 8, 23), date(2024, 10, 24),
             date(2024, 12, 24)]
LEADERS = {"王建国": "wangjianguo@jingzhou.gov.cn", "李明": "liming@jingzhou.gov.cn", "赵红": "zhaohong@jingzhou.gov.cn"}


def test_a_year_of_reviews(tmp_path: Path) -> None:
    with time_machine.travel(datetime(2024, 1, 1, 8, 0, tzinfo=SH), tick=False):
        rt = make_runtime(tmp_path, now=None)  # the clock travels
        with session_scope(rt.session_factory) as s:
            for name, addr in LEADERS.items():
                s.add(Leader(name=name, email=addr))
        rows = [row(n, leader=name, as_of=date(2023, 12, 31), ytd_completed=12000)
                for n, name in enumerate(LEADERS, start=1)]
        apply(rt, record(rt, rows))
    scheduler = ReviewScheduler(rt, hand_over=lambda: deliver_now(rt), owner="only")
    planned_on: dict[date, datetime] = {}
    day = date(2024, 1, 1)
    while day <= date(2024, 12, 31):
        for moment in (time(8, 59, 30), time(9, 0, 30)):
            now = datetime.combine(day, moment, tzinfo=SH)
            with time_machine.travel(now, tick=False):
                report = scheduler.tick()
            assert report.holder
            for review in report.digests.planned:
                planned_on[review] = now
            assert not report.digests.missed
        day += timedelta(days=1)

    assert sorted(planned_on) == REVIEWS_2024
    for review, send_day in zip(REVIEWS_2024, SEND_DAYS, strict=True):
        assert planned_on[review] == datetime.combine(send_day, time(9, 0, 30), tzinfo=SH), review
    with session_scope(rt.session_factory) as s:
        runs = s.scalars(select(ReviewRun).order_by(ReviewRun.review_date)).all()
        assert [(r.review_date, r.status) for r in runs] == [(d, "planned") for d in REVIEWS_2024]
        digests = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "leader_digest")).all()
        assert len(digests) == 6 * len(LEADERS)
        assert {(m.review_date, m.recipient) for m in digests} == {
            (d, addr) for d in REVIEWS_2024 for addr in LEADERS.values()}
        assert all(m.status == "sent" and m.attempts == 1 for m in digests)
        for m in digests:
            sent = m.sent_at if m.sent_at.tzinfo else m.sent_at.replace(tzinfo=SH)
            assert sent.astimezone(SH).date() == SEND_DAYS[REVIEWS_2024.index(m.review_date)]
            assert sent.astimezone(SH).time() == time(9, 0, 30)
        office = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "office_digest")).all()
        assert len(office) == 6
        sent = s.scalars(select(OutboxMessage).where(OutboxMessage.status == "sent")).all()
    # With no SMTP configured, every message is an .eml file (one per outbox row) that parses.
    files = sorted((rt.settings.outbox_dir).glob("*.eml"))
    assert len(files) == len(sent)
    subjects = [email.message_from_bytes(f.read_bytes(), policy=policy.default)["Subject"] for f in files]
    assert sum("述职" in subject for subject in subjects) == 6 * (len(LEADERS) + 1)
    rt.dispose()


def test_a_digest_missed_while_down_goes_once_if_its_review_is_ahead(tmp_path: Path) -> None:
    with time_machine.travel(datetime(2024, 6, 1, 8, 0, tzinfo=SH), tick=False):
        rt = make_runtime(tmp_path, now=None)  # the clock travels
        with session_scope(rt.session_factory) as s:
            s.add(Leader(name="王建国", email="wangjianguo@jingzhou.gov.cn"))
        apply(rt, record(rt, [row(1, leader="王建国", as_of=date(2024, 5, 31))]))
    scheduler = ReviewScheduler(rt, hand_over=lambda: deliver_now(rt), owner="only")
    with time_machine.travel(datetime(2024, 6, 1, 8, 0, tzinfo=SH), tick=False):
        assert scheduler.tick().digests == DigestPlanning()  # up on 06-01: April's digest was never ours
    # Down from before 06-21 09:00 until 06-25: the June digest still goes (review on 06-28) ...
    with time_machine.travel(datetime(2024, 6, 25, 14, 0, tzinfo=SH), tick=False):
        first = scheduler.tick()
        again = scheduler.tick()
    assert first.digests.planned == (date(2024, 6, 28),) and again.digests.planned == ()
    # ... but the August digest, down until after its review, is recorded as missed, not sent late.
    with time_machine.travel(datetime(2024, 9, 2, 10, 0, tzinfo=SH), tick=False):
        late = scheduler.tick()
    assert late.digests.missed == (date(2024, 8, 30),) and late.digests.planned == ()
    with session_scope(rt.session_factory) as s:
        statuses = dict(s.execute(select(ReviewRun.review_date, ReviewRun.status)).tuples().all())
        sent = s.scalars(select(OutboxMessage.review_date).where(OutboxMessage.kind == "leader_digest")).all()
    assert statuses == {date(2024, 6, 28): "planned", date(2024, 8, 30): "missed"}
    assert sent == [date(2024, 6, 28)]
    rt.dispose()


# --- a year the holiday package does not cover (SPEC §6: scheduling never stops for it) -----------

UP_TO_2026 = range(2004, 2027)  # chinese-calendar 1.11's years, whatever version is installed
NOTICE_2027 = "2027年法定节假日安排尚未配置，工作日暂按周一至周五计算"


def runtime_in_2027(tmp_path: Path, at: datetime) -> Runtime:
    """A runtime whose holiday package ends with 2026, a leader with a project, at ``at``."""
    with time_machine.travel(at, tick=False):
        rt = make_runtime(tmp_path, now=None)  # the clock travels
        rt.working_calendar = WorkingCalendar(package_years=UP_TO_2026)
        with session_scope(rt.session_factory) as s:
            s.add(Leader(name="王建国", email="wangjianguo@jingzhou.gov.cn"))
        apply(rt, record(rt, [row(1, leader="王建国", as_of=date(2026, 12, 31))]))
    return rt


def a_retry_due(rt: Runtime, at: datetime) -> int:
    """A message whose first try failed at ``at``; its retry is due 30 seconds later."""
    with time_machine.travel(at, tick=False), session_scope(rt.session_factory) as s:
        [mid] = enqueue(s, [PlannedMessage(key="red_notice:1:email:x", kind="red_notice", channel="email",
                                           recipient="x@jingzhou.gov.cn", subject="红牌提醒", body_text="正文")],
                        now=rt.clock.now())
        claimed = claim_next(s, owner="sender", now=rt.clock.now(), lease=timedelta(minutes=2))
        retry = RetryPolicy(window=timedelta(hours=24), first=timedelta(seconds=30), longest=timedelta(hours=1),
                            jitter=lambda: 1.0)
        mark_attempt_failed(s, mid, owner=claimed.owner, error=DeliveryError("邮件服务器无法连接", retryable=True),
                            now=rt.clock.now(), retry=retry)
    return mid


def test_a_tick_past_the_package_data_still_sweeps_sends_and_warns(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="pipeline")
    rt = runtime_in_2027(tmp_path, datetime(2027, 1, 5, 8, 0, tzinfo=SH))
    retry = a_retry_due(rt, datetime(2027, 1, 5, 8, 0, tzinfo=SH))
    lost = record(rt, [row(2, leader="王建国", as_of=date(2026, 12, 31))])  # recorded, never queued
    scheduler = ReviewScheduler(rt, hand_over=lambda: deliver_now(rt), owner="only")
    with time_machine.travel(datetime(2027, 1, 5, 9, 0, tzinfo=SH), tick=False):
        report = scheduler.tick()
        again = scheduler.tick()
    assert report.holder and report.failed == () and report.reflagged
    assert report.assumed_years == (2027,)
    with session_scope(rt.session_factory) as s:
        assert s.get(OutboxMessage, retry).status == "sent"  # the due retry went out
        assert s.get(ImportBatch, lost).enqueued_at is not None  # the lost batch was queued again
    # The missing calendar is logged once (not on every tick, nor per date looked up), in Chinese.
    warnings = [r.getMessage() for r in caplog.records if NOTICE_2027 in r.getMessage()]
    assert len(warnings) == 1 and again.assumed_years == (2027,)
    with time_machine.travel(datetime(2027, 1, 6, 9, 0, tzinfo=SH), tick=False):
        scheduler.tick()
    assert len([r for r in caplog.records if NOTICE_2027 in r.getMessage()]) == 2  # and again the next day
    rt.dispose()


def test_the_first_reviews_of_a_year_without_a_calendar_are_planned_on_weekdays(tmp_path: Path) -> None:
    rt = runtime_in_2027(tmp_path, datetime(2027, 2, 1, 8, 0, tzinfo=SH))
    scheduler = ReviewScheduler(rt, hand_over=lambda: deliver_now(rt), owner="only")
    planned: dict[date, datetime] = {}
    for now in (datetime(2027, 2, 1, 8, 0, tzinfo=SH), datetime(2027, 2, 18, 9, 0, 30, tzinfo=SH),
                datetime(2027, 2, 19, 8, 59, 30, tzinfo=SH), datetime(2027, 2, 19, 9, 0, 30, tzinfo=SH)):
        with time_machine.travel(now, tick=False):
            report = scheduler.tick()
        assert report.failed == ()
        planned.update((review, now) for review in report.digests.planned)
    # February's review on its last weekday (Fri 26), the digest five weekdays before, at 09:00.
    assert planned == {date(2027, 2, 26): datetime(2027, 2, 19, 9, 0, 30, tzinfo=SH)}
    with session_scope(rt.session_factory) as s:
        digests = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "leader_digest")).all()
    assert [(m.review_date, m.status) for m in digests] == [(date(2027, 2, 26), "sent")]
    rt.dispose()


def test_a_failing_job_never_stops_the_others(tmp_path: Path, caplog, monkeypatch) -> None:
    rt = runtime_in_2027(tmp_path, datetime(2027, 1, 5, 8, 0, tzinfo=SH))
    retry = a_retry_due(rt, datetime(2027, 1, 5, 8, 0, tzinfo=SH))

    def calendar_fault(*args: object, **kwargs: object) -> None:
        raise ValueError("节假日数据损坏")

    monkeypatch.setattr("pipeline.alerts.scheduler.plan_due_digests", calendar_fault)
    scheduler = ReviewScheduler(rt, hand_over=lambda: deliver_now(rt), owner="only")
    with time_machine.travel(datetime(2027, 1, 5, 9, 0, tzinfo=SH), tick=False):
        report = scheduler.tick()
    assert report.holder and report.failed == (DIGESTS,) and report.reflagged
    with session_scope(rt.session_factory) as s:
        assert s.get(OutboxMessage, retry).status == "sent"
    [failure] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert DIGESTS in failure.getMessage() and "节假日数据损坏" in failure.exc_text
    rt.dispose()


def test_a_job_that_meets_the_database_down_logs_one_line_not_a_traceback(tmp_path: Path, caplog,
                                                                          monkeypatch) -> None:
    """During an outage every tick meets the same refused connection: a warning naming the job and
    the cause, no stack trace per tick; the other jobs still run."""
    from sqlalchemy.exc import OperationalError

    rt = runtime_in_2027(tmp_path, datetime(2027, 1, 5, 8, 0, tzinfo=SH))

    def database_down(*args: object, **kwargs: object) -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr("pipeline.alerts.scheduler.plan_due_digests", database_down)
    scheduler = ReviewScheduler(rt, hand_over=lambda: deliver_now(rt), owner="only")
    with caplog.at_level(logging.WARNING), time_machine.travel(datetime(2027, 1, 5, 9, 0, tzinfo=SH), tick=False):
        report = scheduler.tick()
    assert report.holder and report.failed == (DIGESTS,) and report.reflagged
    [warning] = [r for r in caplog.records if DIGESTS in r.getMessage()]
    assert warning.levelno == logging.WARNING and warning.exc_info is None
    assert "数据库不可用" in warning.getMessage()
    assert "connection refused" in warning.getMessage()
    rt.dispose()
