"""The outbox: one row per key, one-row claims, backoff through a retry window, failure, resend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from pipeline.alerts.channels import DeliveryError, DeliveryReceipt
from pipeline.alerts.outbox import (
    FAILED,
    PENDING,
    SENDING,
    SENT,
    PlannedMessage,
    RetryPolicy,
    claim_next,
    enqueue,
    mark_attempt_failed,
    mark_sent,
    resend,
)
from pipeline.db import session_scope
from pipeline.errors import ActionRefused
from pipeline.models import DeliveryAttempt, OutboxMessage
from pipeline.runtime import Runtime
from tests.conftest import make_runtime
from tests.factories import ACTOR

RECEIPT = DeliveryReceipt(250, "250 OK", 5)


def planned(n: int) -> PlannedMessage:
    return PlannedMessage(key=f"leader_digest:2024-06-28:{n}:email:l{n}@example.org", kind="leader_digest",
                          channel="email", recipient=f"l{n}@example.org", subject=f"提醒{n}", body_text="正文")


def status_of(rt: Runtime, message_id: int) -> OutboxMessage:
    with session_scope(rt.session_factory) as s:
        return s.get(OutboxMessage, message_id)


def test_a_key_is_planned_once(any_runtime: Runtime) -> None:
    rt = any_runtime
    now = rt.clock.now()
    with session_scope(rt.session_factory) as s:
        first = enqueue(s, [planned(1), planned(2)], now=now)
    with session_scope(rt.session_factory) as s:
        second = enqueue(s, [planned(1), planned(2), planned(3)], now=now)
        total = s.scalar(select(func.count()).select_from(OutboxMessage))
    assert len(first) == 2 and len(second) == 1 and total == 3


def test_many_messages_are_planned_in_a_few_statements(any_runtime: Runtime) -> None:
    """2,500 messages (one key planned before, one met twice) go in a few INSERTs (on PostgreSQL
    one, from a staging table; on SQLite pages of one each) and their attachments in one
    executemany, not a statement per message; each new message keeps its own attachments and the
    first of a repeated key wins."""
    from dataclasses import replace

    from sqlalchemy import event

    from pipeline.alerts.channels.base import Attachment
    from pipeline.models import OutboxAttachment

    rt = any_runtime
    now = rt.clock.now()
    with session_scope(rt.session_factory) as s:
        [before] = enqueue(s, [planned(7)], now=now)
    messages = [replace(planned(n), attachments=(Attachment(f"{n}.xlsx", str(n).encode()),) if n % 2 else ())
                for n in range(2_500)]
    messages.append(replace(planned(11), subject="又一次"))
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        words = statement.split()
        statements.append(words[2] if words[:2] == ["INSERT", "INTO"] else words[0])

    event.listen(rt.engine, "before_cursor_execute", count)
    try:
        with session_scope(rt.session_factory) as s:
            new = enqueue(s, messages, now=now)
    finally:
        event.remove(rt.engine, "before_cursor_execute", count)
    assert len(new) == 2_499 and before not in new
    assert 1 <= statements.count("outbox") <= 5 and statements.count("outbox_attachments") == 1, statements[:5]
    with session_scope(rt.session_factory) as s:
        rows = dict(s.execute(select(OutboxMessage.key, OutboxMessage.subject)).all())
        files = dict(s.execute(select(OutboxMessage.key, OutboxAttachment.filename)
                               .join(OutboxAttachment, OutboxAttachment.message_id == OutboxMessage.id)).all())
    assert len(rows) == 2_500 and rows[planned(11).key] == "提醒11"
    assert files == {planned(n).key: f"{n}.xlsx" for n in range(1, 2_500, 2) if n != 7}


def test_long_message_texts_are_stored_compressed_with_lz4_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    """A rendered message's long body is compressed as it is staged, with lz4 where the server has
    it (this machine's Debian build does; the test says so if not), and stored so: the default,
    pglz, took a third longer to stage a first evaluation's notices. The setting ends with the
    transaction."""
    from dataclasses import replace

    rt = make_runtime(tmp_path, database_url=pg_url)
    try:
        with session_scope(rt.session_factory) as s:
            lz4, before = s.execute(text("SELECT 'lz4' = ANY(enumvals), setting FROM pg_settings "
                                         "WHERE name = 'default_toast_compression'")).one()
            long_html = "<p>" + "项目进展滞后，请尽快协调解决。" * 400 + "</p>"  # compressible, well over 2 KB
            [message] = enqueue(s, [replace(planned(1), body_html=long_html)], now=rt.clock.now())
        with session_scope(rt.session_factory) as s:
            stored, method, default = s.execute(text(
                "SELECT body_html, pg_column_compression(body_html), current_setting('default_toast_compression') "
                "FROM outbox WHERE id = :id"), {"id": message}).one()
    finally:
        rt.dispose()
    assert lz4, "this PostgreSQL was built without lz4"
    assert stored == long_html and method == "lz4"
    assert default == before  # set for that transaction only (the pool hands on its connection)


def claim(rt: Runtime, owner: str, now: datetime, lease: timedelta = timedelta(minutes=15)):  # noqa: ANN201
    with session_scope(rt.session_factory) as s:
        return claim_next(s, owner=owner, now=now, lease=lease)


def test_a_claim_takes_one_row_and_never_one_held(any_runtime: Runtime) -> None:
    rt = any_runtime
    now = rt.clock.now()
    with session_scope(rt.session_factory) as s:
        first, second = enqueue(s, [planned(1), planned(2)], now=now)
    a = claim(rt, "a", now, timedelta(minutes=2))
    b = claim(rt, "b", now, timedelta(minutes=2))
    assert (a.id, a.owner, b.id, b.owner) == (first, "a", second, "b")
    assert claim(rt, "c", now + timedelta(minutes=1)) is None  # both claims live
    taken = claim(rt, "c", now + timedelta(minutes=3))  # a lapsed claim is taken over, oldest row first
    assert taken.id == first and status_of(rt, first).lease_owner == "c"


def test_a_lapsed_holder_records_its_attempt_but_leaves_the_row_to_the_new_holder(any_runtime: Runtime) -> None:
    rt = any_runtime
    now = rt.clock.now()
    with session_scope(rt.session_factory) as s:
        (mid,) = enqueue(s, [planned(1)], now=now)
    claim(rt, "a", now, timedelta(minutes=2))
    claim(rt, "b", now + timedelta(minutes=3), timedelta(minutes=2))
    with session_scope(rt.session_factory) as s:
        status = mark_attempt_failed(s, mid, owner="a", error=DeliveryError("超时", retryable=True),
                                     now=now + timedelta(minutes=3), retry=POLICY)
    row = status_of(rt, mid)
    assert status == SENDING and (row.status, row.lease_owner, row.attempts) == (SENDING, "b", 0)
    # A delivery is a fact, whoever holds the claim: the row is sent, and a second report of it is not counted.
    with session_scope(rt.session_factory) as s:
        assert mark_sent(s, mid, receipt=RECEIPT, now=now + timedelta(minutes=4))
        assert not mark_sent(s, mid, receipt=RECEIPT, now=now + timedelta(minutes=4))
    assert status_of(rt, mid).status == SENT
    with session_scope(rt.session_factory) as s:
        assert s.scalar(select(func.count()).select_from(DeliveryAttempt)) == 3


POLICY = RetryPolicy(window=timedelta(hours=24), first=timedelta(seconds=30), longest=timedelta(hours=1),
                     jitter=lambda: 1.0)


def aware(moment: datetime, like: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=like.tzinfo)  # SQLite keeps wall time


def test_retries_back_off_through_the_window_then_fail_with_the_last_error(any_runtime: Runtime) -> None:
    rt = any_runtime
    start = rt.clock.now()
    with session_scope(rt.session_factory) as s:
        (mid,) = enqueue(s, [planned(1)], now=start)
    moment, waits = start, []
    while True:
        claimed = claim(rt, "a", moment)
        assert claimed is not None and claim(rt, "b", moment) is None
        error = DeliveryError(f"邮件服务器拒绝连接（第 {claimed.attempts + 1} 次）", retryable=True)
        with session_scope(rt.session_factory) as s:
            status = mark_attempt_failed(s, mid, owner=claimed.owner, error=error, now=moment, retry=POLICY)
        row = status_of(rt, mid)
        if status == FAILED:
            break
        due = aware(row.next_attempt_at, moment)
        assert status == PENDING and claim(rt, "a", due - timedelta(seconds=1)) is None  # not before its time
        waits.append((due - moment).total_seconds())
        moment = due
    # 30 s doubling to the one-hour cap, then hourly, and a last try at the window's very end.
    assert waits[:8] == [30, 60, 120, 240, 480, 960, 1920, 3600] and set(waits[8:-1]) == {3600}
    assert waits[-1] == 24 * 3600 - sum(waits[:-1]) == 3390 and moment == start + timedelta(hours=24)
    assert row.attempts == len(waits) + 1 == 31 and row.status == FAILED
    assert row.last_error == "邮件服务器拒绝连接（第 31 次）"
    # Resent by the office: a new window from its next try.
    with session_scope(rt.session_factory) as s:
        resend(s, mid, now=moment, actor=ACTOR)
    later = moment + timedelta(hours=1)
    again = claim(rt, "a", later)
    with session_scope(rt.session_factory) as s:
        assert mark_attempt_failed(s, mid, owner=again.owner, error=DeliveryError("再次失败", retryable=True),
                                   now=later, retry=POLICY) == PENDING
    assert aware(status_of(rt, mid).first_attempt_at, later) == later


def test_backoff_is_exponential_capped_and_jittered() -> None:
    at_most = RetryPolicy(window=timedelta(hours=24), first=timedelta(seconds=30), longest=timedelta(hours=1),
                          jitter=lambda: 1.0)
    at_least = RetryPolicy(window=timedelta(hours=24), first=timedelta(seconds=30), longest=timedelta(hours=1),
                           jitter=lambda: 0.0)
    assert [at_most.delay(n).total_seconds() for n in (1, 2, 3, 4, 30)] == [30, 60, 120, 240, 3600]
    assert [at_least.delay(n).total_seconds() for n in (1, 2, 3, 4, 30)] == [15, 30, 60, 120, 1800]
    first = datetime(2024, 6, 21, 9, tzinfo=UTC)
    assert at_most.next_attempt(attempts=20, now=first + timedelta(hours=23, minutes=30), first_attempt=first) == (
        first + timedelta(hours=24))  # never past the window
    assert at_most.next_attempt(attempts=21, now=first + timedelta(hours=24), first_attempt=first) is None


def test_a_permanent_error_fails_at_once_and_sent_rows_cannot_be_resent(any_runtime: Runtime) -> None:
    rt = any_runtime
    now = rt.clock.now()
    with session_scope(rt.session_factory) as s:
        a, b = enqueue(s, [planned(1), planned(2)], now=now)
    first = claim(rt, "x", now)
    claim(rt, "y", now)  # b, held by another sender (a delivery is recorded whoever holds the claim)
    with session_scope(rt.session_factory) as s:
        assert mark_attempt_failed(s, a, owner=first.owner, error=DeliveryError("550 用户不存在", retryable=False),
                                   now=now, retry=POLICY) == FAILED
        assert mark_sent(s, b, receipt=RECEIPT, now=now)
    assert status_of(rt, a).last_error == "550 用户不存在"
    with session_scope(rt.session_factory) as s, pytest.raises(ActionRefused, match="已发送"):
        resend(s, b, now=now, actor=ACTOR)
