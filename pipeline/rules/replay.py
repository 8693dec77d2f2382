"""Evaluate template rows straight from files (the ``pipeline evaluate`` command, SPEC §7).

No database: the rows become one facts frame; rows dated after D are ignored, and each project is
judged on its newest row on or before D (报告期 order; ties: the row later in the input wins),
with its newest row on or before the end of the previous month as ESCALATED's history.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date
from typing import Any

import polars as pl

from pipeline.ingest.template import UpdateRow
from pipeline.rules.columnar import compile_scheme
from pipeline.rules.frame import facts_frame
from pipeline.rules.metrics import previous_month_end
from pipeline.rules.scheme import Scheme

ORDER = "__input_order"


def _newest_on_or_before(rows: pl.DataFrame, day: date) -> pl.DataFrame:
    """Each code's newest row dated ≤ ``day`` (the later input row among equal dates), by code."""
    return (
        rows.filter(pl.col("as_of") <= day)
        .sort(["code", "as_of", ORDER])
        .unique(subset="code", keep="last", maintain_order=True)
        .drop(ORDER)
    )


def evaluate_rows(rows: Iterable[UpdateRow], *, as_of: date, scheme: Scheme) -> list[dict[str, Any]]:
    """One JSON-ready dict per project with a row on or before D, sorted by project code."""
    every = facts_frame([row.facts() for row in rows]).with_row_index(ORDER)
    current = _newest_on_or_before(every, as_of)
    previous = current.select("code").join(
        _newest_on_or_before(every, previous_month_end(as_of)), on="code", how="left", maintain_order="left",
    )
    result = compile_scheme(scheme).evaluate_with_previous(current, previous, as_of)
    day = as_of.isoformat()
    return [
        {"code": code, "as_of": day, "flag": color, "reasons": json.loads(reasons)}
        for code, color, reasons in result.select("code", "color", "reasons").iter_rows()
    ]


__all__ = ["evaluate_rows"]
