"""The states of the ingest data path, one enum per state machine."""

from __future__ import annotations

from enum import StrEnum


class BatchStatus(StrEnum):
    """An import batch: recorded (waiting for a worker), applied, failed after too many crashed
    attempts (retry it), or refused whole (a file that could not be read)."""

    RECEIVED = "received"
    APPLIED = "applied"
    FAILED = "failed"
    REJECTED = "rejected"


class UpdateStatus(StrEnum):
    """A status update: recorded, merged into the reserve, or refused when applied (e.g. a unit's
    row for a project the reserve does not hold). Whether an applied update is the project's
    current state is not a status: the newest 报告期 wins, whatever the order of arrival."""

    PENDING = "pending"
    APPLIED = "applied"
    REJECTED = "rejected"


class ChangeRequestStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
