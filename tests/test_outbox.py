"""The outbox: one row per key, leased claims, backoff, failure after the last attempt, resend."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from pipeline.alerts.channels import DeliveryError, DeliveryReceipt
from pipeline.alerts.lease import hold_lease
from pipeline.alerts.outbox import (
    FAILED,
    PENDING,
    SENT,
    PlannedMessage,
    backoff,
    claim_due,
    enqueue,
    mark_attempt_failed,
    mark_sent,
    resend,
)
from pipeline.db import session_scope
from pipeline.errors import ActionRefused
from pipeline.models import DeliveryAttempt, OutboxMessage
from pipeline.runtime import Runtime

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


def test_two_senders_never_claim_the_same_row(any_runtime: Runtime) -> None:
    rt = any_runtime
    now = rt.clock.now()
    with session_scope(rt.session_factory) as s:
        enqueue(s, [planned(n) for n in range(10)], now=now)
    with session_scope(rt.session_factory) as s:
        a = claim_due(s, owner="a", now=now, lease=timedelta(minutes=2), limit=6)
    with session_scope(rt.session_factory) as s:
        b = claim_due(s, owner="b", now=now, lease=timedelta(minutes=2), limit=6)
    assert len(a) == 6 and len(b) == 4 and not ({c.id for c in a} & {c.id for c in b})
    # A lapsed lease is taken over; a live one is not.
    with session_scope(rt.session_factory) as s:
        assert claim_due(s, owner="c", now=now + timedelta(minutes=1), lease=timedelta(minutes=2)) == []
        taken = claim_due(s, owner="c", now=now + timedelta(minutes=3), lease=timedelta(minutes=2), limit=50)
    assert len(taken) == 10
    # The original owner can no longer mark its row sent: the claim moved on.
    with session_scope(rt.session_factory) as s:
        assert not mark_sent(s, a[0].id, owner="a", receipt=RECEIPT, now=now)
        assert mark_sent(s, a[0].id, owner="c", receipt=RECEIPT, now=now)
    assert status_of(rt, a[0].id).status == SENT


def test_retries_back_off_then_fail_with_the_error(any_runtime: Runtime) -> None:
    rt = any_runtime
    now = rt.clock.now()
    with session_scope(rt.session_factory) as s:
        (mid,) = enqueue(s, [planned(1)], now=now)
    error = DeliveryError("邮件服务器无法连接：Connection refused", retryable=True)
    moment = now
    for attempt in range(1, 4):
        with session_scope(rt.session_factory) as s:
            (claimed,) = claim_due(s, owner="a", now=moment, lease=timedelta(minutes=2))
            status = mark_attempt_failed(s, claimed.id, owner="a", error=error, now=moment, max_attempts=3,
                                         backoff_seconds=30)
        row = status_of(rt, mid)
        if attempt < 3:
            due = row.next_attempt_at
            due = due if due.tzinfo else due.replace(tzinfo=moment.tzinfo)  # SQLite keeps wall time
            assert status == PENDING and due == moment + backoff(attempt, base_seconds=30)
            with session_scope(rt.session_factory) as s:  # not due before its backoff
                assert claim_due(s, owner="a", now=moment + timedelta(seconds=1), lease=timedelta(minutes=2)) == []
                s.rollback()
            moment = moment + backoff(attempt, base_seconds=30)
        else:
            assert status == FAILED and row.attempts == 3 and "Connection refused" in row.last_error
    with session_scope(rt.session_factory) as s:
        assert s.scalar(select(func.count()).select_from(DeliveryAttempt)) == 3
    with session_scope(rt.session_factory) as s:
        resend(s, mid, now=moment)
    assert status_of(rt, mid).status == PENDING


def test_a_permanent_error_fails_at_once_and_sent_rows_cannot_be_resent(any_runtime: Runtime) -> None:
    rt = any_runtime
    now = rt.clock.now()
    with session_scope(rt.session_factory) as s:
        a, b = enqueue(s, [planned(1), planned(2)], now=now)
    with session_scope(rt.session_factory) as s:
        claim_due(s, owner="x", now=now, lease=timedelta(minutes=2))
        assert mark_attempt_failed(s, a, owner="x", error=DeliveryError("550 用户不存在", retryable=False),
                                   now=now, max_attempts=8, backoff_seconds=30) == FAILED
        mark_sent(s, b, owner="x", receipt=RECEIPT, now=now)
    with session_scope(rt.session_factory) as s, pytest.raises(ActionRefused, match="已发送"):
        resend(s, b, now=now)


def test_backoff_is_exponential_and_capped() -> None:
    assert [backoff(n, base_seconds=30).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert backoff(30, base_seconds=30).total_seconds() == 3600


def test_one_lease_holder_at_a_time(any_runtime: Runtime) -> None:
    rt = any_runtime
    now = rt.clock.now()
    ttl = timedelta(seconds=60)
    with session_scope(rt.session_factory) as s:
        assert hold_lease(s, "scheduler", owner="a", now=now, ttl=ttl)
    with session_scope(rt.session_factory) as s:
        assert not hold_lease(s, "scheduler", owner="b", now=now + timedelta(seconds=30), ttl=ttl)
        assert hold_lease(s, "scheduler", owner="a", now=now + timedelta(seconds=30), ttl=ttl)  # renewal
    with session_scope(rt.session_factory) as s:
        assert hold_lease(s, "scheduler", owner="b", now=now + timedelta(seconds=100), ttl=ttl)  # lapsed: taken
        assert not hold_lease(s, "scheduler", owner="a", now=now + timedelta(seconds=100), ttl=ttl)
