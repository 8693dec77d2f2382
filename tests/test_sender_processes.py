"""Senders as real processes (Celery workers) and threads against a real SMTP server (aiosmtpd):
two senders never send one message at once; a sender killed after the server took a message
repeats that one message only; a database outage in the middle of a send is outlived and the send
recorded once; a broker outage loses no sending; a message retried through its whole window is
failed with its error, and `pipeline outbox resend ID` sends it."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from pipeline.alerts.outbox import FAILED, SENT, PlannedMessage, enqueue
from pipeline.alerts.sender import ChannelResolver, deliver_due, retry_policy
from pipeline.db import make_engine, session_scope
from pipeline.models import DeliveryAttempt, OutboxMessage
from pipeline.runtime import Runtime, set_runtime
from pipeline.tasks.dispatch import deliver_now, queue_outbox_sender
from tests.cli_helpers import clean_env, pipeline
from tests.conftest import make_runtime
from tests.private_postgres import PrivatePostgres, private_pg  # noqa: F401  (fixture)
from tests.receivers import SmtpSink, free_port
from tests.test_alert_faults import start_smtp, wait_until
from tests.test_sender import PinnedClock
from tests.test_worker_faults import Workers
from tests.factories import ACTOR

SH = ZoneInfo("Asia/Shanghai")
SENDER = "pipeline@jingzhou.gov.cn"
QUICK = {"alert_smtp_timeout_seconds": 1, "alert_webhook_timeout_seconds": 1, "alert_backoff_seconds": 1}


def planned(n: int) -> PlannedMessage:
    return PlannedMessage(key=f"red_notice:{n}:email:leader{n}@jingzhou.gov.cn", kind="red_notice", channel="email",
                          recipient=f"leader{n}@jingzhou.gov.cn", subject=f"【红牌提醒】项目{n}", body_text="正文")


def statuses(db_url: str) -> dict[str, tuple[str, int]]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return {k: (s, a) for k, s, a in conn.execute(
                select(OutboxMessage.key, OutboxMessage.status, OutboxMessage.attempts))}
    finally:
        engine.dispose()


def all_sent(db_url: str, count: int) -> bool:
    found = statuses(db_url)
    return len(found) == count and all(s == SENT for s, _ in found.values())


@pytest.fixture
def production(tmp_path: Path, redis_url: str) -> Iterator[Callable[..., tuple[Runtime, SmtpSink, Workers]]]:
    """A database (given), the test's Redis, a real SMTP sink and Celery workers to start."""
    made: list[tuple[Runtime, Workers, object]] = []

    def make(db_url: str) -> tuple[Runtime, SmtpSink, Workers]:
        sink, controller = start_smtp(free_port())
        options = {"database_url": db_url, "broker_url": redis_url, "smtp_host": "127.0.0.1",
                   "smtp_port": sink.port, "smtp_sender": SENDER, **QUICK}
        rt = make_runtime(tmp_path, **options)
        env = clean_env(tmp_path / "data", **{f"PIPELINE_{k.upper()}": str(v) for k, v in options.items()})
        pool = Workers(env, tmp_path)
        made.append((rt, pool, controller))
        return rt, sink, pool

    yield make
    for rt, pool, controller in made:
        pool.stop_all()
        controller.stop()  # type: ignore[attr-defined]
        rt.dispose()
    set_runtime(None)


def plan(rt: Runtime, numbers: range, *, now: datetime | None = None) -> None:
    with session_scope(rt.session_factory) as s:
        enqueue(s, [planned(n) for n in numbers], now=now or rt.clock.now())


def keep_queueing(rt: Runtime, done: Callable[[], bool], *, what: str, timeout: float = 90) -> None:
    """What the scheduler does every tick: queue the sender task, until ``done``."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        queue_outbox_sender(rt)
        time.sleep(1.0)


def test_two_sender_processes_never_send_one_message_at_once(production, pg_url: str, tmp_path: Path) -> None:
    rt, sink, pool = production(pg_url)
    sink.step_seconds = 0.3  # each message takes a while at the server: two senders overlap
    pool.start("w1")
    pool.start("w2")
    for name in ("w1", "w2"):  # both listening before there is anything to send
        log = tmp_path / f"{name}.log"
        wait_until(lambda log=log: log.exists() and " ready." in log.read_text(errors="replace"),
                   what=f"worker {name} ready")
    plan(rt, range(1, 17))
    keep_queueing(rt, lambda: all_sent(pg_url, 16), what="every message sent")
    time.sleep(1)
    copies = sink.copies_by_message_id()
    assert len(copies) == 16 and set(copies.values()) == {1}
    assert set(sink.most_at_once.values()) == {1} and sink.most_busy == 2  # both senders at work, never on one
    assert {a for _, a in statuses(pg_url).values()} == {1}


def test_two_sender_threads_of_one_process_never_send_one_message_at_once(production, pg_url: str) -> None:
    rt, sink, _ = production(pg_url)
    sink.step_seconds = 0.3
    plan(rt, range(1, 17))
    threads = [threading.Thread(target=deliver_now, args=(rt,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    copies = sink.copies_by_message_id()
    assert len(copies) == 16 and set(copies.values()) == {1}
    assert set(sink.most_at_once.values()) == {1} and sink.most_busy == 2
    assert all_sent(pg_url, 16)


def test_a_sender_killed_after_the_server_took_a_message_repeats_that_one_only(production, pg_url: str) -> None:
    rt, sink, pool = production(pg_url)
    sink.hold = threading.Event()  # the server keeps the first message and says nothing yet
    plan(rt, range(1, 6))
    first = pool.start("w1")
    queue_outbox_sender(rt)
    assert sink.taken.wait(60)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    sink.hold.set()
    pool.start("w2")
    # The killed sender's claim lapses (15 s: 1.5 × the 10 s an email may take here), then its message goes again.
    keep_queueing(rt, lambda: all_sent(pg_url, 5), what="every message sent", timeout=120)
    copies = sink.copies_by_message_id()
    assert sorted(copies.values()) == [1, 1, 1, 1, 2]
    in_flight = sink.messages[0].message_id
    assert copies[in_flight] == 2  # the one in flight when the sender died, no other


def test_the_sender_task_outlives_a_database_outage_in_the_middle_of_a_send(
    production, private_pg: PrivatePostgres, tmp_path: Path,
) -> None:
    rt, sink, pool = production(private_pg.url)
    sink.hold = threading.Event()
    plan(rt, range(1, 2))
    worker = pool.start("w1")
    queue_outbox_sender(rt)
    assert sink.taken.wait(60)
    private_pg.stop()  # the database goes away while the message is with the mail server
    sink.hold.set()  # ... which accepts it now
    log = tmp_path / "w1.log"
    wait_until(lambda: "的发送结果时数据库不可用" in log.read_text(errors="replace"),
               what="the sender meeting the outage")
    time.sleep(2)
    private_pg.start()
    wait_until(lambda: all_sent(private_pg.url, 1), what="the send recorded once the database is back")
    assert worker.poll() is None
    plan(rt, range(2, 3))  # the same worker goes on sending
    keep_queueing(rt, lambda: all_sent(private_pg.url, 2), what="the next message sent")
    assert worker.poll() is None
    assert set(sink.copies_by_message_id().values()) == {1}
    assert {a for _, a in statuses(private_pg.url).values()} == {1}


def test_the_sender_worker_outlives_a_broker_restart(production, pg_url: str, redis_server) -> None:
    rt, sink, pool = production(pg_url)
    plan(rt, range(1, 2))
    worker = pool.start("w1")
    keep_queueing(rt, lambda: all_sent(pg_url, 1), what="the first message sent")
    redis_server.restart()  # everything the broker held is lost; the worker must reconnect
    plan(rt, range(2, 3))
    keep_queueing(rt, lambda: all_sent(pg_url, 2), what="the next message sent once the broker is back")
    assert worker.poll() is None and set(sink.copies_by_message_id().values()) == {1}


def test_a_message_retried_through_its_window_fails_then_resend_sends_it(tmp_path: Path) -> None:
    port = free_port()  # no mail server there yet: every try is refused
    rt = make_runtime(tmp_path, smtp_host="127.0.0.1", smtp_port=port, smtp_sender=SENDER, **QUICK)
    try:
        start = datetime(2024, 6, 21, 9, tzinfo=SH)
        clock = PinnedClock(start)
        plan(rt, range(1, 2), now=start)
        policy = retry_policy(rt.settings)
        while True:
            deliver_due(rt.session_factory, resolver=ChannelResolver(rt.settings), clock=clock, retry=policy,
                        claim=rt.settings.alert_claim)
            with session_scope(rt.session_factory) as s:
                row = s.scalars(select(OutboxMessage)).one()
                if row.status == FAILED:
                    break
                assert row.status == "pending"
                due = row.next_attempt_at.replace(tzinfo=SH)  # SQLite keeps the wall time
                assert start < due <= start + timedelta(hours=24)
                clock.at = due
        with session_scope(rt.session_factory) as s:
            last_try = s.scalar(select(func.max(DeliveryAttempt.attempted_at))).replace(tzinfo=SH)
            tries = s.scalar(select(func.count()).select_from(DeliveryAttempt))
        assert last_try == start + timedelta(hours=24) and tries == row.attempts > 8
        assert "拒绝连接" in row.last_error
        message_id = row.id
    finally:
        rt.dispose()
        set_runtime(None)
    sink, controller = start_smtp(port)  # the mail server is back; the office resends
    try:
        env = clean_env(tmp_path / "data", PIPELINE_SMTP_HOST="127.0.0.1", PIPELINE_SMTP_PORT=str(port),
                        PIPELINE_SMTP_SENDER=SENDER)
        done = pipeline(env, "outbox", "resend", str(message_id))
    finally:
        controller.stop()
    assert done.returncode == 0, done.stderr
    assert f"消息 {message_id} 已重新排队，当前状态：已发送" in done.stdout
    assert len(sink.messages) == 1 and sink.messages[0].rcpt_tos == ("leader1@jingzhou.gov.cn",)


def test_a_broker_down_after_a_batch_was_applied_leaves_the_sending_to_the_scheduler(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker applied the batch (and planned its notices); queueing the sender then finds the
    broker gone: logged, and the task still succeeds (the scheduler queues the sender next tick)."""
    from datetime import date

    from pipeline.ingest.export import write_template
    from pipeline.ingest.submit import receive_file
    from pipeline.models import ImportBatch
    from pipeline.tasks.ingest import apply_batch_task
    from tests.factories import row

    rt = make_runtime(tmp_path, broker_url=f"redis://127.0.0.1:{free_port()}/0", as_of=date(2024, 6, 30))
    try:
        late = row(1, nature="新开工", planned_start=date(2024, 3, 1), actual_start=None, stats_included_on=None,
                   cumulative_completed=0, ytd_completed=0, as_of=date(2024, 6, 30))
        path = write_template([late], tmp_path / "2024-06.csv")
        with session_scope(rt.session_factory) as s:
            batch_id = receive_file(s, path, reference=rt.reference, max_bytes=10**7, clock=rt.clock,
                                    actor=ACTOR).batch_id
        from workers.celery_app import celery_for

        celery_for(rt.settings)  # the worker's app, on the broker that is down
        apply_batch_task(batch_id)  # as a worker runs it
        with session_scope(rt.session_factory) as s:
            assert s.get(ImportBatch, batch_id).status == "applied"
        assert "could not queue the outbox sender" in caplog.text
    finally:
        rt.dispose()
        set_runtime(None)
