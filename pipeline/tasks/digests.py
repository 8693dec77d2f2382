"""A review's digests made on the workers: one task per chunk (a range of project ids) to gather
them, then one task per part (the office's digest, a range of leaders) to render them."""

from __future__ import annotations

from datetime import date

from celery import shared_task
from sqlalchemy.exc import OperationalError

from pipeline.runtime import get_runtime


@shared_task(name="pipeline.digest_chunk", acks_late=True, reject_on_worker_lost=True,
             autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def digest_chunk_task(review: str, chunk: int) -> None:
    from pipeline.tasks.dispatch import enqueue_digest_parts

    runtime = get_runtime()
    day = date.fromisoformat(review)
    parts = runtime.run_digest_chunk(day, chunk)
    if parts:  # this chunk completed the gathering (a fault here is the sweeper's to mend)
        enqueue_digest_parts(runtime, day, parts)


@shared_task(name="pipeline.digest_part", acks_late=True, reject_on_worker_lost=True,
             autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def digest_part_task(review: str, part: int) -> None:
    get_runtime().render_digest_part(date.fromisoformat(review), part)
