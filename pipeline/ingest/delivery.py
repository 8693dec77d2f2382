"""A delivery of a batch's task: count it, apply the batch (with others waiting), never twice at once.

Any worker may apply any batch at any time (applying is an order-independent merge), so there is
no queue to respect. What must not happen is two workers applying the same batch together, or a
batch that kills its worker every time looping forever:

- on PostgreSQL the delivery first takes a session-level advisory lock on the batch
  (``pg_try_advisory_lock``), held across the two transactions below and released when it ends
  (or when its connection dies with its worker); a delivery that finds the lock taken leaves the
  batch to the delivery holding it and counts nothing (should that one fail, its retry, the
  redelivery of its task or the sweeper brings the batch back);
- holding it, the delivery counts itself in its own committed transaction (the poison-message
  guard: a worker killed mid-apply leaves that count behind); a delivery that found the batch
  applied counts nothing, and one whose apply failed with a database error takes its count back,
  since the fault was the infrastructure's, not the batch's;
- then it applies the batch in a second transaction.

A delivery takes on other batches waiting beside its own (``companions``): batches whose tasks
are already queued, never tried before, of the same kind (office or responsible unit), up to
``GROUP_ROWS`` updates in all. Each is locked and counted as its own batch is, and they are
applied as one merge and one re-judging of their projects (``apply_batches``): an API client
sending batches of a thousand updates does not pay a re-flag per thousand. Their own tasks then
find them applied. A batch that was in a delivery that did not finish is never grouped again: it
is applied alone, so a batch that kills its worker fails alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from pipeline.clock import Clock
from pipeline.ingest.apply import AppliedBatch, Touched, apply_batches
from pipeline.ingest.sweep import APPLY_LOCK_CLASS, RECEIVED, give_back_delivery, note_delivery
from pipeline.models import ImportBatch

log = logging.getLogger(__name__)

GROUP_ROWS = 10_000  # updates a delivery applies at once, its own batch's and its companions'
GROUP_BATCHES = 50  # batches a delivery applies at once


class _BatchLocks:
    """The advisory locks a delivery holds on its batches (PostgreSQL; every lock is free on SQLite)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        self.held: list[int] = []

    def take(self, batch_id: int) -> bool:
        """Lock the batch unless another delivery holds it; commits, so no transaction stays open."""
        if self.postgres:
            taken = self.conn.execute(text("SELECT pg_try_advisory_lock(:c, :b)"),
                                      {"c": APPLY_LOCK_CLASS, "b": batch_id}).scalar_one()
            self.conn.commit()
            if not taken:
                return False
        self.held.append(batch_id)
        return True

    def release(self, batch_id: int | None = None) -> None:
        for held in [b for b in self.held if batch_id is None or b == batch_id]:
            self.held.remove(held)
            if self.postgres and not self.conn.closed and not self.conn.invalidated:
                self.conn.rollback()
                self.conn.execute(text("SELECT pg_advisory_unlock(:c, :b)"), {"c": APPLY_LOCK_CLASS, "b": held})
                self.conn.commit()


@contextmanager
def _batch_locks(conn: Connection) -> Iterator[_BatchLocks]:
    locks = _BatchLocks(conn)
    try:
        yield locks
    finally:
        locks.release()


def companions(session: Session, batch: ImportBatch, *, rows: int = GROUP_ROWS,
               batches: int = GROUP_BATCHES) -> list[int]:
    """Batches that may be applied with ``batch`` (in id order): queued, waiting, never tried, of the
    same kind, within the bounds counting ``batch`` itself. None when ``batch`` was tried before."""
    if batch.attempts > 1:  # counted by this delivery: a delivery before did not finish
        return []
    same_kind = ImportBatch.unit_id.is_(None) if batch.unit_id is None else ImportBatch.unit_id.is_not(None)
    found = session.execute(
        select(ImportBatch.id, ImportBatch.accepted_rows)
        .where(ImportBatch.status == RECEIVED, ImportBatch.attempts == 0, ImportBatch.enqueued_at.is_not(None),
               ImportBatch.id != batch.id, same_kind)
        .order_by(ImportBatch.id).limit(batches - 1)
    ).tuples().all()
    chosen, total = [], batch.accepted_rows
    for batch_id, accepted in found:
        if total + accepted > rows:
            break
        chosen.append(batch_id)
        total += accepted
    return chosen


def _begin(conn: Connection, locks: _BatchLocks, batch_id: int, max_attempts: int) -> list[int]:
    """Count the delivery of ``batch_id`` and of the companions it takes on; the batches to apply
    (``batch_id`` first), or none when its batch is not waiting."""
    with Session(bind=conn) as session:
        began = note_delivery(session, batch_id, max_attempts=max_attempts)
        session.commit()
        if not began:
            return []
        group = [batch_id]
        for other in companions(session, session.get(ImportBatch, batch_id)):
            session.commit()
            if not locks.take(other):
                continue
            if note_delivery(session, other, max_attempts=max_attempts):
                group.append(other)
            session.commit()
            if other not in group:
                locks.release(other)
        return group


def apply_delivered(
    engine: Engine, batch_id: int, *, clock: Clock, max_attempts: int, touched: Touched | None,
) -> AppliedBatch | None:
    """Apply one delivered batch (and its companions); None when the delivery counted nothing
    (applied, failed before, or being applied by another delivery)."""
    with engine.connect() as conn, _batch_locks(conn) as locks:
        if not locks.take(batch_id):
            return None
        group = _begin(conn, locks, batch_id, max_attempts)
        if not group:
            return None
        try:
            with Session(bind=conn) as session:
                result = apply_batches(session, group, clock=clock, touched=touched)
                session.commit()
                return result
        except DBAPIError:
            _give_back(conn, group)
            raise


def _give_back(conn: Connection, batch_ids: list[int]) -> None:
    try:
        conn.rollback()
        with Session(bind=conn) as session:
            for batch_id in batch_ids:
                give_back_delivery(session, batch_id)
            session.commit()
    except DBAPIError:  # the database is gone: the counts stay, the next delivery will tell
        log.warning("could not take back the delivery count of batches %s", batch_ids)
