"""Record an arrival (a parsed file or JSON records) as a batch, before any task is queued.

Everything of the arrival is written in one transaction: the batch, its accepted updates (status
``pending``) and its rejected rows, in bulk (COPY on PostgreSQL) through a staging table and one
``INSERT … SELECT … ON CONFLICT DO NOTHING``. An update whose idempotency key is already stored is
counted as a duplicate and not stored again; a file whose bytes were already recorded returns the
batch recorded then.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from pipeline import bulk
from pipeline.clock import Clock
from pipeline.db import dialect_insert
from pipeline.facts import FACT_FIELDS
from pipeline.ingest.frame import rows_to_frame
from pipeline.ingest.template import RowError, UpdateRow
from pipeline.models import ImportBatch
from pipeline.states import BatchStatus, UpdateStatus

PENDING = UpdateStatus.PENDING.value
RECEIVED = BatchStatus.RECEIVED.value
MASTER_COLUMNS = ("name", "county", "industry", "nature", "total_investment", "leader", "unit")
_STAGED = ("idempotency_key", "row_number", "project_code", *MASTER_COLUMNS, "lists", *FACT_FIELDS)


@dataclass(frozen=True)
class RecordedBatch:
    batch_id: int
    created: bool  # False when the same file had been recorded before
    accepted: int
    duplicates: int
    rejected: int


def _lists_as_json(frame: pl.DataFrame) -> pl.Expr:
    """The lists column as JSON text, each distinct combination encoded once."""
    joined = frame["lists"].list.join("\x1f")
    mapping = {
        key: json.dumps([] if key == "" else key.split("\x1f"), ensure_ascii=False)
        for key in joined.drop_nulls().unique().to_list()
    }
    return pl.col("lists").list.join("\x1f").replace_strict(mapping, default=None, return_dtype=pl.Utf8)


def _staged(updates: pl.DataFrame) -> pl.DataFrame:
    unique = updates.unique(subset=["idempotency_key"], keep="first", maintain_order=True)
    return unique.with_columns(
        pl.col("code").alias("project_code"), _lists_as_json(unique).alias("lists"),
        pl.col("needs_coordination").fill_null(False),  # 需协调 left empty means 否
    ).select(_STAGED)


def record_batch(
    session: Session,
    *,
    source: str,
    filename: str | None,
    content_sha256: str | None,
    total_rows: int,
    rows: pl.DataFrame | Sequence[UpdateRow],
    errors: Sequence[RowError],
    clock: Clock,
    submitted_by: str | None = None,
    unit_id: int | None = None,
    hidden_rows: int = 0,
) -> RecordedBatch:
    """Write the batch, its new updates and its rejected rows; flush, leave the commit to the caller.

    ``unit_id`` marks a responsible unit's batch: its master data are held for the office (SPEC §3)."""
    now = clock.now()
    values = dict(source=source, filename=filename, status=RECEIVED, total_rows=total_rows, received_at=now,
                  submitted_by=submitted_by, unit_id=unit_id, hidden_rows=hidden_rows)
    if content_sha256 is not None:
        batch_id = session.scalar(
            dialect_insert(session, ImportBatch).values(content_sha256=content_sha256, **values)
            .on_conflict_do_nothing(index_elements=["content_sha256"]).returning(ImportBatch.id)
        )
        if batch_id is None:
            existing = session.scalars(select(ImportBatch).where(ImportBatch.content_sha256 == content_sha256)
                                       .with_for_update()).one()
            if existing.status == BatchStatus.FAILED:  # the same file again: try its batch once more
                existing.status, existing.attempts, existing.error = RECEIVED, 0, None
            return RecordedBatch(
                existing.id, False, existing.accepted_rows, existing.duplicate_rows, existing.rejected_rows
            )
    else:
        batch_id = session.scalar(insert(ImportBatch).values(**values).returning(ImportBatch.id))

    if errors:
        kept: set[int] = set()  # the row's cells go with its first error only
        refused = []
        for e in errors:
            cells = None
            if e.cells is not None and e.row_number is not None and e.row_number not in kept:
                kept.add(e.row_number)
                cells = json.dumps(dict(e.cells), ensure_ascii=False, default=str)
            refused.append((batch_id, e.row_number, e.sheet, e.header, e.raw_value, e.message, cells))
        bulk.write_frame(session, "rejected_rows", pl.DataFrame(refused, schema={
            "batch_id": pl.Int64, "row_number": pl.Int64, "sheet": pl.Utf8, "header": pl.Utf8, "raw_value": pl.Utf8,
            "message": pl.Utf8, "cells": pl.Utf8}, orient="row"))

    frame = rows if isinstance(rows, pl.DataFrame) else rows_to_frame(rows)
    accepted = 0
    if frame.height:
        staged = _staged(frame)
        bulk.temp_table(
            session, "tmp_record",
            "idempotency_key VARCHAR(128), row_number INTEGER, project_code VARCHAR(24), name VARCHAR(200), "
            "county VARCHAR(50), industry VARCHAR(50), nature VARCHAR(10), total_investment NUMERIC(16, 2), "
            "leader VARCHAR(50), unit VARCHAR(200), lists TEXT, as_of DATE, annual_plan NUMERIC(16, 2), "
            "planned_start DATE, planned_completion DATE, actual_start DATE, actual_completion DATE, "
            "stats_included_on DATE, cumulative_completed NUMERIC(16, 2), ytd_completed NUMERIC(16, 2), "
            "needs_coordination BOOLEAN, problems TEXT",
        )
        bulk.write_frame(session, "tmp_record", staged)
        lists = "CAST(t.lists AS JSONB)" if bulk.is_postgres(session) else "t.lists"
        columns = ", ".join(c for c in _STAGED if c != "lists")
        accepted = session.execute(bulk.sql(f"""
            INSERT INTO status_updates ({columns}, lists, batch_id, status, received_at)
            SELECT {", ".join(f"t.{c}" for c in _STAGED if c != "lists")}, {lists}, :batch_id, :pending, :now
            FROM tmp_record t WHERE 1 = 1
            ON CONFLICT (idempotency_key) DO NOTHING"""),
            {"batch_id": batch_id, "pending": PENDING, "now": now},
        ).rowcount
    rejected_rows = len({(e.sheet, e.row_number) for e in errors if e.row_number is not None})
    duplicates = frame.height - accepted
    session.execute(
        text("UPDATE import_batches SET accepted_rows = :a, duplicate_rows = :d, rejected_rows = :r WHERE id = :id"),
        {"a": accepted, "d": duplicates, "r": rejected_rows, "id": batch_id},
    )
    return RecordedBatch(batch_id, True, accepted, duplicates, rejected_rows)
