"""Hand recorded work on after its transaction has committed: to the workers, or, on embedded
defaults, to this process (the embedded worker and sender)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any

from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import select

from pipeline.alerts.sender import (
    ChannelResolver,
    DatabaseWait,
    DeliveryReport,
    SenderThread,
    deliver_due,
    retry_policy,
)
from pipeline.db import session_scope
from pipeline.ingest.record import RECEIVED
from pipeline.ingest.sweep import batches_to_requeue, mark_enqueued, mark_not_enqueued
from pipeline.models import ImportBatch
from pipeline.nightly import RunPlan
from pipeline.reflag import ReflagOutcome
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
    """The embedded worker: apply batches in this process (the same idempotent call as the task),
    and any other batch still waiting (one the broker lost)."""
    for batch_id in sorted(set(batch_ids) | set(pending_batches(runtime))):
        runtime.apply_delivered(batch_id)


def deliver_now(runtime: Runtime, wait: DatabaseWait | None = None) -> DeliveryReport:
    """Send what is due in the outbox, in this process (the embedded sender and the sender task);
    a database outage is waited out."""
    s = runtime.settings
    return deliver_due(runtime.session_factory, resolver=ChannelResolver(s), clock=runtime.clock,
                       retry=retry_policy(s), claim=s.alert_claim, wait=wait)


def start_embedded_sender(runtime: Runtime) -> SenderThread:
    """The embedded sender of `pipeline run`: a thread of its own, woken by the scheduler."""
    sender = SenderThread(lambda wait: deliver_now(runtime, wait))
    sender.start()
    return sender


def queue_outbox_sender(runtime: Runtime) -> None:
    """Queue the sender task; with the broker down, log it: the scheduler queues it again next tick."""
    from pipeline.tasks.alerts import deliver_outbox_task

    celery_for(runtime.settings)
    try:
        deliver_outbox_task.apply_async(retry=False)
    except (BrokerError, OSError) as exc:
        log.warning("could not queue the outbox sender, the scheduler will: %s", exc)


def hand_over_outbox(runtime: Runtime) -> None:
    """Get due messages sent: queue the sender task in production, send here on embedded defaults."""
    if runtime.settings.is_embedded:
        deliver_now(runtime)
    else:
        queue_outbox_sender(runtime)


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
    """Re-queue the batches recorded but not applied within the configured time (and the chunks
    of whole-reserve runs and of digest runs left unfinished)."""
    requeue_stale_runs(runtime)
    requeue_stale_digest_runs(runtime)
    with session_scope(runtime.session_factory) as session:
        ids = batches_to_requeue(
            session, older_than=timedelta(seconds=runtime.settings.sweep_after_seconds), clock=runtime.clock
        )
    if ids:
        enqueue_batches(runtime, ids)
    return ids


def reflag_if_new_day(runtime: Runtime) -> bool:
    """The nightly re-flag: once the evaluation date moves on (STALE and overdue days grow), re-flag
    all (on the workers in parallel when there is more than one chunk and a broker)."""
    from pipeline.meta import LAST_EVALUATED, evaluation_date, get_meta
    from pipeline.nightly import running_run

    with session_scope(runtime.session_factory) as session:
        d = evaluation_date(session, runtime.clock)
        if get_meta(session, LAST_EVALUATED) == d.isoformat() or running_run(session, d) is not None:
            return False
    start_reflag(runtime, as_of=d)
    return True


def start_reflag(runtime: Runtime, *, as_of: date | None = None, parallel: bool | None = None,
                 cause: str = "reflag") -> RunPlan | ReflagOutcome:
    """Re-flag the whole reserve: in this process, or (``parallel``; by default when a broker is
    configured and the reserve spans more than one chunk) as chunk tasks that every worker runs."""
    from pipeline.meta import evaluation_date
    from pipeline.nightly import plan_run
    from pipeline.reflag import reserve_chunks

    size = runtime.settings.reflag_chunk_size
    with session_scope(runtime.session_factory) as session:
        chunks = len(reserve_chunks(session, size))
        d = as_of or evaluation_date(session, runtime.clock)
    if parallel is None:
        parallel = not runtime.settings.is_embedded and chunks > 1
    if not parallel:
        return runtime.reflag_reserve(as_of=d, cause=cause)
    with session_scope(runtime.session_factory) as session:
        plan = plan_run(session, as_of=d, scheme=runtime.scheme, cause=cause, clock=runtime.clock, chunk_size=size)
    enqueue_chunks(runtime, plan.run_id, plan.chunks)
    return plan


def enqueue_chunks(runtime: Runtime, run_id: int, chunks: Sequence[int]) -> int:
    """One task per chunk of a re-flag run."""
    from pipeline.tasks.reflag import reflag_chunk_task

    return _queue_each(runtime, reflag_chunk_task, [[run_id, chunk] for chunk in chunks])


def _queue_each(runtime: Runtime, task: Any, calls: Sequence[list[Any]]) -> int:
    """``task`` queued once per argument list, in order; a broker fault is logged and the rest is
    left to the sweeper (``requeue_stale_runs``, ``requeue_stale_digest_runs``). Returns how many went."""
    celery_for(runtime.settings)
    sent = 0
    for args in calls:
        try:
            task.apply_async(args=args, retry=False)
        except (BrokerError, OSError) as exc:
            log.warning("could not queue %s%s, the sweeper will: %s", task.name, tuple(args), exc)
            break
        sent += 1
    return sent


def requeue_stale_runs(runtime: Runtime) -> int:
    """Queue again the chunks not yet done of runs started longer ago than the sweep delay (their
    tasks were lost with a broker, or their worker died); chunk tasks are idempotent."""
    from pipeline.models import ReflagChunk, ReflagRun
    from pipeline.nightly import RUNNING
    from pipeline.reflag import reserve_chunks

    cutoff = runtime.clock.now() - timedelta(seconds=runtime.settings.sweep_after_seconds)
    with session_scope(runtime.session_factory) as session:
        stale = list(session.execute(select(ReflagRun.id, ReflagRun.chunk_size).where(
            ReflagRun.status == RUNNING, ReflagRun.started_at < cutoff)).tuples())
        chunks = {size: reserve_chunks(session, size) for size in {s for _, s in stale}}
        done = {(r, c) for r, c in session.execute(select(ReflagChunk.run_id, ReflagChunk.chunk).where(
            ReflagChunk.run_id.in_([r for r, _ in stale])))} if stale else set()
    return sum(_catch_up(runtime, [c for c in chunks[size] if (run_id, c) not in done],
                         lambda chunk, r=run_id: runtime.run_reflag_chunk(r, chunk),
                         lambda missing, r=run_id: enqueue_chunks(runtime, r, missing))
               for run_id, size in stale)


def _catch_up(runtime: Runtime, missing: Sequence[int], run_here: Callable[[int], object],
              queue: Callable[[Sequence[int]], int]) -> int:
    """A run's chunks left undone: run here on embedded defaults, queued for the workers otherwise."""
    if not missing:
        return 0
    if not runtime.settings.is_embedded:
        return queue(missing)
    for chunk in missing:
        run_here(chunk)
    return len(missing)


def enqueue_digest_chunks(runtime: Runtime, review: date, chunks: Sequence[int]) -> int:
    """One task per chunk of a review's digest run."""
    from pipeline.tasks.digests import digest_chunk_task

    return _queue_each(runtime, digest_chunk_task, [[review.isoformat(), chunk] for chunk in chunks])


def enqueue_digest_parts(runtime: Runtime, review: date, parts: Sequence[int]) -> int:
    """One task per part of a review's rendering."""
    from pipeline.tasks.digests import digest_part_task

    return _queue_each(runtime, digest_part_task, [[review.isoformat(), part] for part in parts])


def requeue_stale_digest_runs(runtime: Runtime) -> int:
    """For digest runs started longer ago than the sweep delay: queue again the chunks not yet
    stored, divide a run whose chunks are all stored (its finishing worker died) and queue its
    parts, and queue again the parts not yet rendered. Chunk and part tasks are idempotent, and a
    run is divided once."""
    from pipeline.alerts.digest_runs import stale_runs

    cutoff = runtime.clock.now() - timedelta(seconds=runtime.settings.sweep_after_seconds)
    with session_scope(runtime.session_factory) as session:
        gathering, rendering = stale_runs(session, started_before=cutoff)
    queued = 0
    for review, missing in gathering:
        if not missing:  # every share stored, the run never divided: its finishing worker died
            rendering.append((review, list(runtime.finish_digest_run(review))))
        queued += _catch_up(runtime, missing, lambda chunk, r=review: _gather_here(runtime, r, chunk),
                            lambda chunks, r=review: enqueue_digest_chunks(runtime, r, chunks))
    for review, parts in rendering:
        queued += _catch_up(runtime, parts, lambda part, r=review: runtime.render_digest_part(r, part),
                            lambda missing, r=review: enqueue_digest_parts(runtime, r, missing))
    return queued


def _gather_here(runtime: Runtime, review: date, chunk: int) -> None:
    """A chunk gathered in this process (embedded defaults); the parts it leaves are rendered here."""
    for part in runtime.run_digest_chunk(review, chunk):
        runtime.render_digest_part(review, part)
