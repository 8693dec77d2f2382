"""The sweeper: find batches recorded but not applied in time, so they can be queued again."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from pipeline.clock import Clock
from pipeline.ingest.apply import FAILED
from pipeline.ingest.record import RECEIVED
from pipeline.models import ImportBatch


def batches_to_requeue(session: Session, *, older_than: timedelta, clock: Clock) -> list[int]:
    """Batches still waiting after ``older_than``; marks them queued now (the caller sends them)."""
    now = clock.now()
    cutoff = now - older_than
    ids = list(
        session.scalars(
            select(ImportBatch.id)
            .where(
                ImportBatch.status == RECEIVED,
                or_(ImportBatch.enqueued_at.is_(None), ImportBatch.enqueued_at < cutoff),
            )
            .order_by(ImportBatch.id)
        )
    )
    _set_enqueued_at(session, ids, now)
    return ids


def _set_enqueued_at(session: Session, batch_ids: list[int], at: datetime | None) -> None:
    if batch_ids:
        session.execute(update(ImportBatch).where(ImportBatch.id.in_(batch_ids)).values(enqueued_at=at))


def mark_enqueued(session: Session, batch_ids: list[int], *, clock: Clock) -> None:
    _set_enqueued_at(session, batch_ids, clock.now())


def mark_not_enqueued(session: Session, batch_ids: list[int]) -> None:
    """The batches' tasks never left: the sweeper takes them on its next round."""
    _set_enqueued_at(session, batch_ids, None)


def note_delivery(session: Session, batch_id: int, *, max_attempts: int) -> bool:
    """Count one delivery of a batch's task; False (and the batch failed) past ``max_attempts``.

    Late acks with reject-on-worker-lost redeliver a task whose worker died; a batch that kills its
    worker every time would loop forever. Counting deliveries in the database stops that loop.
    """
    batch = session.get(ImportBatch, batch_id, with_for_update=True)
    if batch is None or batch.status != RECEIVED:
        return batch is not None
    batch.attempts += 1
    if batch.attempts > max_attempts:
        batch.status = FAILED
        batch.error = f"处理中断已达 {max_attempts} 次，已停止重试，请检查该批次数据或联系运维人员"
        return False
    return True
