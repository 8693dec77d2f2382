"""A digest for a past review describes the reserve as of that review's digest day and compares
with the previous review's digest day (SPEC §9, issue 11.4), with no other date in the message.

A year of monthly reports goes in through the ordinary ingest path on a runtime whose evaluation
date is 2024-12-31; the 2024-06-28 review's digests are then planned into the outbox. Their flags,
reasons and changes are checked against ``pipeline evaluate``'s path on the same rows (template
rows straight to the engine, no database) as of 2024-06-21 and 2024-04-24.
"""

from __future__ import annotations

import io
import re
from calendar import monthrange
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import func, select, text

from pipeline.alerts.planning import plan_review
from pipeline.alerts.recipients import Contact, RecipientsConfig
from pipeline.db import session_scope
from pipeline.ingest.template import UpdateRow
from pipeline.models import OutboxAttachment, OutboxMessage
from pipeline.rules.replay import evaluate_rows
from pipeline.runtime import Runtime, set_runtime
from tests.conftest import make_runtime
from tests.factories import code, row
from tests.test_ingest_db import apply, record

D = date(2024, 12, 31)  # the evaluation date: the reserve's "now"
REVIEW, DAY = date(2024, 6, 28), date(2024, 6, 21)  # the review and its digest day (5 working days before)
PREVIOUS, PREVIOUS_DAY = date(2024, 4, 30), date(2024, 4, 24)  # 2024-04-28 was a make-up working Sunday
ALLOWED = {REVIEW, DAY, PREVIOUS, PREVIOUS_DAY}
ZHANG = {code(n) for n in (1, 2, 3, 4, 5, 8)}


def month_end(m: int) -> date:
    return date(2024, m, monthrange(2024, m)[1])


def on_pace(m: int) -> Decimal:
    """Year-to-date investment a month ahead of the plan: green between month ends too."""
    return Decimal(12000 * min(m + 1, 12) // 12)


def reports() -> list[UpdateRow]:
    """Twelve monthly reports of seven projects; 张三 answers for 1-5, 李四 for 6 and 7."""
    rows: list[UpdateRow] = []
    for m in range(1, 13):
        d = month_end(m)
        rows += [
            # 1: a new start due 2024-05-10, started in August: yellow at May's end, ESCALATED red by June 21
            row(1, as_of=d, nature="新开工", planned_start=date(2024, 5, 10), leader="张三",
                actual_start=date(2024, 8, 20) if m >= 8 else None,
                stats_included_on=date(2024, 8, 25) if m >= 8 else None,
                ytd_completed=on_pace(m) if m >= 8 else Decimal(0)),
            # 2: half the pace until June, on pace after: red on both digest days
            row(2, as_of=d, leader="张三", ytd_completed=on_pace(m) / 2 if m <= 6 else on_pace(m)),
            # 3: a new start due 2024-04-10, started in May: yellow on April 24, green by June 21
            row(3, as_of=d, nature="新开工", planned_start=date(2024, 4, 10), leader="张三",
                actual_start=date(2024, 5, 15) if m >= 5 else None,
                stats_included_on=date(2024, 5, 20) if m >= 5 else None,
                ytd_completed=on_pace(m) if m >= 5 else Decimal(0)),
            # 4: on pace until October, then far behind
            row(4, as_of=d, leader="张三", ytd_completed=on_pace(m) if m <= 10 else Decimal(1000)),
            row(5, as_of=d, leader="张三", ytd_completed=on_pace(m)),
            row(6, as_of=d, leader="李四", county="沙市区", ytd_completed=on_pace(m)),
        ]
        if m >= 8:  # 7: first reported in August, after the review
            rows.append(row(7, as_of=d, leader="李四", ytd_completed=on_pace(m) / 2))
        # 9: a new start due 2024-06-25, started in July: green on June 21, yellow by the review (将转黄)
        rows.append(row(9, as_of=d, nature="新开工", planned_start=date(2024, 6, 25), leader="李四", county="沙市区",
                        actual_start=date(2024, 7, 2) if m >= 7 else None,
                        stats_included_on=date(2024, 7, 9) if m >= 7 else None,
                        ytd_completed=on_pace(m) if m >= 7 else Decimal(0)))
    # 8: first reported on June 15, a start due 2024-04-25 still to come: yellow on June 21 (57 days),
    # red by the review (64 days: 将转红); started in July
    rows.append(row(8, as_of=date(2024, 6, 15), nature="新开工", planned_start=date(2024, 4, 25), leader="张三",
                    actual_start=None, stats_included_on=None, ytd_completed=Decimal(0)))
    rows += [row(8, as_of=month_end(m), nature="新开工", planned_start=date(2024, 4, 25), leader="张三",
                 actual_start=date(2024, 7, 1), stats_included_on=date(2024, 7, 5), ytd_completed=on_pace(m))
             for m in range(7, 13)]
    return rows


@pytest.fixture(params=["sqlite", "postgres"])
def rt(tmp_path: Path, request: pytest.FixtureRequest):
    url = {"database_url": request.getfixturevalue("pg_url")} if request.param == "postgres" else {}
    runtime = make_runtime(tmp_path, as_of=D, **url)
    rows = reports()
    apply(runtime, record(runtime, rows))
    # project 6's May report again, recorded later with nothing done this year: the later one wins
    again = [row(6, as_of=month_end(5), leader="李四", county="沙市区", ytd_completed=Decimal(0))]
    apply(runtime, record(runtime, again))
    runtime.test_rows = rows + again  # type: ignore[attr-defined]
    yield runtime
    runtime.dispose()
    set_runtime(None)


def test_each_leader_digest_is_stored_before_the_next_is_made(rt: Runtime, monkeypatch) -> None:
    """A review's rendered digests are never all held at once: each goes to the outbox before the
    next leader's is made (at province scale they are tens of megabytes)."""
    from sqlalchemy import func

    import pipeline.alerts.digests as digests

    ctx = replace(rt.alert_context(), recipients=RecipientsConfig(
        leaders={"张三": Contact(email="zhang@example.cn"), "李四": Contact(email="li@example.cn")}))
    stored_before: list[int] = []
    make = digests.leader_digest_of
    with session_scope(rt.session_factory) as s:
        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            stored_before.append(s.scalar(select(func.count()).select_from(OutboxMessage)))
            return make(*args, **kwargs)

        monkeypatch.setattr(digests, "leader_digest_of", counted)
        assert plan_review(s, review=REVIEW, calendar=rt.review_calendar, current=D, ctx=ctx) == 2
    assert stored_before == [0, 1]


RECIPIENTS = RecipientsConfig(
    office=Contact(name="投资科", email="office@example.cn"),
    leaders={"张三": Contact(email="zhang@example.cn"), "李四": Contact(email="li@example.cn")})


def _digests_in(s) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    """Each planned digest's subject, text, HTML and attachment cells, by recipient."""
    out = {}
    for message in s.scalars(select(OutboxMessage)):
        [attachment] = s.scalars(select(OutboxAttachment).where(OutboxAttachment.message_id == message.id))
        book = openpyxl.load_workbook(io.BytesIO(attachment.content))
        cells = [[list(r) for r in sheet.iter_rows(values_only=True)] for sheet in book.worksheets]
        out[message.recipient_name] = (message.subject, message.body_text, message.body_html, cells)
    return out


def _planned_then_undone(rt: Runtime) -> dict[str, tuple]:
    """Every digest of the review planned in this process, then rolled back."""
    s = rt.session_factory()
    try:
        ctx = replace(rt.alert_context(), recipients=RECIPIENTS)
        assert plan_review(s, review=REVIEW, calendar=rt.review_calendar, current=D, ctx=ctx) == 3
        return _digests_in(s)
    finally:
        s.rollback()
        s.close()


def test_digests_gathered_from_small_chunks_equal_those_from_one(rt: Runtime, monkeypatch) -> None:
    """Each chunk of the reserve is reduced to what the digests show before the next is read (SPEC
    §8): counts and rate sums added up across chunks, lists gathered, a leader's projects (张三's
    1-5 and 8) spread over several chunks, changes and the outlook found chunk by chunk."""
    import pipeline.alerts.digests as digests

    whole = _planned_then_undone(rt)
    monkeypatch.setattr(digests, "CHUNK", 2)
    assert _planned_then_undone(rt) == whole
    assert "【新增红牌】" in whole["投资科"][1] and "【将转红】" in whole["张三"][1]  # changes and the outlook are there


@pytest.fixture
def on_the_digest_day(rt: Runtime, monkeypatch):  # type: ignore[no-untyped-def]
    """The runtime's clock stopped on the digest day at 10:00 (the fixture's is set to 2024-12-31)."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    import time_machine

    monkeypatch.setattr(rt.settings, "_clock_offset", timedelta(0))
    with time_machine.travel(datetime(2024, 6, 21, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai")), tick=False):
        yield rt


def test_a_review_gathered_by_chunk_tasks_plans_what_one_process_plans(rt: Runtime, on_the_digest_day,
                                                                       monkeypatch) -> None:
    """Province and national scale (SPEC §8): each chunk task stores its share of the digests, the
    one that completes the set divides the rendering into parts (the office's digest, ranges of
    leaders), and the parts, rendered in any order, plan the same messages as planning in one
    process; a redelivered chunk or part counts once, and a finished run is not planned again."""
    from pipeline.alerts import digest_runs
    from pipeline.alerts.digest_runs import start_digest_run
    from pipeline.models import DigestPart, DigestRender, DigestRun, ReviewRun

    whole = _planned_then_undone(rt)
    monkeypatch.setattr(rt, "recipients", RECIPIENTS)
    monkeypatch.setattr(digest_runs, "LEADERS_PER_PART", 1)  # a part per leader: 张三's, 李四's
    with session_scope(rt.session_factory) as s:
        chunks = start_digest_run(s, review=REVIEW, current=D, send_at=rt.review_calendar.digest_send_at(REVIEW),
                                  chunk_size=2, clock=rt.clock)
    assert len(chunks) == 5  # projects 1-9, two ids a chunk
    gathered = [rt.run_digest_chunk(REVIEW, chunk) for chunk in reversed(chunks)]  # any order
    assert gathered == [(), (), (), (), (0, 1, 2)]  # the last chunk divides: the office's part, a part per leader
    assert rt.run_digest_chunk(REVIEW, chunks[0]) == () and rt.finish_digest_run(REVIEW) == ()
    assert [rt.render_digest_part(REVIEW, part) for part in (2, 0)] == [1, 1]  # any order, a message each
    assert rt.render_digest_part(REVIEW, 2) is None  # a redelivered part plans nothing
    with session_scope(rt.session_factory) as s:
        run = s.get(DigestRun, REVIEW)
        assert (run.status, run.done_parts) == ("rendering", 2) and s.get(ReviewRun, REVIEW) is None
    assert rt.render_digest_part(REVIEW, 1) == 1  # the last part records the review planned
    assert rt.render_digest_part(REVIEW, 1) is None and rt.finish_digest_run(REVIEW) == ()
    with session_scope(rt.session_factory) as s:
        assert _digests_in(s) == whole
        run = s.get(DigestRun, REVIEW)
        assert (run.status, run.done_chunks, run.done_parts) == ("done", 5, 3)
        assert s.get(ReviewRun, REVIEW).messages == 3
        for table in (DigestPart, DigestRender):  # the shares and the parts' records are dropped once planned
            assert s.scalar(select(func.count()).select_from(table)) == 0


def test_the_leaders_are_divided_into_parts_of_about_equal_size(rt: Runtime, monkeypatch) -> None:
    """One part per LEADERS_PER_PART leaders, no more parts than chunks; every leader id falls in
    exactly one part, and a leader added later falls in the last."""
    from pipeline.alerts import digest_runs
    from pipeline.models import DigestRun, Leader

    with session_scope(rt.session_factory) as s:
        s.add_all(Leader(name=f"领导{i}") for i in range(23))  # 25 leaders in all
        s.flush()
        ids = s.scalars(select(Leader.id).order_by(Leader.id)).all()
        cases = {(10, 5): 3, (10, 2): 2, (1, 100): 25, (100, 5): 1}
        for (per_part, at_most), parts in cases.items():
            monkeypatch.setattr(digest_runs, "LEADERS_PER_PART", per_part)
            run = DigestRun(leader_starts=digest_runs._leader_starts(s, at_most=at_most))
            assert digest_runs.render_parts(run) == tuple(range(parts + 1))
            ranges = [digest_runs._leader_range(run, part) for part in range(1, parts + 1)]
            owners = [[k for k, (lo, hi) in enumerate(ranges) if (lo is None or i >= lo) and (hi is None or i < hi)]
                      for i in [*ids, ids[-1] + 1, 0]]
            assert all(len(o) == 1 for o in owners) and owners[-2] == [parts - 1] and owners[-1] == [0]
            sizes = [sum(1 for o in owners[:-2] if o == [k]) for k in range(parts)]
            assert max(sizes) - min(sizes) <= max(sizes) // 2 + 1, sizes
        assert digest_runs._leader_starts(s, at_most=3)[0] == ids[0]
        s.rollback()


def test_the_sweeper_completes_a_digest_run_its_workers_left(rt: Runtime, on_the_digest_day, monkeypatch) -> None:
    """Chunk and part tasks lost with a broker or a worker: once the run is older than the sweep
    delay, the sweeper gathers (on a broker: queues again) the chunks not stored, divides a run
    whose chunks are all stored but which was never divided (its finishing worker died), and
    renders (queues again) the parts not rendered."""
    from datetime import timedelta

    from pipeline.alerts.digest_runs import gather_chunk, start_digest_run
    from pipeline.models import DigestRun, ReviewRun
    from pipeline.tasks.dispatch import requeue_stale_digest_runs

    monkeypatch.setattr(rt, "recipients", RECIPIENTS)
    send_at = rt.review_calendar.digest_send_at(REVIEW)
    with session_scope(rt.session_factory) as s:
        chunks = start_digest_run(s, review=REVIEW, current=D, send_at=send_at, chunk_size=2, clock=rt.clock)
    assert rt.run_digest_chunk(REVIEW, chunks[1]) == ()
    assert requeue_stale_digest_runs(rt) == 0  # within the sweep delay: its tasks may still come

    def age() -> None:
        with session_scope(rt.session_factory) as s:
            s.get(DigestRun, REVIEW).started_at = rt.clock.now() - timedelta(minutes=5)

    def again() -> None:
        with session_scope(rt.session_factory) as s:
            for table in ("outbox_attachments", "outbox", "review_runs", "digest_runs"):
                s.execute(text(f"DELETE FROM {table}"))
            start_digest_run(s, review=REVIEW, current=D, send_at=send_at, chunk_size=2, clock=rt.clock)
            for chunk in chunks:  # every chunk stored, none divided the run
                gather_chunk(s, REVIEW, chunk, calendar=rt.review_calendar, scheme=rt.scheme, compiled=rt.compiled)

    def planned() -> bool:
        with session_scope(rt.session_factory) as s:
            return s.get(DigestRun, REVIEW).status == "done" and s.get(ReviewRun, REVIEW).messages == 3

    age()
    assert requeue_stale_digest_runs(rt) == 4  # the four chunks gathered here, the parts rendered after them
    assert planned()
    again()
    age()
    assert requeue_stale_digest_runs(rt) == 2  # divided here, its two parts rendered here
    assert planned()
    again()
    assert rt.finish_digest_run(REVIEW) == (0, 1)
    assert rt.render_digest_part(REVIEW, 1) == 2  # both leaders' digests; the office's part is lost
    age()
    assert requeue_stale_digest_runs(rt) == 1
    assert planned()


def test_a_digest_run_completed_after_its_review_is_recorded_missed(rt: Runtime, monkeypatch) -> None:
    """Workers down until the review was held: the run's last chunk records the digests as missed
    (as the scheduler does for a digest it could not plan in time) and plans nothing."""
    from pipeline.alerts.digest_runs import start_digest_run
    from pipeline.models import DigestRun, ReviewRun

    monkeypatch.setattr(rt, "recipients", RECIPIENTS)
    with session_scope(rt.session_factory) as s:
        chunks = start_digest_run(s, review=REVIEW, current=D, send_at=rt.review_calendar.digest_send_at(REVIEW),
                                  chunk_size=2, clock=rt.clock)
    assert rt.clock.now().date() > REVIEW  # the runtime's now: 2024-12-31
    assert [rt.run_digest_chunk(REVIEW, chunk) for chunk in chunks][-1] == ()
    with session_scope(rt.session_factory) as s:
        assert s.get(ReviewRun, REVIEW).status == "missed" and s.get(DigestRun, REVIEW).status == "done"
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_a_digest_run_rendered_only_after_its_review_plans_nothing(rt: Runtime, on_the_digest_day,
                                                                   monkeypatch) -> None:
    """Gathered and divided on the digest day, its parts left until the review was held: they
    plan nothing, and the review is recorded as missed."""
    from zoneinfo import ZoneInfo

    import time_machine

    from pipeline.alerts.digest_runs import start_digest_run
    from pipeline.models import DigestRun, ReviewRun

    monkeypatch.setattr(rt, "recipients", RECIPIENTS)
    with session_scope(rt.session_factory) as s:
        chunks = start_digest_run(s, review=REVIEW, current=D, send_at=rt.review_calendar.digest_send_at(REVIEW),
                                  chunk_size=2, clock=rt.clock)
    parts = [rt.run_digest_chunk(REVIEW, chunk) for chunk in chunks][-1]
    assert parts == (0, 1)
    with time_machine.travel(datetime.combine(REVIEW, datetime.min.time(), ZoneInfo("Asia/Shanghai")), tick=False):
        assert [rt.render_digest_part(REVIEW, part) for part in parts] == [0, 0]
    with session_scope(rt.session_factory) as s:
        assert s.get(ReviewRun, REVIEW).status == "missed" and s.get(DigestRun, REVIEW).status == "done"
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_the_scheduler_hands_a_due_review_to_the_workers_once(rt: Runtime) -> None:
    """With ``start`` (a broker and a reserve of many chunks), a due review's digests are handed
    to the workers and not planned here; a review whose run has started is not started again."""
    from pipeline.alerts.planning import plan_due_digests
    from pipeline.models import DigestRun

    ctx = replace(rt.alert_context(), recipients=RECIPIENTS, now=datetime(2024, 6, 21, 10, tzinfo=UTC))
    started: list[date] = []
    for _ in range(2):
        with session_scope(rt.session_factory) as s:
            def start(review: date, send_at: datetime, s=s) -> None:  # type: ignore[no-untyped-def]
                started.append(review)
                s.add(DigestRun(review_date=review, current=D, chunk_size=2, first_chunk=0, chunks=5, done_chunks=0,
                                status="running", send_at=send_at, started_at=send_at))

            done = plan_due_digests(s, calendar=rt.review_calendar, as_of=D, ctx=ctx, start=start)
            assert done.planned == () and s.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    assert started == [REVIEW]


def planned(rt: Runtime) -> dict[str, tuple[OutboxMessage, bytes]]:
    ctx = replace(rt.alert_context(), recipients=RecipientsConfig(
        office=Contact(name="投资科", email="office@example.cn"),
        leaders={"张三": Contact(email="zhang@example.cn"), "李四": Contact(email="li@example.cn")}))
    with session_scope(rt.session_factory) as s:
        assert plan_review(s, review=REVIEW, calendar=rt.review_calendar, current=D, ctx=ctx) == 3
    with session_scope(rt.session_factory) as s:
        out = {}
        for message in s.scalars(select(OutboxMessage)):
            [attachment] = s.scalars(select(OutboxAttachment).where(OutboxAttachment.message_id == message.id))
            s.expunge(message)
            out[message.recipient_name] = (message, attachment.content)
        return out


def oracle(rt: Runtime, day: date) -> dict[str, dict]:
    """``pipeline evaluate``'s answer on the same rows: {code: {"flag", "reasons"}}."""
    return {r["code"]: r for r in evaluate_rows(rt.test_rows, as_of=day, scheme=rt.scheme)}  # type: ignore[attr-defined]


DATE_TEXT = re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})日|(?<![\d-])(\d{4})-(\d{2})-(\d{2})(?![\d-])")


def dates_in(text: str) -> set[date]:
    return {date(int(m[1] or m[4]), int(m[2] or m[5]), int(m[3] or m[6])) for m in DATE_TEXT.finditer(text)}


def outlook(rt: Runtime) -> dict[str, dict]:
    """The forecast from the digest day to the review, as pipeline.forecast gives it."""
    from pipeline.forecast import forecast

    with session_scope(rt.session_factory) as s:
        return {f.code: f.to_json() for f in forecast(s, scheme=rt.scheme, as_of=DAY, review=REVIEW)}


def without_reasons(text: str, *expected: dict[str, dict]) -> str:
    """The text with the reasons' messages taken out (they carry their own dates: a planned start,
    a month end), so what is left must name only the review's dates."""
    for found in (f for e in expected for f in e.values()):
        for reason in found["reasons"]:
            text = text.replace(reason["message"], "")
    return text


def sheet(content: bytes, name: str) -> list[tuple]:
    return [tuple(r) for r in openpyxl.load_workbook(io.BytesIO(content))[name].iter_rows(values_only=True)]


def test_the_calendar_gives_the_dates_the_test_assumes(rt: Runtime) -> None:
    calendar = rt.review_calendar
    assert calendar.previous_review(REVIEW) == PREVIOUS
    assert (calendar.digest_day(REVIEW), calendar.digest_day(PREVIOUS)) == (DAY, PREVIOUS_DAY)


def test_a_past_leader_digest_is_as_of_its_digest_day(rt: Runtime) -> None:
    now, then = oracle(rt, DAY), oracle(rt, PREVIOUS_DAY)
    mine = {c: r for c, r in now.items() if c in ZHANG}
    red = sorted(c for c, r in mine.items() if r["flag"] == "red")
    yellow = sorted(c for c, r in mine.items() if r["flag"] == "yellow")
    assert red == [code(1), code(2)] and yellow == [code(8)]  # the data do what the test says
    assert then[code(3)]["flag"] == "yellow" and then[code(1)]["flag"] == "green"
    message, workbook = planned(rt)["张三"]
    text = message.body_text
    assert "2024年6月28日召开双月述职会议（距述职还有7天）。以下是您包保项目截至2024年6月21日的挂牌情况" in text
    assert message.subject == f"【双月述职提醒】张三同志：2024年6月28日述职，您包保的项目红牌{len(red)}个、黄牌1个"
    assert "与上次述职（2024年4月30日，挂牌截至2024年4月24日）相比" in text
    for body in (text, message.body_html or ""):
        assert dates_in(without_reasons(body, now, outlook(rt))) <= ALLOWED, body
    # every reason is the one the engine gives as of the digest day
    for c in red + yellow:
        for reason in now[c]["reasons"]:
            assert reason["message"] in text
    assert "2024-12-31" not in text and "2024年12月31日" not in text
    # changes: the digest day against the previous review's digest day
    changes = text.split("【挂牌变化】")[1].split("【包保项目三率】")[0]
    expected = {c for c in mine if now[c]["flag"] != then.get(c, {"flag": "green"})["flag"]}
    assert {c for c in mine if c in changes} == expected == {code(1), code(3), code(8)}
    assert f"【新增红牌】测试项目1（{code(1)}，荆州区）：绿牌 → 红牌" in changes
    assert f"【转为绿牌】测试项目3（{code(3)}，荆州区）：黄牌 → 绿牌" in changes
    # the workbook: the same projects, judged on the digest day, its rates at that day's 序时进度
    rows = sheet(workbook, "红黄牌项目")
    assert [(r[0], r[4]) for r in rows[1:]] == [(c, "红牌") for c in red] + [(code(8), "黄牌")]
    assert {r[5] for r in rows[1:]} == {datetime(2024, 6, 21)}
    for r in rows[1:]:
        assert [line.split("：", 1)[1] for line in r[6].split("\n")] == [x["message"] for x in now[r[0]]["reasons"]]
    rates = dict(zip(*sheet(workbook, "三率")[:2]))
    assert rates["序时进度"] == pytest.approx((5 + 21 / 30) / 12)
    assert sheet(workbook, "变化情况")[1:] == [
        (code(1), "测试项目1", "荆州区", "绿牌", "红牌", "新增红牌"), (code(8), "测试项目8", "荆州区", "绿牌", "黄牌", "新增黄牌"),
        (code(3), "测试项目3", "荆州区", "黄牌", "绿牌", "转为绿牌")]


def test_a_past_office_digest_is_as_of_its_digest_day(rt: Runtime) -> None:
    now, then = oracle(rt, DAY), oracle(rt, PREVIOUS_DAY)
    message, workbook = planned(rt)["投资科"]
    text = message.body_text
    assert "以下是全市项目截至2024年6月21日的挂牌汇总" in text and "二、三率（截至2024年6月21日）" in text
    for body in (text, message.body_html or ""):
        assert dates_in(without_reasons(body, now, outlook(rt))) <= ALLOWED, body
    # project 7 had no report by the digest day: not in the reserve then
    counts = {c: sum(1 for r in now.values() if r["flag"] == c) for c in ("red", "yellow", "green")}
    assert len(now) == 8 and code(7) not in now and now[code(6)]["flag"] == "red"  # its later May report
    assert f"全市8个项目：红牌{counts['red']}个、黄牌{counts['yellow']}个、绿牌{counts['green']}个" in text
    red = sorted(c for c, r in now.items() if r["flag"] == "red")
    assert [r[0] for r in sheet(workbook, "红牌")[1:]] == red
    assert {r[6] for r in sheet(workbook, "红牌")[1:]} == {datetime(2024, 6, 21)}
    changed = sorted(c for c in now if now[c]["flag"] != then.get(c, {"flag": "green"})["flag"])
    assert sorted(r[0] for r in sheet(workbook, "变化情况")[1:]) == changed
    assert "与上次述职（2024年4月30日，挂牌截至2024年4月24日）相比" in text
    assert message.subject.startswith("【双月述职汇总】2024年6月28日述职：全市8个项目")


def test_a_date_that_is_not_a_review_is_refused_unless_forced(tmp_path: Path) -> None:
    from tests.cli_helpers import clean_env, pipeline

    env = clean_env(tmp_path / "data")
    refused = pipeline(env, "alerts", "digest", "--review", "2024-06-27")
    said = "".join(refused.stderr.split())  # as wrapped to the terminal
    assert refused.returncode == 2
    assert "2024-06-27不是述职日历中的双月述职日期" in said
    assert "之前2024-04-30，之后2024-06-28" in said and "--force" in said
    new_year = pipeline(env, "alerts", "digest", "--review", "2025-01-02")  # across the year's turn
    assert new_year.returncode == 2 and "之前2024-12-31，之后2025-02-28" in "".join(new_year.stderr.split())
    assert pipeline(env, "init").returncode == 0
    forced = pipeline(env, "alerts", "digest", "--review", "2024-06-27", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "2024-06-27 述职提醒" in forced.stdout
    assert pipeline(env, "alerts", "digest", "--review", "2024-06-28").returncode == 0  # a review: no --force needed


def test_each_digest_says_how_counts_and_rates_moved_since_the_last_review(rt: Runtime) -> None:
    """较上次述职: red and yellow counts and the three rates, each computed as of both digest days
    (the rates by compute_rates over the stored reports, the rates' own path)."""
    from tests.rates_oracle import subjects_as_of
    from pipeline.rates import compute_rates

    now, then = oracle(rt, DAY), oracle(rt, PREVIOUS_DAY)
    with session_scope(rt.session_factory) as s:
        rates = {day: {g.group: g for g in [*compute_rates(subjects_as_of(s, day), as_of=day, by="city"),
                                            *compute_rates(subjects_as_of(s, day), as_of=day, by="leader")]}
                 for day in (DAY, PREVIOUS_DAY)}

    def points(group: str, rate: str) -> str:
        a, b = (getattr(rates[day][group], rate).value for day in (DAY, PREVIOUS_DAY))
        if a is None or b is None:
            return "无可比数据"
        tenths = round(abs(a - b) * 1000)
        return "持平" if tenths == 0 else f"{'+' if a > b else '-'}{tenths // 10}.{tenths % 10}个百分点"

    def count(change: int) -> str:
        return "持平" if change == 0 else f"{change:+d}个"

    def expected(group: str, codes: set[str]) -> str:
        red, yellow = ([sum(1 for c, r in flags.items() if c in codes and r["flag"] == colour) for flags in (now, then)]
                       for colour in ("red", "yellow"))
        return (f"较上次述职（2024年4月30日，挂牌截至2024年4月24日）：红牌{count(red[0] - red[1])}、"
                f"黄牌{count(yellow[0] - yellow[1])}；开工率{points(group, 'start_rate')}、"
                f"竣工率{points(group, 'completion_rate')}、入统率{points(group, 'stats_rate')}。")

    messages = planned(rt)
    zhang = expected("张三", ZHANG)
    city = expected("全市", set(now) | set(then))
    assert "红牌+1个、黄牌持平" in zhang and "开工率+" in zhang  # 1 red, 3 green and 8 yellow; 3 started
    assert zhang in messages["张三"][0].body_text and zhang in (messages["张三"][0].body_html or "")
    assert zhang in messages["张三"][0].payload["markdown"].replace("\\", "")
    assert city in messages["投资科"][0].body_text and city in (messages["投资科"][0].body_html or "")
    assert expected("李四", {code(6), code(9)}) in messages["李四"][0].body_text


def test_the_digests_warn_of_what_turns_red_or_yellow_by_the_review(rt: Runtime) -> None:
    """述职前将转红/转黄: from the digest day to the review, nothing but time changing (SPEC §10)."""
    expected = outlook(rt)
    assert {c: f["flag_at_review"] for c, f in expected.items()} == {code(8): "red", code(9): "yellow"}
    messages = planned(rt)
    zhang, li = messages["张三"][0].body_text, messages["李四"][0].body_text
    section = zhang.split("【述职前将转红/转黄（1个）】")[1]
    assert "若无新进展，至2024年6月28日述职时：" in section
    assert f"【将转红】测试项目8（{code(8)}，荆州区）：现为黄牌，述职时将为红牌" in section
    assert "计划2024-04-25开工，截至2024-06-28已逾期64天未开工" in section  # hand-worked: 4-25 to 6-28
    assert f"【将转黄】测试项目9（{code(9)}，沙市区）：现为绿牌，述职时将为黄牌" in li
    assert "计划2024-06-25开工，截至2024-06-28已逾期3天未开工" in li
    assert code(8) not in li and code(9) not in zhang
    office, workbook = messages["投资科"]
    assert "六、述职前将转红/转黄（2个" in office.body_text
    book = openpyxl.load_workbook(io.BytesIO(workbook))
    assert book.sheetnames == ["分县市区挂牌", "三率", "红牌", "黄牌", "预警", "包保领导挂牌", "变化情况"]
    rows = sheet(workbook, "预警")
    assert rows[0] == ("项目代码", "项目名称", "县市区", "包保领导", "预警", "现在", "述职时", "述职时的原因")
    assert [r[:7] for r in rows[1:]] == [(code(8), "测试项目8", "荆州区", "张三", "将转红", "黄牌", "红牌"),
                                        (code(9), "测试项目9", "沙市区", "李四", "将转黄", "绿牌", "黄牌")]
    assert [r[7].split("：", 1)[1] for r in rows[1:]] == [expected[c]["reasons"][0]["message"] for c in (code(8), code(9))]
    assert "预警" in openpyxl.load_workbook(io.BytesIO(messages["张三"][1])).sheetnames
