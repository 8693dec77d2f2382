"""A year of 双月述职 under time travel: six reviews in 2024, each leader's digest sent once, on the
fifth working day before the review (China's calendar, 调休 included), at 09:00 Asia/Shanghai."""

from __future__ import annotations

import email
from datetime import date, datetime, time, timedelta
from email import policy
from pathlib import Path
from zoneinfo import ZoneInfo

import time_machine
from sqlalchemy import select

from pipeline.alerts.planning import DigestPlanning
from pipeline.alerts.scheduler import ReviewScheduler
from pipeline.tasks.dispatch import deliver_now
from pipeline.db import session_scope
from pipeline.models import Leader, OutboxMessage, ReviewRun
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
        rt = make_runtime(tmp_path)
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
        rt = make_runtime(tmp_path)
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
