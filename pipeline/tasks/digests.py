"""A review's digests gathered on the workers: one task per chunk (a range of project ids)."""

from __future__ import annotations

from datetime import date

from celery import shared_task
from sqlalchemy.exc import OperationalError

from pipeline.runtime import get_runtime


@shared_task(name="pipeline.digest_chunk", acks_late=True, reject_on_worker_lost=True,
             autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def digest_chunk_task(review: str, chunk: int) -> None:
    get_runtime().run_digest_chunk(date.fromisoformat(review), chunk)
