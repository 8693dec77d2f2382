"""The whole-reserve run on the workers: one task per chunk (a range of project ids)."""

from __future__ import annotations

from celery import shared_task
from sqlalchemy.exc import OperationalError

from pipeline.runtime import get_runtime


@shared_task(name="pipeline.reflag_chunk", acks_late=True, reject_on_worker_lost=True,
             autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def reflag_chunk_task(run_id: int, chunk: int) -> None:
    rt = get_runtime()
    rt.run_reflag_chunk(run_id, chunk)
