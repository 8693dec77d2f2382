"""Record an arrival (a parsed file or JSON records) as a batch, before any task is queued.

Everything of the arrival is written in one transaction: the batch, its accepted updates (status
``pending``) and its rejected rows. An update whose idempotency key is already stored is counted
as a duplicate and not stored again; a file whose bytes were already recorded returns the batch
recorded then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from pipeline.clock import Clock
from pipeline.db import dialect_insert
from pipeline.ingest.keys import idempotency_key, update_payload
from pipeline.ingest.template import RowError, UpdateRow
from pipeline.models import ImportBatch, RejectedRow, StatusUpdate

PENDING = "pending"
RECEIVED = "received"


@dataclass(frozen=True)
class RecordedBatch:
    batch_id: int
    created: bool  # False when the same file had been recorded before
    accepted: int
    duplicates: int
    rejected: int


def record_batch(
    session: Session,
    *,
    source: str,
    filename: str | None,
    content_sha256: str | None,
    total_rows: int,
    rows: Sequence[UpdateRow],
    errors: Sequence[RowError],
    clock: Clock,
) -> RecordedBatch:
    """Write the batch, its new updates and its rejected rows; flush, leave the commit to the caller."""
    now = clock.now()
    if content_sha256 is not None:
        batch_id = session.scalar(
            dialect_insert(session, ImportBatch)
            .values(
                source=source, filename=filename, content_sha256=content_sha256, status=RECEIVED,
                total_rows=total_rows, received_at=now,
            )
            .on_conflict_do_nothing(index_elements=["content_sha256"])
            .returning(ImportBatch.id)
        )
        if batch_id is None:
            existing = session.scalars(select(ImportBatch).where(ImportBatch.content_sha256 == content_sha256)).one()
            return RecordedBatch(
                existing.id, False, existing.accepted_rows, existing.duplicate_rows, existing.rejected_rows
            )
    else:
        batch_id = session.scalar(
            insert(ImportBatch)
            .values(source=source, filename=filename, status=RECEIVED, total_rows=total_rows, received_at=now)
            .returning(ImportBatch.id)
        )

    if errors:
        session.execute(
            insert(RejectedRow),
            [
                {"batch_id": batch_id, "row_number": e.row_number, "header": e.header,
                 "raw_value": e.raw_value, "message": e.message}
                for e in errors
            ],
        )

    values = []
    seen: set[str] = set()
    for row in rows:
        key = idempotency_key(row)
        if key in seen:
            continue
        seen.add(key)
        values.append(
            {
                "idempotency_key": key, "batch_id": batch_id, "row_number": row.row_number,
                "project_code": row.code, "status": PENDING, "payload": update_payload(row), "received_at": now,
                "as_of": row.as_of, "annual_plan": row.annual_plan, "planned_start": row.planned_start,
                "planned_completion": row.planned_completion, "actual_start": row.actual_start,
                "actual_completion": row.actual_completion, "stats_included_on": row.stats_included_on,
                "cumulative_completed": row.cumulative_completed, "ytd_completed": row.ytd_completed,
                "needs_coordination": row.needs_coordination, "problems": row.problems,
            }
        )
    if values:
        stmt = dialect_insert(session, StatusUpdate).on_conflict_do_nothing(index_elements=["idempotency_key"])
        session.execute(stmt, values)
    accepted = session.scalar(select(func.count()).where(StatusUpdate.batch_id == batch_id)) or 0
    rejected_rows = len({e.row_number for e in errors if e.row_number is not None})
    batch = session.get(ImportBatch, batch_id)
    assert batch is not None
    batch.accepted_rows = accepted
    batch.duplicate_rows = len(rows) - accepted
    batch.rejected_rows = rejected_rows
    session.flush()
    return RecordedBatch(batch_id, True, accepted, len(rows) - accepted, rejected_rows)
