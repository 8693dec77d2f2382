"""The outbox: every send is a row with a unique key; senders claim rows with a lease.

A message is planned once (its key is unique: recipient, kind, review or red episode), claimed by
one sender at a time, and marked sent, retried later with exponential backoff, or failed with its
error after the configured number of attempts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.orm import Session

from pipeline.alerts.channels.base import Attachment, DeliveryError, DeliveryReceipt, OutgoingMessage
from pipeline.errors import ActionRefused
from pipeline.db import dialect_insert
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
    secret_env: str | None = None  # the environment variable holding a webhook's signing secret


def enqueue(session: Session, messages: Sequence[PlannedMessage], *, now: datetime) -> list[int]:
    """Insert the messages whose key is new; a key planned before is left as it is. Returns new ids."""
    new_ids: list[int] = []
    for m in messages:
        stmt = (
            dialect_insert(session, OutboxMessage)
            .values(
                key=m.key, kind=m.kind, channel=m.channel, recipient=m.recipient, recipient_name=m.recipient_name,
                subject=m.subject, body_text=m.body_text, body_html=m.body_html, payload=m.payload,
                review_date=m.review_date, project_id=m.project_id, episode_change_id=m.episode_change_id,
                status=PENDING, attempts=0, next_attempt_at=now, created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(OutboxMessage.id)
        )
        new_id = session.scalar(stmt)
        if new_id is None:
            continue
        new_ids.append(new_id)
        if m.attachments:
            session.execute(insert(OutboxAttachment), [
                {"message_id": new_id, "filename": a.filename, "mime": a.mime, "content": a.content}
                for a in m.attachments
            ])
    return new_ids


def claim_due(session: Session, *, owner: str, now: datetime, lease: timedelta, limit: int = 20) -> list[Claimed]:
    """Claim up to ``limit`` messages due now, or whose previous claim has lapsed.

    The UPDATE is the claim, not the SELECT before it: it only takes rows still pending (or whose
    lease ran out), so two senders never hold the same row; PostgreSQL skips rows another sender
    is claiming at that moment.
    """
    due = or_(
        and_(OutboxMessage.status == PENDING, OutboxMessage.next_attempt_at <= now),
        and_(OutboxMessage.status == SENDING, OutboxMessage.lease_until < now),
    )
    candidates = select(OutboxMessage.id).where(due).order_by(OutboxMessage.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    ids = list(session.scalars(candidates))
    if not ids:
        return []
    claimed = list(session.scalars(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), due)
        .values(status=SENDING, lease_owner=owner, lease_until=now + lease)
        .returning(OutboxMessage.id)
    ))
    return [load_claimed(session, i) for i in sorted(claimed)]


def load_claimed(session: Session, message_id: int) -> Claimed:
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
    return Claimed(row.id, row.channel, message, row.attempts, secret_env)


def backoff(attempts: int, *, base_seconds: int, cap_seconds: int = 3600) -> timedelta:
    """Exponential backoff: base, 2×base, 4×base … capped."""
    return timedelta(seconds=min(cap_seconds, base_seconds * 2 ** max(0, attempts - 1)))


def _record_attempt(session: Session, message_id: int, *, now: datetime, ok: bool, retryable: bool,
                    status_code: int | None, detail: str, duration_ms: int | None) -> None:
    session.execute(insert(DeliveryAttempt).values(
        message_id=message_id, attempted_at=now, ok=ok, retryable=retryable, status_code=status_code,
        detail=detail[:500], duration_ms=duration_ms,
    ))


def mark_sent(session: Session, message_id: int, *, owner: str, receipt: DeliveryReceipt, now: datetime) -> bool:
    """Record a delivery; False when the claim had lapsed and another sender took the row."""
    done = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.status == SENDING, OutboxMessage.lease_owner == owner)
        .values(status=SENT, sent_at=now, attempts=OutboxMessage.attempts + 1, last_error=None, lease_until=None)
    ).rowcount
    _record_attempt(session, message_id, now=now, ok=True, retryable=False, status_code=receipt.status_code,
                    detail=receipt.detail, duration_ms=receipt.duration_ms)
    return bool(done)


def mark_attempt_failed(
    session: Session, message_id: int, *, owner: str, error: DeliveryError, now: datetime, max_attempts: int,
    backoff_seconds: int, duration_ms: int | None = None,
) -> str:
    """Schedule a retry with backoff, or fail the row for good; returns the new status."""
    row = session.get(OutboxMessage, message_id, with_for_update=True)
    assert row is not None
    _record_attempt(session, message_id, now=now, ok=False, retryable=error.retryable,
                    status_code=error.status_code, detail=str(error), duration_ms=duration_ms)
    if row.status != SENDING or row.lease_owner != owner:
        return row.status
    row.attempts += 1
    row.last_error = str(error)[:1000]
    row.lease_owner = row.lease_until = None
    if error.retryable and row.attempts < max_attempts:
        row.status = PENDING
        row.next_attempt_at = now + backoff(row.attempts, base_seconds=backoff_seconds)
    else:
        row.status = FAILED
    return row.status


def resend(session: Session, message_id: int, *, now: datetime) -> OutboxMessage:
    """Put a failed (or skipped) message back in the queue, to be sent once more."""
    row = session.get(OutboxMessage, message_id, with_for_update=True)
    if row is None:
        raise ActionRefused(f"消息不存在：{message_id}")
    if row.status not in (FAILED, SKIPPED):
        state = {PENDING: "等待发送", SENDING: "正在发送", SENT: "已发送"}.get(row.status, row.status)
        raise ActionRefused(f"消息 {message_id} 当前状态为「{state}」，只有发送失败或已跳过的消息可以重发")
    row.status, row.attempts, row.next_attempt_at, row.last_error = PENDING, 0, now, None
    return row


def skip(session: Session, message_id: int, *, reason: str) -> None:
    session.execute(
        update(OutboxMessage).where(OutboxMessage.id == message_id, OutboxMessage.status == PENDING)
        .values(status=SKIPPED, last_error=reason)
    )
