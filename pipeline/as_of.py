"""The reserve as of any date D (SPEC §9): every project's computed flag as of D from the stored
updates, chunk by chunk over the reserve, as ``pipeline evaluate`` computes it on files.

Each project is judged on its newest applied update whose 报告期 ≤ D (a project with none by D is
left out), and ESCALATED compares with its base colour at the end of the month before D: from the
month flags when that month is closed under the scheme, else evaluated from the updates on or
before that month end (pipeline/reflag.py ``evaluate_scope``). Nothing is written but a temporary
table (``stage_flags_as_of``), so memory stays bounded by one chunk.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import polars as pl
from sqlalchemy import text
from sqlalchemy.orm import Session

from pipeline import bulk
from pipeline.reflag import evaluate_scope, month_closed, reserve_scopes
from pipeline.rules import Scheme, previous_month_end
from pipeline.rules.columnar import CompiledScheme, compile_scheme

STAGED = "tmp_flags_as_of"
STAGED_COLUMNS = ("project_id", "code", "color", "base_color", "reasons", "report_as_of", "annual_plan",
                  "ytd_completed")


def flags_as_of(session: Session, as_of: date, *, scheme: Scheme, compiled: CompiledScheme | None = None,
                chunk_size: int) -> Iterator[pl.DataFrame]:
    """One evaluated frame per chunk of the reserve (``chunk_size`` consecutive ids): the projects
    with an update on or before D, their facts as of D and ``color``, ``base_color``, ``reasons``
    (JSON text)."""
    compiled = compiled or compile_scheme(scheme)
    closed = month_closed(session, previous_month_end(as_of), scheme)
    for scope in reserve_scopes(session, chunk_size):
        evaluated = evaluate_scope(session, scope, as_of, scheme=scheme, compiled=compiled,
                                   previous_closed=closed)
        reported = evaluated.filter(pl.col("as_of").is_not_null())
        if reported.height:
            yield reported


def stage_flags_as_of(session: Session, as_of: date, *, scheme: Scheme, compiled: CompiledScheme | None = None,
                      chunk_size: int) -> int:
    """Fill the temporary table ``tmp_flags_as_of`` (one row per project with an update by D: its
    code, colour, base colour, reasons, the 报告期 and amounts of the update it was judged on) for
    this transaction; returns how many rows it holds."""
    bulk.temp_table(
        session, STAGED,
        "project_id INTEGER PRIMARY KEY, code VARCHAR(64), color VARCHAR(10), base_color VARCHAR(10), "
        "reasons TEXT, report_as_of DATE, annual_plan NUMERIC(18, 2), ytd_completed NUMERIC(18, 2)",
    )
    total = 0
    for frame in flags_as_of(session, as_of, scheme=scheme, compiled=compiled, chunk_size=chunk_size):
        rows = frame.select("project_id", "code", "color", "base_color", "reasons",
                            pl.col("as_of").alias("report_as_of"), "annual_plan", "ytd_completed")
        total += bulk.write_frame(session, STAGED, rows, STAGED_COLUMNS)
    return total


def staged_flag_lines(session: Session, as_of: date, *, batch: int = 2_000) -> Iterator[dict[str, Any]]:
    """The staged flags in SPEC §7's shape (``code``, ``as_of``, ``flag``, ``reasons``), sorted by
    code, read in batches."""
    day = as_of.isoformat()
    result = session.execute(
        text(f"SELECT code, color, reasons FROM {STAGED} ORDER BY code").execution_options(yield_per=batch))
    for code, color, reasons in result:
        yield {"code": code, "as_of": day, "flag": color, "reasons": json.loads(reasons)}


__all__ = ["STAGED", "flags_as_of", "stage_flags_as_of", "staged_flag_lines"]
