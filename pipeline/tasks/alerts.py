"""Send what is due in the outbox. Idempotent: rows are claimed with a lease, sent rows are never re-sent."""

from __future__ import annotations

from celery import shared_task
from sqlalchemy.exc import OperationalError

from pipeline.alerts.sender import ChannelResolver, deliver_due
from pipeline.runtime import get_runtime


@shared_task(name="pipeline.deliver_outbox", acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True,
             max_retries=5)
def deliver_outbox_task() -> None:
    rt = get_runtime()
    s = rt.settings
    deliver_due(rt.session_factory, resolver=ChannelResolver(s), clock=rt.clock, max_attempts=s.alert_max_attempts,
                backoff_seconds=s.alert_backoff_seconds)
