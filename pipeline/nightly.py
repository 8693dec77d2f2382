"""The whole-reserve run (the nightly re-flag): close the month ends on or before D, then re-flag
every project as of D, in chunks (ranges of project ids) that any worker may run, in parallel.

A run is planned once (``plan_run``: a ``ReflagRun`` row with its months, its chunk size and its
chunks); each chunk (``run_chunk``) closes the run's months for its ids, oldest first, then
re-flags them, and records itself in the same transaction as its writes, so a redelivered chunk task
finds its chunk done and does nothing. The chunk that completes the run records the closed months
and the evaluation date (``finish_run``); the caller then plans the red notices, once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from pipeline.clock import Clock
from pipeline.meta import LAST_EVALUATED, set_meta
from pipeline.models import MonthClose, ReflagChunk, ReflagRun
from pipeline.months import close_month, months_to_close
from pipeline.reflag import ReflagOutcome, chunk_scope, evaluate_scope, lock_chunk, reserve_chunks, write_flags
from pipeline.rules import Scheme, previous_month_end
from pipeline.rules.columnar import CompiledScheme
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


def run_chunk(session: Session, run_id: int, chunk: int, *, scheme: Scheme, compiled: CompiledScheme,
              clock: Clock, notify: Callable[[Sequence[int]], object] | None = None
              ) -> tuple[ReflagOutcome | None, bool]:
    """Close the run's months for one chunk, then re-flag it as of the run's date, under the
    chunk's lock; ``notify`` plans the red notices of the projects it turned red. Returns the
    outcome (None when the chunk was done before) and whether this chunk completed the run.

    The run's row is counted last, so that chunks running in parallel wait on it only for the
    moment between that count and their commit, not while planning their notices."""
    run = session.get(ReflagRun, run_id)
    if run is None:
        return None, False
    lock_chunk(session, chunk, run.chunk_size)
    if session.get(ReflagChunk, (run_id, chunk)) is not None:
        return None, False
    scope = chunk_scope(chunk, run.chunk_size)
    months = [date.fromisoformat(m) for m in run.months]
    for i, month in enumerate(months):
        close_month(session, scope, month, scheme=scheme, compiled=compiled,
                    previous_closed=True if i and months[i - 1] == previous_month_end(month) else None)
    as_of = run.as_of
    closed_before = True if months and months[-1] == previous_month_end(as_of) else None
    evaluated = evaluate_scope(session, scope, as_of, scheme=scheme, compiled=compiled, previous_closed=closed_before,
                               stored=True)
    outcome = write_flags(session, evaluated, as_of=as_of, scheme=scheme, clock=clock, cause=run.cause)
    if notify is not None and outcome.turned_red:
        notify(outcome.turned_red)
    session.add(ReflagChunk(run_id=run_id, chunk=chunk, evaluated=outcome.evaluated, changed=outcome.changed,
                            finished_at=clock.now()))
    session.flush()
    done, total = session.execute(text(
        "UPDATE reflag_runs SET done_chunks = done_chunks + 1 WHERE id = :id RETURNING done_chunks, chunks"),
        {"id": run_id}).one()
    finished = done >= total
    if finished:
        session.refresh(run)
        finish_run(session, run, scheme=scheme, clock=clock)
    return outcome, finished


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
