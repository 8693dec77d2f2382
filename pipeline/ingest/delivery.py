"""A delivery of a batch's task: count it, apply the batch, never twice at once.

Any worker may apply any batch at any time (applying is an order-independent merge), so there is
no queue to respect. What must not happen is two workers applying the same batch together, or a
batch that kills its worker every time looping forever:

- on PostgreSQL the delivery first takes a session-level advisory lock on the batch
  (``pg_advisory_lock``), held across the two transactions below and released when it ends (or
  when its connection dies with its worker); a second delivery of the same batch waits there,
  then finds the batch applied and does nothing;
- holding it, the delivery counts itself in its own committed transaction (the poison-message
  guard: a worker killed mid-apply leaves that count behind); a delivery that merely waited, or
  found the batch applied, counts nothing, and one whose apply failed with a database error
  takes its count back, since the fault was the infrastructure's, not the batch's;
- then it applies the batch in a second transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from pipeline.clock import Clock
from pipeline.ingest.apply import AppliedBatch, Touched, apply_batch
from pipeline.ingest.sweep import APPLY_LOCK_CLASS, give_back_delivery, note_delivery

log = logging.getLogger(__name__)


@contextmanager
def _batch_lock(conn: Connection, batch_id: int) -> Iterator[None]:
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        conn.execute(text("SELECT pg_advisory_lock(:c, :b)"), {"c": APPLY_LOCK_CLASS, "b": batch_id})
        conn.commit()
    try:
        yield
    finally:
        if postgres and not conn.closed and not conn.invalidated:
            conn.rollback()
            conn.execute(text("SELECT pg_advisory_unlock(:c, :b)"), {"c": APPLY_LOCK_CLASS, "b": batch_id})
            conn.commit()


def apply_delivered(
    engine: Engine, batch_id: int, *, clock: Clock, max_attempts: int, touched: Touched | None,
) -> AppliedBatch | None:
    """Apply one delivered batch; None when the delivery counted nothing (applied or failed before)."""
    with engine.connect() as conn, _batch_lock(conn, batch_id):
        with Session(bind=conn) as session:
            began = note_delivery(session, batch_id, max_attempts=max_attempts)
            session.commit()
        if not began:
            return None
        try:
            with Session(bind=conn) as session:
                result = apply_batch(session, batch_id, clock=clock, touched=touched)
                session.commit()
                return result
        except DBAPIError:
            _give_back(conn, batch_id)
            raise


def _give_back(conn: Connection, batch_id: int) -> None:
    try:
        conn.rollback()
        with Session(bind=conn) as session:
            give_back_delivery(session, batch_id)
            session.commit()
    except DBAPIError:  # the database is gone: the count stays, the next delivery will tell
        log.warning("could not take back the delivery count of batch %s", batch_id)
