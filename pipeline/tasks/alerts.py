"""Send what is due in the outbox. Idempotent: rows are claimed with a lease, sent rows are never re-sent."""

from __future__ import annotations

from celery import shared_task
from sqlalchemy.exc import OperationalError

from pipeline.runtime import get_runtime


@shared_task(name="pipeline.deliver_outbox", acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True,
             max_retries=5)
def deliver_outbox_task() -> None:
    from pipeline.tasks.dispatch import deliver_now  # dispatch queues this task: import at call time

    deliver_now(get_runtime())
