"""Idempotency keys and the stored form of an update."""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields
from datetime import date
from decimal import Decimal
from typing import Any

from pipeline.ingest.template import UpdateRow

# The fields an update's content hash covers (frame.py hashes the same fields over a whole frame).
PAYLOAD_FIELDS = tuple(f.name for f in fields(UpdateRow) if f.name not in ("row_number", "source_id"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):  # the amount, whatever its exponent: 19109.50 and 19109.5 hash alike
        return format(value.normalize(), "f")
    if isinstance(value, tuple):
        return list(value)
    return value


def update_payload(row: UpdateRow) -> dict[str, Any]:
    """The row's content as JSON-safe values, in a fixed field order."""
    return {name: _jsonable(getattr(row, name)) for name in PAYLOAD_FIELDS}


def idempotency_key(row: UpdateRow) -> str:
    """The source's own id when it has one, else a hash of the row's normalised content.

    The content is hashed after validation, so '2024/3/31' and '2024-03-31' are the same update.
    """
    if row.source_id:
        return f"src:{row.source_id}"
    canonical = json.dumps(update_payload(row), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
