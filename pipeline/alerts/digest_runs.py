"""A review's digests made by the workers in parallel (province and national scale, SPEC §8).

The scheduler holding the lease starts a run (``start_digest_run``: a ``DigestRun`` row with its
chunks of project ids) instead of planning the review itself.

1. Gathering: each chunk task (``gather_chunk``) evaluates its projects as of the review's two
   digest days and stores its share of the digests (counts and rate sums, red and yellow
   projects, changes, outlook: pipeline.alerts.digests) in the same transaction that counts it,
   so a redelivered task finds its chunk stored and does nothing.
2. Dividing: the chunk that completes the set divides the rendering into parts, once, under the
   run's row lock (``finish_digest_run``): the office's digest, and the leaders' digests in ranges
   of leader ids (one part per ``LEADERS_PER_PART`` leaders, no more parts than chunks, so that
   re-reading the shares costs the parts no more than one gathering).
3. Rendering: each part task (``render_part``) puts the shares together, renders its messages and
   writes them to the outbox in the same transaction that records the part; the part that
   completes the set records the review planned. The messages are exactly those that planning in
   one process gives (the outbox's unique keys make a redelivered part a no-op).

The sweeper queues again the chunks of a run left unfinished, divides a run whose chunks are all
stored, and queues again the parts of a run left unrendered.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from datetime import date, datetime

import polars as pl
from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.orm import Session

from pipeline.alerts.calendar import ReviewCalendar
from pipeline.alerts.digests import gather_share, material_of
from pipeline.alerts.planning import (
    AlertContext,
    plan_leader_digests,
    plan_office_digest,
    record_missed,
    record_planned,
)
from pipeline.alerts.review_data import digest_dates
from pipeline.clock import Clock
from pipeline.models import DigestPart, DigestRender, DigestRun, Leader
from pipeline.reflag import chunk_scope, reserve_chunks
from pipeline.rules import Scheme
from pipeline.rules.columnar import CompiledScheme

RUNNING, RENDERING, DONE = "running", "rendering", "done"
OFFICE_PART = 0  # the office's digest; parts 1, 2, ... render the leaders' in ranges of leader ids
LEADERS_PER_PART = 10  # leaders' digests rendered by one part, at the least


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


def finish_digest_run(session: Session, review: date, *, calendar: ReviewCalendar,
                      ctx: AlertContext) -> tuple[int, ...] | None:
    """Once every chunk's share is stored, divide the rendering into parts, once (under the run's
    row lock); returns the parts to render (queued once this transaction commits), or None when
    the run is not complete or was divided before. A run completed only once its review has been
    held (the workers were down till then) is recorded as missed, as the scheduler records a
    digest it could not plan in time, and has no parts."""
    run = session.scalars(select(DigestRun).where(DigestRun.review_date == review).with_for_update()).first()
    if run is None or run.status != RUNNING or run.done_chunks < run.chunks:
        return None
    if _held(review, calendar=calendar, ctx=ctx):
        record_missed(session, review, send_at=run.send_at, now=ctx.now)
        _close(session, run, now=ctx.now)
        return ()
    run.leader_starts = _leader_starts(session, at_most=max(1, run.chunks))
    run.status, run.done_parts = RENDERING, 0
    session.flush()
    return render_parts(run)


def render_parts(run: DigestRun) -> tuple[int, ...]:
    """A divided run's parts: the office's, then one per range of leader ids."""
    return tuple(range(1 + len(run.leader_starts or ())))


def _leader_starts(session: Session, *, at_most: int) -> list[int]:
    """The first leader id of each part of the leaders' digests: one part per ``LEADERS_PER_PART``
    leaders, at most ``at_most`` parts, about as many leaders in each."""
    ids = session.scalars(select(Leader.id).order_by(Leader.id)).all()
    if not ids:
        return []
    per_part = math.ceil(len(ids) / max(1, min(at_most, math.ceil(len(ids) / LEADERS_PER_PART))))
    return [ids[i] for i in range(0, len(ids), per_part)]


def _leader_range(run: DigestRun, part: int) -> tuple[int | None, int | None]:
    """The leader ids of a leaders' part: from its start (the first part: from any id) up to the
    next part's start (the last part: on)."""
    starts = run.leader_starts or []
    return (None if part == 1 else starts[part - 1], starts[part] if part < len(starts) else None)


def _rendered(session: Session, review: date, part: int) -> bool:
    return bool(session.scalar(select(exists().where(DigestRender.review_date == review, DigestRender.part == part))))


def _held(review: date, *, calendar: ReviewCalendar, ctx: AlertContext) -> bool:
    return ctx.now.astimezone(calendar.tz).date() >= review


def render_part(session: Session, review: date, part: int, *, calendar: ReviewCalendar,
                ctx: AlertContext) -> int | None:
    """Render one part of a divided run and write its messages to the outbox, in the transaction
    that records the part; the part that completes the set records the review planned (as missed
    when no part planned a message and the review has been held: a part rendered only after its
    review plans nothing). Returns the part's new messages, or None when the run is not being
    rendered or the part was rendered before."""
    run = session.get(DigestRun, review)
    if run is None or run.status != RENDERING or part not in render_parts(run) or _rendered(session, review, part):
        return None
    new = 0
    if not _held(review, calendar=calendar, ctx=ctx):
        material = material_of(session, digest_dates(calendar, review), _shares(session, review), scheme=ctx.scheme,
                               current=run.current)
        if part == OFFICE_PART:
            new = plan_office_digest(session, review=review, ctx=ctx, material=material)
        else:
            new = plan_leader_digests(session, review=review, calendar=calendar, current=run.current, ctx=ctx,
                                      material=material, leader_range=_leader_range(run, part))
    session.add(DigestRender(review_date=review, part=part, messages=new))
    session.flush()
    done = session.execute(update(DigestRun).where(DigestRun.review_date == review)
                           .values(done_parts=DigestRun.done_parts + 1).returning(DigestRun.done_parts)).scalar_one()
    if done >= len(render_parts(run)):
        total = session.scalar(select(func.sum(DigestRender.messages)).where(DigestRender.review_date == review)) or 0
        if total == 0 and _held(review, calendar=calendar, ctx=ctx):
            record_missed(session, review, send_at=run.send_at, now=ctx.now)
        else:
            record_planned(session, review, send_at=run.send_at, now=ctx.now, messages=total)
        _close(session, run, now=ctx.now)
    return new


def _close(session: Session, run: DigestRun, *, now: datetime) -> None:
    """The run is done: its shares and part records dropped."""
    session.execute(delete(DigestPart).where(DigestPart.review_date == run.review_date))
    session.execute(delete(DigestRender).where(DigestRender.review_date == run.review_date))
    session.execute(update(DigestRun).where(DigestRun.review_date == run.review_date)
                    .values(status=DONE, finished_at=now))
    session.expire(run)


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


def stale_runs(session: Session, *, started_before: datetime
               ) -> tuple[list[tuple[date, list[int]]], list[tuple[date, list[int]]]]:
    """The runs not done that started before the given time: those still gathering, each with its
    chunks not yet stored, and those being rendered, each with its parts not yet rendered."""
    gathering, rendering = [], []
    for run in session.scalars(select(DigestRun).where(DigestRun.status.in_((RUNNING, RENDERING)),
                                                       DigestRun.started_at < started_before)):
        if run.status == RUNNING:
            stored = set(session.scalars(select(DigestPart.chunk).where(DigestPart.review_date == run.review_date)))
            gathering.append((run.review_date, [c for c in _chunks(run) if c not in stored]))
        else:
            rendered = set(session.scalars(select(DigestRender.part).where(DigestRender.review_date == run.review_date)))
            rendering.append((run.review_date, [p for p in render_parts(run) if p not in rendered]))
    return gathering, rendering


def _ipc(frame: pl.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.write_ipc(out)
    return out.getvalue()


__all__ = [
    "DONE", "RENDERING", "RUNNING", "finish_digest_run", "gather_chunk", "render_part", "render_parts",
    "stale_runs", "start_digest_run",
]
