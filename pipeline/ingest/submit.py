"""Receive an arrival: parse and validate it, then record it whole, in one transaction.

Nothing here queues work: the caller commits, then queues the batch (the broker only carries work;
a batch whose message is lost is found again by the sweeper).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from pipeline.clock import Clock
from pipeline.ingest.parse import FileRejected, parse_file, parse_records
from pipeline.ingest.record import record_batch
from pipeline.ingest.template import RowError
from pipeline.models import ImportBatch, RejectedRow
from pipeline.reference import Reference

REJECTED = "rejected"


@dataclass(frozen=True)
class Submission:
    filename: str | None
    batch_id: int | None
    created: bool = True
    total_rows: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: tuple[RowError, ...] = ()
    file_error: str | None = None  # the whole file was refused, with this message

    @property
    def needs_applying(self) -> bool:
        return self.batch_id is not None and self.file_error is None


def _record_refused_file(session: Session, filename: str, message: str, clock: Clock) -> int:
    batch_id = session.scalar(
        insert(ImportBatch)
        .values(source="file", filename=filename, status=REJECTED, error=message, received_at=clock.now())
        .returning(ImportBatch.id)
    )
    session.execute(insert(RejectedRow).values(batch_id=batch_id, row_number=None, header=None, message=message))
    return int(batch_id)


def receive_file(
    session: Session,
    path: Path,
    *,
    reference: Reference,
    max_bytes: int,
    clock: Clock,
    progress: Callable[[int, int], None] | None = None,
) -> Submission:
    """Parse, validate and record one template file (xlsx, csv or jsonl)."""
    try:
        parsed = parse_file(path, reference=reference, max_bytes=max_bytes, progress=progress)
    except FileRejected as exc:
        batch_id = _record_refused_file(session, path.name, str(exc), clock)
        return Submission(path.name, batch_id, file_error=str(exc))
    recorded = record_batch(
        session, source="file", filename=path.name, content_sha256=parsed.sha256, total_rows=parsed.total_rows,
        rows=parsed.rows, errors=parsed.errors, clock=clock,
    )
    return Submission(
        path.name, recorded.batch_id, recorded.created, parsed.total_rows, recorded.accepted, recorded.duplicates,
        recorded.rejected, tuple(parsed.errors),
    )


def receive_records(
    session: Session,
    records: Sequence[Mapping[str, Any]],
    *,
    reference: Reference,
    clock: Clock,
    source: str = "api",
    label: str | None = None,
) -> Submission:
    """Validate and record JSON updates (one or a batch); each carries its own idempotency key."""
    parsed = parse_records(records, reference=reference)
    recorded = record_batch(
        session, source=source, filename=label, content_sha256=None, total_rows=parsed.total_rows,
        rows=parsed.rows, errors=parsed.errors, clock=clock,
    )
    return Submission(
        label, recorded.batch_id, recorded.created, parsed.total_rows, recorded.accepted, recorded.duplicates,
        recorded.rejected, tuple(parsed.errors),
    )
