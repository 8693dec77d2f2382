"""Apply a recorded batch. Idempotent: a second delivery finds the batch applied and does nothing."""

from __future__ import annotations

from celery import shared_task
from sqlalchemy.exc import OperationalError

from pipeline.runtime import get_runtime


@shared_task(
    name="pipeline.apply_batch",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def apply_batch_task(batch_id: int) -> None:
    rt = get_runtime()
    applied = rt.apply_delivered(batch_id)
    if applied is not None and not applied.already_done:
        # Red notices planned with the new flags leave now, not at the scheduler's next tick.
        from pipeline.tasks.dispatch import queue_outbox_sender

        queue_outbox_sender(rt)
