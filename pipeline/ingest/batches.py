"""The office's handle on import batches: list them, and retry one that failed."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.errors import ActionRefused
from pipeline.models import ImportBatch
from pipeline.states import BatchStatus

STATUS_NAMES = {
    BatchStatus.RECEIVED: "等待处理", BatchStatus.APPLIED: "已入库", BatchStatus.FAILED: "处理失败",
    BatchStatus.REJECTED: "文件被拒收",
}


def list_batches(session: Session, *, status: BatchStatus | None = None, limit: int = 50) -> Sequence[ImportBatch]:
    q = select(ImportBatch).order_by(ImportBatch.id.desc()).limit(limit)
    if status is not None:
        q = q.where(ImportBatch.status == status.value)
    return session.scalars(q).all()


def retry_batch(session: Session, batch_id: int) -> ImportBatch:
    """Put a failed batch back in the queue with a fresh count of attempts (the caller hands it on)."""
    batch = session.get(ImportBatch, batch_id, with_for_update=True)
    if batch is None:
        raise ActionRefused(f"批次不存在：{batch_id}")
    if batch.status != BatchStatus.FAILED:
        state = STATUS_NAMES.get(BatchStatus(batch.status), batch.status)
        raise ActionRefused(f"批次 {batch_id} 当前状态为「{state}」，只有处理失败的批次可以重试")
    batch.status, batch.attempts, batch.error, batch.enqueued_at = BatchStatus.RECEIVED.value, 0, None, None
    session.flush()
    return batch
