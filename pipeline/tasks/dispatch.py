"""Hand recorded work on after its transaction has committed: to the workers, or, on embedded
defaults, to this process (the embedded worker and sender)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import select

from pipeline.alerts.sender import ChannelResolver, DeliveryReport, deliver_due
from pipeline.db import session_scope
from pipeline.ingest.record import RECEIVED
from pipeline.ingest.sweep import batches_to_requeue, mark_enqueued, mark_not_enqueued
from pipeline.models import ImportBatch
from pipeline.runtime import Runtime
from workers.celery_app import celery_for

log = logging.getLogger(__name__)


def pending_batches(runtime: Runtime, batch_ids: Sequence[int] | None = None) -> list[int]:
    """Batches recorded and still waiting to be applied (of those given, or all)."""
    with session_scope(runtime.session_factory) as session:
        q = select(ImportBatch.id).where(ImportBatch.status == RECEIVED).order_by(ImportBatch.id)
        if batch_ids is not None:
            q = q.where(ImportBatch.id.in_(list(batch_ids)))
        return list(session.scalars(q))


def apply_inline(runtime: Runtime, batch_ids: Sequence[int]) -> None:
    """The embedded worker: apply batches in this process (the same idempotent call as the task)."""
    if batch_ids:
        runtime.apply_through(max(batch_ids))


def deliver_now(runtime: Runtime) -> DeliveryReport:
    """Send what is due in the outbox, in this process (the embedded sender and the sender task)."""
    s = runtime.settings
    return deliver_due(runtime.session_factory, resolver=ChannelResolver(s), clock=runtime.clock,
                       max_attempts=s.alert_max_attempts, backoff_seconds=s.alert_backoff_seconds,
                       claim=timedelta(seconds=s.alert_claim_seconds))


def hand_over_outbox(runtime: Runtime) -> None:
    """Get due messages sent: queue the sender task in production, send here on embedded defaults."""
    if runtime.settings.is_embedded:
        deliver_now(runtime)
        return
    from pipeline.tasks.alerts import deliver_outbox_task

    celery_for(runtime.settings)
    try:
        deliver_outbox_task.apply_async(retry=False)
    except (BrokerError, OSError) as exc:
        log.warning("could not queue the outbox sender, the scheduler will: %s", exc)


def dispatch_batches(runtime: Runtime, batch_ids: Sequence[int]) -> int:
    """After the batches' transaction has committed: queue them for the workers, or, on embedded
    defaults, apply them here and send the red notices they raise. Returns how many were handed on."""
    if not batch_ids:
        return 0
    if runtime.settings.is_embedded:
        apply_inline(runtime, batch_ids)
        deliver_now(runtime)
        return len(batch_ids)
    return enqueue_batches(runtime, batch_ids)


def enqueue_batches(runtime: Runtime, batch_ids: Sequence[int]) -> int:
    """Send one apply task per batch; a broker fault is logged and left to the sweeper.

    The batches are marked queued before their tasks go out: once a task is out, a worker may
    hold the batch's row for the length of its apply, and this call must not wait on it.
    """
    from pipeline.tasks.ingest import apply_batch_task

    celery_for(runtime.settings)
    with session_scope(runtime.session_factory) as session:
        mark_enqueued(session, list(batch_ids), clock=runtime.clock)
    sent: list[int] = []
    for batch_id in batch_ids:
        try:
            apply_batch_task.apply_async(args=[batch_id], retry=False)
        except (BrokerError, OSError) as exc:
            log.warning("could not queue batch %s, the sweeper will: %s", batch_id, exc)
            break
        sent.append(batch_id)
    unsent = list(batch_ids[len(sent):])
    if unsent:  # never handed to a worker, so no worker holds them: due for the sweeper at once
        with session_scope(runtime.session_factory) as session:
            mark_not_enqueued(session, unsent)
    return len(sent)


def sweep_once(runtime: Runtime) -> list[int]:
    """Re-queue the batches recorded but not applied within the configured time."""
    from datetime import timedelta

    with session_scope(runtime.session_factory) as session:
        ids = batches_to_requeue(
            session, older_than=timedelta(seconds=runtime.settings.sweep_after_seconds), clock=runtime.clock
        )
    if ids:
        enqueue_batches(runtime, ids)
    return ids


def reflag_if_new_day(runtime: Runtime) -> bool:
    """The nightly re-flag: once the evaluation date moves on (STALE and overdue days grow), re-flag all."""
    from pipeline.meta import LAST_EVALUATED, evaluation_date, get_meta

    with session_scope(runtime.session_factory) as session:
        d = evaluation_date(session, runtime.clock)
        if get_meta(session, LAST_EVALUATED) == d.isoformat():
            return False
        runtime.reflag(session, as_of=d)
        return True
