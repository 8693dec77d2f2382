"""The whole-reserve run (the nightly re-flag): close the month ends on or before D, then re-flag
every project as of D, in chunks (ranges of project ids) that any worker may run, in parallel.

A run is planned once (``plan_run``: a ``ReflagRun`` row with its months, its chunk size and its
chunks); each chunk (``run_chunk``) closes the run's months for its ids, oldest first, and reads
them under its lock (``read_chunk``), then re-flags them and records itself in the same
transaction as its writes (``finish_chunk``), so a redelivered chunk task finds its chunk done and
does nothing. A run in one process on PostgreSQL reads each chunk while it writes the one before
(pipeline.runtime). The chunk that completes the run records the closed months
and the evaluation date (``finish_run``); the caller then plans the red notices, once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

import polars as pl
from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from pipeline.clock import Clock
from pipeline.meta import LAST_EVALUATED, set_meta
from pipeline.models import MonthClose, ReflagChunk, ReflagRun
from pipeline.months import close_month, months_to_close
from pipeline.reflag import (
    ReflagOutcome,
    chunk_scope,
    evaluate_scope,
    lock_chunk,
    read_scope,
    reserve_chunks,
    write_flags,
)
from pipeline.rules import Scheme, previous_month_end
from pipeline.rules.columnar import CompiledScheme
from pipeline.snapshot import Scope
from pipeline.trends import fill_trends

RUNNING, DONE = "running", "done"


@dataclass(frozen=True)
class RunPlan:
    run_id: int
    as_of: date
    months: tuple[date, ...]
    chunks: tuple[int, ...]


def plan_run(session: Session, *, as_of: date, scheme: Scheme, cause: str, clock: Clock,
             chunk_size: int) -> RunPlan:
    """Plan a run as of D: the months it closes and its chunks of ``chunk_size`` project ids."""
    months = tuple(months_to_close(session, as_of, scheme))
    chunks = tuple(reserve_chunks(session, chunk_size))
    run = ReflagRun(as_of=as_of, cause=cause, months=[m.isoformat() for m in months], chunk_size=chunk_size,
                    chunks=len(chunks), done_chunks=0, status=RUNNING, started_at=clock.now())
    session.add(run)
    session.flush()
    if not chunks:
        finish_run(session, run, scheme=scheme, clock=clock)
    return RunPlan(run.id, as_of, months, chunks)


@dataclass(frozen=True)
class ChunkRead:
    """A chunk of a run read under its re-flag lock, the run's months closed for it: what
    ``finish_chunk`` evaluates and writes, in the same transaction."""

    run_id: int
    chunk: int
    scope: Scope
    as_of: date
    cause: str
    closed_before: bool | None  # whether the month before D is closed for the chunk (None: look)
    frame: pl.DataFrame  # read_scope(..., stored=True)


def read_chunk(session: Session, run_id: int, chunk: int, *, scheme: Scheme,
               compiled: CompiledScheme) -> ChunkRead | None:
    """Take the chunk's lock, close the run's months for it (oldest first) and read it; None when
    the run is gone or the chunk was done before."""
    run = session.get(ReflagRun, run_id)
    if run is None:
        return None
    lock_chunk(session, chunk, run.chunk_size)
    if session.get(ReflagChunk, (run_id, chunk)) is not None:
        return None
    scope = chunk_scope(chunk, run.chunk_size)
    months = [date.fromisoformat(m) for m in run.months]
    for i, month in enumerate(months):
        close_month(session, scope, month, scheme=scheme, compiled=compiled,
                    previous_closed=True if i and months[i - 1] == previous_month_end(month) else None)
    closed_before = True if months and months[-1] == previous_month_end(run.as_of) else None
    return ChunkRead(run_id, chunk, scope, run.as_of, run.cause, closed_before,
                     read_scope(session, scope, run.as_of, stored=True))


def finish_chunk(session: Session, read: ChunkRead, *, scheme: Scheme, compiled: CompiledScheme, clock: Clock,
                 notify: Callable[[Sequence[int]], object] | None = None) -> tuple[ReflagOutcome, bool]:
    """Evaluate a chunk read by ``read_chunk`` (in the same transaction), write what changed,
    plan the red notices of the projects it turned red (``notify``) and record the chunk done.
    Returns the outcome and whether this chunk completed the run.

    The run's row is counted last, so that chunks running in parallel wait on it only for the
    moment between that count and their commit, not while planning their notices."""
    evaluated = evaluate_scope(session, read.scope, read.as_of, scheme=scheme, compiled=compiled,
                               previous_closed=read.closed_before, stored=True, frame=read.frame)
    outcome = write_flags(session, evaluated, as_of=read.as_of, scheme=scheme, clock=clock, cause=read.cause)
    if notify is not None and outcome.turned_red:
        notify(outcome.turned_red)
    session.add(ReflagChunk(run_id=read.run_id, chunk=read.chunk, evaluated=outcome.evaluated, changed=outcome.changed,
                            finished_at=clock.now()))
    session.flush()
    done, total = session.execute(text(
        "UPDATE reflag_runs SET done_chunks = done_chunks + 1 WHERE id = :id RETURNING done_chunks, chunks"),
        {"id": read.run_id}).one()
    finished = done >= total
    if finished:
        run = session.get(ReflagRun, read.run_id)
        session.refresh(run)
        finish_run(session, run, scheme=scheme, clock=clock)
    return outcome, finished


def run_chunk(session: Session, run_id: int, chunk: int, *, scheme: Scheme, compiled: CompiledScheme,
              clock: Clock, notify: Callable[[Sequence[int]], object] | None = None
              ) -> tuple[ReflagOutcome | None, bool]:
    """Close the run's months for one chunk, then re-flag it as of the run's date, under the
    chunk's lock (``read_chunk``, then ``finish_chunk``). Returns the outcome (None when the chunk
    was done before) and whether this chunk completed the run."""
    read = read_chunk(session, run_id, chunk, scheme=scheme, compiled=compiled)
    if read is None:
        return None, False
    return finish_chunk(session, read, scheme=scheme, compiled=compiled, clock=clock, notify=notify)


def finish_run(session: Session, run: ReflagRun, *, scheme: Scheme, clock: Clock) -> None:
    """Record the months the run closed (and keep their trend) and the date the reserve is now
    evaluated as of."""
    now = clock.now()
    for iso in run.months:
        month = date.fromisoformat(iso)
        session.execute(delete(MonthClose).where(MonthClose.month_end == month))
        session.add(MonthClose(month_end=month, scheme=scheme.name, scheme_version=scheme.version, closed_at=now))
    fill_trends(session, [date.fromisoformat(iso) for iso in run.months], now=now)  # the closed months' trend
    set_meta(session, LAST_EVALUATED, run.as_of.isoformat())
    run.status, run.finished_at = DONE, now
    session.flush()


def running_run(session: Session, as_of: date) -> int | None:
    """A run as of D still under way (so a second start joins it rather than starting another)."""
    return session.scalar(select(ReflagRun.id).where(ReflagRun.as_of == as_of, ReflagRun.status == RUNNING)
                          .order_by(ReflagRun.id.desc()).limit(1))
