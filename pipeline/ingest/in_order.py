"""Apply batches in the order they were recorded, whatever order their tasks arrive in.

A task for batch N first applies every earlier batch still waiting, each in its own transaction,
so the history of flags reads the same however the broker reorders or repeats messages. A task
whose batch is already applied finds nothing to do.

A batch applied while later batches are already waiting (a backlog, the demo's twelve months)
shows passing states nobody saw: it re-flags with ``catch_up`` (no notices). ``settle`` runs
after every run that applied something (it plans the notices for what is red, once nothing waits).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pipeline.clock import Clock
from pipeline.db import session_scope
from pipeline.ingest.apply import AppliedBatch, Reflagger, apply_batch
from pipeline.ingest.record import RECEIVED
from pipeline.ingest.sweep import note_delivery
from pipeline.models import ImportBatch


def waiting_through(session: Session, batch_id: int) -> list[int]:
    return list(
        session.scalars(
            select(ImportBatch.id)
            .where(ImportBatch.status == RECEIVED, ImportBatch.id <= batch_id)
            .order_by(ImportBatch.id)
        )
    )


def apply_through(
    factory: sessionmaker[Session],
    batch_id: int,
    *,
    clock: Clock,
    reflag: Reflagger | None,
    max_attempts: int,
    catch_up: Reflagger | None = None,
    settle: Callable[[Session], object] | None = None,
) -> list[AppliedBatch]:
    """Apply every waiting batch up to ``batch_id`` in id order; each delivery is counted first."""
    with session_scope(factory) as session:
        ids = waiting_through(session, batch_id)
    results = []
    for bid in ids:
        with session_scope(factory) as session:
            if not note_delivery(session, bid, max_attempts=max_attempts):
                continue
        with session_scope(factory) as session:
            hook = catch_up if catch_up is not None and waiting_after(session, bid) else reflag
            results.append(apply_batch(session, bid, clock=clock, reflag=hook))
    if results and settle is not None:
        with session_scope(factory) as session:
            settle(session)
    return results


def waiting_after(session: Session, batch_id: int) -> bool:
    """Whether a batch recorded after ``batch_id`` is still waiting (0: any batch at all)."""
    return session.scalar(
        select(ImportBatch.id).where(ImportBatch.status == RECEIVED, ImportBatch.id > batch_id).limit(1)
    ) is not None
