"""A review's digests gathered by chunk tasks on the workers (province and national scale, SPEC §8).

The scheduler holding the lease starts a run (``start_digest_run``: a ``DigestRun`` row with its
chunks of project ids) instead of planning the review itself. Each chunk task (``gather_chunk``)
evaluates its projects as of the review's two digest days and stores its share of the digests
(counts and rate sums, red and yellow projects, changes, outlook: pipeline.alerts.digests) in
the same transaction that counts it, so a redelivered task finds its chunk stored and does
nothing. The chunk that completes the set plans the review's messages from the shares
(``finish_digest_run``, under the run's row lock: once), exactly as planning in one process
would; the sweeper queues again the chunks of a run left unfinished and finishes a run whose
chunks are all stored.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date, datetime

import polars as pl
from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import Session

from pipeline.alerts.calendar import ReviewCalendar
from pipeline.alerts.digests import gather_share, material_of
from pipeline.alerts.planning import AlertContext, plan_review, record_missed
from pipeline.alerts.review_data import digest_dates
from pipeline.clock import Clock
from pipeline.models import DigestPart, DigestRun
from pipeline.reflag import chunk_scope, reserve_chunks
from pipeline.rules import Scheme
from pipeline.rules.columnar import CompiledScheme

RUNNING, DONE = "running", "done"


def start_digest_run(session: Session, *, review: date, current: date, send_at: datetime, chunk_size: int,
                     clock: Clock) -> tuple[int, ...]:
    """Record a run for ``review`` (planned on the evaluation date ``current``) and return its
    chunks, to be queued once this transaction commits."""
    chunks = tuple(reserve_chunks(session, chunk_size))  # consecutive
    session.add(DigestRun(review_date=review, current=current, chunk_size=chunk_size,
                          first_chunk=chunks[0] if chunks else 0, chunks=len(chunks), done_chunks=0, status=RUNNING,
                          send_at=send_at, started_at=clock.now()))
    session.flush()
    return chunks


def _chunks(run: DigestRun) -> range:
    return range(run.first_chunk, run.first_chunk + run.chunks)


def _stored(session: Session, review: date, chunk: int) -> bool:
    return bool(session.scalar(select(exists().where(DigestPart.review_date == review, DigestPart.chunk == chunk))))


def gather_chunk(session: Session, review: date, chunk: int, *, calendar: ReviewCalendar, scheme: Scheme,
                 compiled: CompiledScheme) -> bool:
    """Gather one chunk's share of the run's digests and count it; returns whether the run now has
    every chunk (the caller then finishes it, in a transaction of its own)."""
    run = session.get(DigestRun, review)
    if run is None or run.status != RUNNING or chunk not in _chunks(run) or _stored(session, review, chunk):
        return False
    share = gather_share(session, digest_dates(calendar, review), chunk_scope(chunk, run.chunk_size), scheme=scheme,
                         current=run.current, compiled=compiled)
    session.add_all(DigestPart(review_date=review, chunk=chunk, part=name, content=_ipc(frame))
                    for name, frame in share.items())
    session.flush()
    done = session.execute(update(DigestRun).where(DigestRun.review_date == review)
                           .values(done_chunks=DigestRun.done_chunks + 1).returning(DigestRun.done_chunks)).scalar_one()
    return done >= run.chunks


def finish_digest_run(session: Session, review: date, *, calendar: ReviewCalendar, ctx: AlertContext) -> int | None:
    """Plan the review's messages from every chunk's share, once (under the run's row lock);
    returns the new messages, or None when the run is not complete or was finished before. A run
    completed only once its review has been held (the workers were down till then) is recorded as
    missed, as the scheduler records a digest it could not plan in time."""
    run = session.scalars(select(DigestRun).where(DigestRun.review_date == review).with_for_update()).first()
    if run is None or run.status != RUNNING or run.done_chunks < run.chunks:
        return None
    if ctx.now.astimezone(calendar.tz).date() >= review:
        record_missed(session, review, send_at=run.send_at, now=ctx.now)
        planned = 0
    else:
        material = material_of(session, digest_dates(calendar, review), _shares(session, review), scheme=ctx.scheme,
                               current=run.current)
        planned = plan_review(session, review=review, calendar=calendar, current=run.current, ctx=ctx,
                              send_at=run.send_at, material=material)
    session.execute(delete(DigestPart).where(DigestPart.review_date == review))
    run.status, run.finished_at = DONE, ctx.now
    session.flush()
    return planned


def _shares(session: Session, review: date) -> Iterator[dict[str, pl.DataFrame]]:
    """Each stored chunk's share, one chunk at a time."""
    share: dict[str, pl.DataFrame] = {}
    chunk = None
    rows = session.execute(select(DigestPart.chunk, DigestPart.part, DigestPart.content)
                           .where(DigestPart.review_date == review).order_by(DigestPart.chunk, DigestPart.part)
                           .execution_options(yield_per=16))  # streamed: never every share's bytes at once
    for row in rows:
        if row.chunk != chunk and share:
            yield share
            share = {}
        chunk = row.chunk
        share[row.part] = pl.read_ipc(io.BytesIO(row.content))
    if share:
        yield share


def unfinished_runs(session: Session, *, started_before: datetime) -> list[tuple[date, list[int]]]:
    """Runs still running that started before the given time, each with its chunks not yet stored."""
    found = []
    for run in session.scalars(select(DigestRun).where(DigestRun.status == RUNNING,
                                                       DigestRun.started_at < started_before)):
        stored = set(session.scalars(select(DigestPart.chunk).where(DigestPart.review_date == run.review_date)))
        found.append((run.review_date, [c for c in _chunks(run) if c not in stored]))
    return found


def _ipc(frame: pl.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.write_ipc(out)
    return out.getvalue()


__all__ = ["DONE", "RUNNING", "finish_digest_run", "gather_chunk", "start_digest_run", "unfinished_runs"]
