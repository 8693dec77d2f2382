"""Receive an arrival: parse and validate it, then record it whole, in one transaction.

Nothing here queues work: the caller commits, then queues the batch (the broker only carries work;
a batch whose message is lost is found again by the sweeper).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from pipeline.audit import Actor, AuditAction, record
from pipeline.clock import Clock
from pipeline.ingest.parse import FileRejected, ImportLimits, parse_file, parse_records
from pipeline.ingest.record import record_batch
from pipeline.ingest.template import RowError
from pipeline.ingest.values import storable
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
    hidden_rows: int = 0  # rows hidden in Excel: imported like the others, and said so

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
    actor: Actor,
    unit_id: int | None = None,
    limits: ImportLimits | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Submission:
    """Parse, validate and record one template file (xlsx, csv or jsonl); the import is audited.

    ``unit_id``: sent by a responsible unit, whose rows may leave the master-data columns out and
    whose master data wait for the office (SPEC §3).
    """
    name = storable(path.name)
    try:
        parsed = parse_file(path, reference=reference, today=clock.today(), max_bytes=max_bytes,
                            limits=limits or ImportLimits(), progress_only=unit_id is not None, progress=progress)
    except FileRejected as exc:
        batch_id = _record_refused_file(session, name, str(exc), clock)
        sub = Submission(name, batch_id, file_error=str(exc))
    else:
        recorded = record_batch(
            session, source="file", filename=name, content_sha256=parsed.sha256, total_rows=parsed.total_rows,
            rows=parsed.updates, errors=parsed.errors, clock=clock, submitted_by=actor.name, unit_id=unit_id,
            hidden_rows=parsed.hidden_rows,
        )
        sub = Submission(
            name, recorded.batch_id, recorded.created, parsed.total_rows, recorded.accepted, recorded.duplicates,
            recorded.rejected, tuple(parsed.errors), hidden_rows=parsed.hidden_rows,
        )
    audit_import(session, sub, source="file", actor=actor, clock=clock)
    return sub


def audit_import(session: Session, sub: Submission, *, source: str, actor: Actor, clock: Clock) -> None:
    record(session, actor, AuditAction.IMPORT, now=clock.now(), target=sub.filename, source=source,
           batch_id=sub.batch_id, total=sub.total_rows, accepted=sub.accepted, duplicates=sub.duplicates,
           rejected=sub.rejected, already_received=not sub.created or None, file_error=sub.file_error)


def receive_records(
    session: Session,
    records: Sequence[Mapping[str, Any]],
    *,
    reference: Reference,
    clock: Clock,
    actor: Actor,
    source: str = "api",
    label: str | None = None,
    unit_id: int | None = None,
    limits: ImportLimits | None = None,
) -> Submission:
    """Validate and record JSON updates (one or a batch); each carries its own idempotency key (audited).
    ``unit_id`` as for ``receive_file``."""
    parsed = parse_records(records, reference=reference, today=clock.today(), limits=limits or ImportLimits(),
                           progress_only=unit_id is not None)
    recorded = record_batch(
        session, source=source, filename=label, content_sha256=None, total_rows=parsed.total_rows,
        rows=parsed.updates, errors=parsed.errors, clock=clock, submitted_by=actor.name, unit_id=unit_id,
    )
    sub = Submission(
        label, recorded.batch_id, recorded.created, parsed.total_rows, recorded.accepted, recorded.duplicates,
        recorded.rejected, tuple(parsed.errors),
    )
    audit_import(session, sub, source=source, actor=actor, clock=clock)
    return sub
