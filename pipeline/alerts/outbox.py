"""The outbox: every message is a row with a unique key; a sender claims one row at a time.

A message is planned exactly once (its key is unique: recipient, kind, review or red episode),
claimed by one sender at a time, and marked sent, retried later with exponential backoff, or failed
with its error once the retry window from its first attempt has passed. Delivery is at-least-once
(SPEC §6): a copy more reaches a recipient only when a channel's answer to a send was lost.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import polars as pl
from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.orm import Session

from pipeline import bulk
from pipeline.alerts.channels.base import Attachment, DeliveryError, DeliveryReceipt, OutgoingMessage
from pipeline.alerts.redact import mask_text
from pipeline.audit import Actor, AuditAction, record
from pipeline.errors import ActionRefused
from pipeline.db import dialect_insert
from pipeline.alerts.promise import DELIVERY_PROMISE, retry_promise  # noqa: F401  (re-exported)
from pipeline.models import DeliveryAttempt, OutboxAttachment, OutboxMessage

PENDING, SENDING, SENT, FAILED, SKIPPED = "pending", "sending", "sent", "failed", "skipped"

@dataclass(frozen=True)
class PlannedMessage:
    key: str
    kind: str
    channel: str  # email | json | wecom | dingtalk
    recipient: str
    subject: str
    body_text: str
    recipient_name: str | None = None
    body_html: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    review_date: date | None = None
    project_id: int | None = None
    episode_change_id: int | None = None
    attachments: tuple[Attachment, ...] = ()


SECRET_ENV_KEY = "secret_env"


@dataclass(frozen=True)
class Claimed:
    id: int
    channel: str
    message: OutgoingMessage
    attempts: int
    owner: str  # this claim's holder, new for every claim
    secret_env: str | None = None  # the environment variable holding a webhook's signing secret


def enqueue(session: Session, messages: Sequence[PlannedMessage], *, now: datetime) -> list[int]:
    """Insert the messages whose key is new; a key planned before (or met twice here: the first)
    is left as it is. Returns the new ids, in the messages' order.

    A few statements whatever the number of messages: on PostgreSQL the rows are copied into a
    staging table and inserted from it by one INSERT ... SELECT ... ON CONFLICT DO NOTHING
    RETURNING (their long texts compressed with lz4 where the server has it); on SQLite (in
    process) they go in pages of one such INSERT each (SQLAlchemy's "insertmanyvalues").
    The new messages' attachments follow in one executemany."""
    if not messages:
        return []
    inserted = _insert_new(session, messages, now=now)
    new_ids: list[int] = []
    attachments: list[dict[str, Any]] = []
    for m in messages:
        new_id = inserted.pop(m.key, None)  # popped: a key met again is not new a second time
        if new_id is None:
            continue
        new_ids.append(new_id)
        attachments += [{"message_id": new_id, "filename": a.filename, "mime": a.mime, "content": a.content}
                        for a in m.attachments]
    if attachments:
        session.execute(insert(OutboxAttachment), attachments)
    return new_ids


_STAGED = (  # the columns a planned message brings, as the staging table holds them
    "key VARCHAR(300), kind VARCHAR(30), channel VARCHAR(20), recipient VARCHAR(500), recipient_name VARCHAR(200), "
    "subject VARCHAR(500), body_text TEXT, body_html TEXT, payload TEXT, review_date DATE, project_id INTEGER, "
    "episode_change_id INTEGER, seq INTEGER"
)
_MESSAGE_COLUMNS = ("key", "kind", "channel", "recipient", "recipient_name", "subject", "body_text", "body_html",
                    "payload", "review_date", "project_id", "episode_change_id")


def _insert_new(session: Session, messages: Sequence[PlannedMessage], *, now: datetime) -> dict[str, int]:
    """Insert the messages whose key is new (the first of a key met twice); key → new id."""
    if not bulk.is_postgres(session):
        table = OutboxMessage.__table__
        rows = [{**{c: getattr(m, c) for c in _MESSAGE_COLUMNS}, "status": PENDING, "attempts": 0,
                 "next_attempt_at": now, "created_at": now} for m in messages]
        stmt = dialect_insert(session, table).on_conflict_do_nothing(index_elements=["key"])
        return {key: new_id for new_id, key in session.execute(stmt.returning(table.c.id, table.c.key), rows)}
    staged = pl.DataFrame({
        **{c: pl.Series(c, [getattr(m, c) for m in messages], dtype=pl.String) for c in _MESSAGE_COLUMNS[:8]},
        "payload": pl.Series([json.dumps(m.payload, ensure_ascii=False) for m in messages], dtype=pl.String),
        "review_date": pl.Series([m.review_date for m in messages], dtype=pl.Date),
        "project_id": pl.Series([m.project_id for m in messages], dtype=pl.Int64),
        "episode_change_id": pl.Series([m.episode_change_id for m in messages], dtype=pl.Int64),
        "seq": pl.int_range(len(messages), eager=True),
    })
    bulk.temp_table(session, "tmp_outbox", _STAGED)
    bulk.compress_quickly(session)
    bulk.write_frame(session, "tmp_outbox", staged)
    columns = ", ".join(_MESSAGE_COLUMNS)
    selected = columns.replace("payload", "CAST(payload AS JSONB)")
    rows = session.execute(bulk.sql(f"""
        INSERT INTO outbox ({columns}, status, attempts, next_attempt_at, created_at)
        SELECT {selected}, :status, 0, :now, :now FROM tmp_outbox ORDER BY seq
        ON CONFLICT (key) DO NOTHING RETURNING id, key"""), {"status": PENDING, "now": now})
    return {key: new_id for new_id, key in rows}


def claim_next(session: Session, *, owner: str, now: datetime, lease: timedelta) -> Claimed | None:
    """Claim the one message due now (or whose previous claim has lapsed), or None when none is.

    The UPDATE is the claim, not the SELECT before it: it only takes a row still pending (or whose
    lease ran out), so two senders never hold the same row; PostgreSQL skips a row another sender
    is claiming at that moment. One row at a time: the lease covers one send, never a queue of
    them. ``owner`` must be new for every claim (see ``sender.claim_owner``), so a sender whose
    claim lapsed can never act on a claim taken since. The first claim starts the retry window.
    """
    due = or_(
        and_(OutboxMessage.status == PENDING, OutboxMessage.next_attempt_at <= now),
        and_(OutboxMessage.status == SENDING, OutboxMessage.lease_until < now),
    )
    candidate = select(OutboxMessage.id).where(due).order_by(OutboxMessage.id).limit(1)
    if session.get_bind().dialect.name == "postgresql":
        candidate = candidate.with_for_update(skip_locked=True)
    message_id = session.scalar(candidate)
    if message_id is None:
        return None
    claimed = session.scalar(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, due)
        .values(status=SENDING, lease_owner=owner, lease_until=now + lease,
                first_attempt_at=func.coalesce(OutboxMessage.first_attempt_at, now))
        .returning(OutboxMessage.id)
    )
    return None if claimed is None else load_claimed(session, claimed, owner=owner)


def load_claimed(session: Session, message_id: int, *, owner: str) -> Claimed:
    row = session.get(OutboxMessage, message_id)
    assert row is not None
    attachments = tuple(
        Attachment(a.filename, a.content, a.mime)
        for a in session.scalars(select(OutboxAttachment).where(OutboxAttachment.message_id == message_id)
                                 .order_by(OutboxAttachment.id))
    )
    payload = dict(row.payload or {})
    secret_env = payload.pop(SECRET_ENV_KEY, None)  # routing data for the sender, never sent
    message = OutgoingMessage(
        key=row.key, recipient=row.recipient, subject=row.subject, text=row.body_text, html=row.body_html,
        attachments=attachments, payload=payload,
    )
    return Claimed(row.id, row.channel, message, row.attempts, owner, secret_env)


@dataclass(frozen=True)
class RetryPolicy:
    """When to try again after a send failed for a passing reason (SPEC §6).

    Exponential backoff from ``first`` (doubling, at most ``longest``), jittered to between half and
    all of it so that messages failed together spread out; retries stop once ``window`` has passed
    since the message's first attempt: the last try falls at the window's end, and if that fails
    too, the message is failed with its error.
    """

    window: timedelta
    first: timedelta
    longest: timedelta
    jitter: Callable[[], float] = random.random  # in [0, 1]

    def delay(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failed try."""
        full = min(self.longest, self.first * 2 ** max(0, attempts - 1))
        return full * (0.5 + 0.5 * self.jitter())

    def next_attempt(self, *, attempts: int, now: datetime, first_attempt: datetime) -> datetime | None:
        """The time of the next try, or None when the window is over."""
        deadline = first_attempt + self.window
        if now >= deadline:
            return None
        return min(now + self.delay(attempts), deadline)


def _record_attempt(session: Session, message_id: int, *, now: datetime, ok: bool, retryable: bool,
                    status_code: int | None, detail: str, duration_ms: int | None) -> None:
    session.execute(insert(DeliveryAttempt).values(
        message_id=message_id, attempted_at=now, ok=ok, retryable=retryable, status_code=status_code,
        detail=detail[:500], duration_ms=duration_ms,
    ))


def mark_sent(session: Session, message_id: int, *, receipt: DeliveryReceipt, now: datetime) -> bool:
    """Record a delivery: the attempt and the status, in the caller's one short transaction.

    A delivery is a fact whoever holds the claim now: the row becomes sent even if this sender's
    claim had lapsed. False when it was sent already (another copy got there first).
    """
    done = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.status.in_((SENDING, PENDING, FAILED)))
        .values(status=SENT, sent_at=now, attempts=OutboxMessage.attempts + 1, last_error=None,
                lease_owner=None, lease_until=None)
    ).rowcount
    _record_attempt(session, message_id, now=now, ok=True, retryable=False, status_code=receipt.status_code,
                    detail=receipt.detail, duration_ms=receipt.duration_ms)
    return bool(done)


def mark_attempt_failed(
    session: Session, message_id: int, *, owner: str, error: DeliveryError, now: datetime, retry: RetryPolicy,
    duration_ms: int | None = None,
) -> str:
    """Record a failed try; schedule the next one, or fail the row for good. Returns the new status.

    Only the holder of the current claim changes the row: a sender whose claim lapsed (and was
    taken by another) records its attempt and leaves the row to the new holder.
    """
    row = session.get(OutboxMessage, message_id, with_for_update=True)
    assert row is not None
    _record_attempt(session, message_id, now=now, ok=False, retryable=error.retryable,
                    status_code=error.status_code, detail=str(error), duration_ms=duration_ms)
    if row.status != SENDING or row.lease_owner != owner:
        return row.status
    row.attempts += 1
    row.last_error = str(error)[:1000]
    row.lease_owner = row.lease_until = None
    first = _aware(row.first_attempt_at, like=now) if row.first_attempt_at else now
    retry_at = retry.next_attempt(attempts=row.attempts, now=now, first_attempt=first) if error.retryable else None
    if retry_at is None:
        row.status = FAILED
    else:
        row.status, row.next_attempt_at = PENDING, retry_at
    return row.status


def _aware(moment: datetime, *, like: datetime) -> datetime:
    """SQLite gives back the wall time it was given, without its zone: that of the clock writing."""
    return moment if moment.tzinfo else moment.replace(tzinfo=like.tzinfo)


def resend(session: Session, message_id: int, *, now: datetime, actor: Actor) -> OutboxMessage:
    """Put a failed (or skipped) message back in the queue, with a new retry window (audited)."""
    row = session.get(OutboxMessage, message_id, with_for_update=True)
    if row is None:
        raise ActionRefused(f"消息不存在：{message_id}")
    if row.status not in (FAILED, SKIPPED):
        state = {PENDING: "等待发送", SENDING: "正在发送", SENT: "已发送"}.get(row.status, row.status)
        raise ActionRefused(f"消息 {message_id} 当前状态为「{state}」，只有发送失败或已跳过的消息可以重发")
    record(session, actor, AuditAction.RESEND, now=now, target=str(message_id), kind=row.kind,
           recipient=mask_text(row.recipient_name or row.recipient), previous_status=row.status)
    row.status, row.attempts, row.next_attempt_at, row.last_error = PENDING, 0, now, None
    row.first_attempt_at = None  # a new retry window from the next try
    return row


def skip(session: Session, message_id: int, *, reason: str) -> None:
    session.execute(
        update(OutboxMessage).where(OutboxMessage.id == message_id, OutboxMessage.status == PENDING)
        .values(status=SKIPPED, last_error=reason)
    )
