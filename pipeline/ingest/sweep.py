"""The sweeper's and the deliveries' bookkeeping on batches: what to queue again, what to count."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import exists, or_, select, text, update
from sqlalchemy.orm import Session

from pipeline.clock import Clock
from pipeline.models import ImportBatch
from pipeline.states import BatchStatus

RECEIVED = BatchStatus.RECEIVED.value


APPLY_LOCK_CLASS = 4218  # pg_advisory_lock(APPLY_LOCK_CLASS, batch id) is held while a batch applies


def batches_to_requeue(session: Session, *, older_than: timedelta, clock: Clock) -> list[int]:
    """Batches still waiting after ``older_than`` and not being applied right now; marks them queued
    now (the caller sends them)."""
    now = clock.now()
    cutoff = now - older_than
    q = (
        select(ImportBatch.id)
        .where(ImportBatch.status == RECEIVED,
               or_(ImportBatch.enqueued_at.is_(None), ImportBatch.enqueued_at < cutoff))
        .order_by(ImportBatch.id)
    )
    if session.get_bind().dialect.name == "postgresql":
        q = q.where(~exists(select(text("1")).select_from(text("pg_locks")).where(
            text("pg_locks.locktype = 'advisory' AND pg_locks.classid = :cls AND pg_locks.objsubid = 2 "
                 "AND pg_locks.objid = import_batches.id "
                 # this database's locks only: another database on the server has batches of its own
                 "AND pg_locks.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                 )).params(cls=APPLY_LOCK_CLASS)))
    ids = list(session.scalars(q))
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
    """Count one delivery that begins applying a waiting batch; False (nothing to do) when the batch
    is not waiting, or when it has begun ``max_attempts`` times already (it is then failed).

    Late acks with reject-on-worker-lost redeliver a task whose worker died; a batch that kills its
    worker every time would loop forever. Counting deliveries in the database stops that loop.
    """
    batch = session.get(ImportBatch, batch_id, with_for_update=True)
    if batch is None or batch.status != RECEIVED:
        return False
    if batch.attempts >= max_attempts:
        batch.status = BatchStatus.FAILED.value
        batch.error = f"处理中断已达 {max_attempts} 次，已停止重试；请检查该批次数据后重试（pipeline batches retry {batch_id}）"
        return False
    batch.attempts += 1
    return True


def give_back_delivery(session: Session, batch_id: int) -> None:
    """Take back the count of a delivery that failed for the infrastructure's sake, not the batch's."""
    session.execute(update(ImportBatch).where(ImportBatch.id == batch_id, ImportBatch.status == RECEIVED,
                                              ImportBatch.attempts > 0)
                    .values(attempts=ImportBatch.attempts - 1))
