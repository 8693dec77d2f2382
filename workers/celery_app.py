"""The Celery app, configured for at-least-once delivery with idempotent tasks.

Settings follow Celery's guidance for tasks that must survive a lost worker: acknowledge late,
reject (and so redeliver) when the worker is lost, take one message at a time. The poison-message
guard lives in the database (pipeline.ingest.sweep.note_delivery), since the broker cannot count.
"""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init

from pipeline.runtime import get_runtime, set_runtime
from pipeline.settings import Settings

INGEST_QUEUE = "pipeline.ingest"  # applying batches and re-flag chunks: the data path
ALERTS_QUEUE = "pipeline.alerts"  # the outbox senders: a slow mail server never holds up ingest
QUEUES = (INGEST_QUEUE, ALERTS_QUEUE)


def create_celery(settings: Settings) -> Celery:
    app = Celery("pipeline", broker=settings.effective_broker_url,
                 include=["pipeline.tasks.ingest", "pipeline.tasks.reflag", "pipeline.tasks.digests",
                          "pipeline.tasks.alerts"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=INGEST_QUEUE,
        task_routes={"pipeline.deliver_outbox": {"queue": ALERTS_QUEUE}},
        # A stuck task is stopped (its message goes back to the queue, its batch is counted).
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=max(1, settings.task_time_limit - 30),
        timezone=settings.timezone,
        enable_utc=True,
        broker_connection_retry_on_startup=True,
        # A broker outage is waited out however long it lasts (Celery's default gives up after 100 tries).
        broker_connection_max_retries=None,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
    )
    if settings.effective_broker_url.startswith(("redis", "rediss")):
        # Unacknowledged tasks return to the queue after this long (Redis has no per-consumer acks).
        app.conf.broker_transport_options = {"visibility_timeout": settings.visibility_timeout}
    app.set_default()
    return app


_apps: dict[str, Celery] = {}


def celery_for(settings: Settings) -> Celery:
    """The process's Celery app for these settings (built once, on first use)."""
    url = settings.effective_broker_url
    if url not in _apps:
        _apps[url] = create_celery(settings)
    app = _apps[url]
    app.set_default()
    return app


@worker_process_init.connect
def _fresh_runtime_after_fork(**_: object) -> None:
    """A forked pool process must not reuse the parent's database connections; it keeps the
    configuration the parent read and checked at start-up."""
    inherited = get_runtime()
    inherited.dispose()
    set_runtime(inherited.forked())
