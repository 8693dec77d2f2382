"""The forecast (预警, SPEC §10): which projects will be worse at the next review if nothing changes
but time.

For review R (default: the next review after D in the review calendar) and each project with a
report on or before D:

1. its flag now is the scheme evaluated as of D on its newest report on or before D (as
   ``pipeline flags --as-of D``: ESCALATED from the base flag at the end of the previous month);
2. its flag at R is the scheme evaluated as of R on that same report with its 报告期 set to R
   (reports keep arriving: STALE does not fire) and, when R and D are in the same year, its
   本年完成投资 scaled by f(R)/f(D) exactly (the pace ratio stays as it is);
3. ESCALATED at R reads the base flag at the end of the month before R: computed the same way
   (报告期 set to that month end, ytd scaled by f(month end)/f(D) in D's year) when that month end
   is on or after D, else the real one (from the month flags or the stored reports), which is
   then the base flag at the end of the month before D as well.

The projects whose flag at R is worse than their flag now are the forecast. The work runs chunk by
chunk over the reserve (or over one leader's or one unit's projects), set-based, and writes nothing.

Use ``forecast(session, scheme=..., calendar=..., as_of=D)`` for the items (sorted by code), or
``forecast_frames`` for the polars frames chunk by chunk.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Any

import polars as pl
from sqlalchemy import text
from sqlalchemy.orm import Session

from pipeline import bulk
from pipeline.alerts.calendar import ReviewCalendar
from pipeline.errors import ActionRefused
from pipeline.reflag import RANKS, evaluate_scope, reserve_scopes
from pipeline.rules import Scheme, previous_month_end, time_progress
from pipeline.rules.columnar import CompiledScheme, compile_scheme
from pipeline.rules.frame import PREV_BASE
from pipeline.snapshot import FRAME_DTYPES, Scope

CHUNK_SIZE = 20_000  # project ids per chunk (the re-flag's default)
FORECAST_COLUMNS = ("project_id", "code", "flag_now", "flag_at_review", "reasons")


@dataclass(frozen=True)
class ForecastItem:
    """One project that will be worse at the review than now."""

    code: str
    name: str
    leader: str | None
    as_of: date  # D
    review: date  # R
    flag_now: str  # red | yellow | green, computed as of D
    flag_at_review: str  # computed as of R
    reasons: list[dict[str, Any]]  # the reasons at R, as the scheme words them
    leader_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        """SPEC §10's line: code, as_of, review, flag_now, flag_at_review, reasons."""
        return {"code": self.code, "as_of": self.as_of.isoformat(), "review": self.review.isoformat(),
                "flag_now": self.flag_now, "flag_at_review": self.flag_at_review, "reasons": self.reasons}


def review_after(calendar: ReviewCalendar | None, as_of: date, review: date | None) -> date:
    """The review the forecast looks at: ``review`` if given (it must be after D), else the next
    review after D in the calendar."""
    if review is None:
        if calendar is None:
            raise ActionRefused("未指定述职日期，也没有评审日历")
        return calendar.next_review(as_of)
    if review <= as_of:
        raise ActionRefused(f"述职日期 {review.isoformat()} 应晚于截至日期 {as_of.isoformat()}")
    return review


def ytd_scale(as_of: date, day: date) -> Fraction | None:
    """f(day)/f(D) when ``day`` is in D's year (the ytd grows at its pace), else None (no scaling)."""
    return time_progress(day) / time_progress(as_of) if day.year == as_of.year else None


def forecast_scope(session: Session, scope: Scope, *, as_of: date, review: date, scheme: Scheme,
                   compiled: CompiledScheme | None = None, evaluated: pl.DataFrame | None = None) -> pl.DataFrame:
    """Every project of the scope with a report on or before D: ``project_id``, ``code``,
    ``flag_now``, ``flag_at_review`` and ``reasons`` (JSON text of the reasons at R).

    ``evaluated``: the scope's ``evaluate_scope`` frame as of D, when the caller has it already
    (the digests evaluate the digest day anyway)."""
    compiled = compiled or compile_scheme(scheme)
    if evaluated is None:
        evaluated = evaluate_scope(session, scope, as_of, scheme=scheme, compiled=compiled)
    now = evaluated.filter(pl.col("as_of").is_not_null())
    facts = now.select(list(FRAME_DTYPES))
    month_end = previous_month_end(review)
    if month_end >= as_of:
        at_month_end = facts.with_columns(pl.lit(month_end, dtype=pl.Date).alias("as_of"))
        prev = compiled.base_ranks(at_month_end, month_end, ytd_scale=ytd_scale(as_of, month_end))
    else:  # D lies in R's month: the base flag at the end of the month before both, as judged now
        prev = now.get_column(PREV_BASE)
    moved = facts.with_columns(pl.lit(review, dtype=pl.Date).alias("as_of"), prev.cast(pl.UInt8).alias(PREV_BASE))
    at_review = compiled.evaluate(moved, review, ytd_scale=ytd_scale(as_of, review))
    return pl.DataFrame({
        "project_id": now["project_id"], "code": now["code"], "flag_now": now["color"],
        "flag_at_review": at_review["color"], "reasons": at_review["reasons"],
    })


def _worse(frame: pl.DataFrame) -> pl.DataFrame:
    def rank(column: str) -> pl.Expr:
        return pl.col(column).replace_strict(RANKS, return_dtype=pl.UInt8)

    return frame.filter(rank("flag_at_review") > rank("flag_now"))


def _scopes(session: Session, *, leader_id: int | None, unit_id: int | None, chunk_size: int) -> Iterator[Scope]:
    """The whole reserve chunk by chunk, or one leader's (and/or one unit's) projects as one scope."""
    if leader_id is None and unit_id is None:
        yield from reserve_scopes(session, chunk_size)
        return
    owners = {"leader_id": leader_id, "unit_id": unit_id}
    where = " AND ".join(f"{column} = :{column}" for column, owner in owners.items() if owner is not None)
    ids = session.scalars(text(f"SELECT id FROM projects WHERE {where}"),
                          {k: v for k, v in owners.items() if v is not None}).all()
    yield Scope.of_ids(session, ids)


def forecast_frames(session: Session, *, scheme: Scheme, as_of: date, review: date,
                    compiled: CompiledScheme | None = None, leader_id: int | None = None,
                    unit_id: int | None = None, chunk_size: int = CHUNK_SIZE) -> Iterator[pl.DataFrame]:
    """Chunk by chunk, the projects whose flag at R is worse than now (``FORECAST_COLUMNS``)."""
    compiled = compiled or compile_scheme(scheme)
    for scope in _scopes(session, leader_id=leader_id, unit_id=unit_id, chunk_size=chunk_size):
        worse = _worse(forecast_scope(session, scope, as_of=as_of, review=review, scheme=scheme, compiled=compiled))
        if worse.height:
            yield worse


def _names(session: Session, ids: pl.Series) -> pl.DataFrame:
    return bulk.read_frame(
        session,
        "SELECT p.id, p.name, l.name, p.leader_id FROM projects p LEFT JOIN leaders l ON l.id = p.leader_id "
        f"WHERE {bulk.among(session, 'p.id', 'ids')}",
        {"ids": bulk.id_set(session, ids)}, {"project_id": pl.Int64, "name": pl.Utf8, "leader": pl.Utf8, "leader_id": pl.Int64},
    )


def forecast(session: Session, *, scheme: Scheme, as_of: date, calendar: ReviewCalendar | None = None,
             review: date | None = None, compiled: CompiledScheme | None = None, leader_id: int | None = None,
             unit_id: int | None = None, chunk_size: int = CHUNK_SIZE) -> list[ForecastItem]:
    """The projects whose flag at review R will be worse than their flag as of D, sorted by code.

    ``review`` defaults to the calendar's next review after D (``ActionRefused`` when R ≤ D);
    ``leader_id`` / ``unit_id`` restrict it to that leader's / unit's projects. Writes nothing
    (temporary tables only)."""
    r = review_after(calendar, as_of, review)
    frames = list(forecast_frames(session, scheme=scheme, as_of=as_of, review=r, compiled=compiled,
                                  leader_id=leader_id, unit_id=unit_id, chunk_size=chunk_size))
    if not frames:
        return []
    worse = pl.concat(frames)
    worse = worse.join(_names(session, worse["project_id"]), on="project_id", how="left").sort("code")
    return [
        ForecastItem(code=row["code"], name=row["name"], leader=row["leader"], as_of=as_of, review=r,
                     flag_now=row["flag_now"], flag_at_review=row["flag_at_review"], reasons=json.loads(row["reasons"]),
                     leader_id=row["leader_id"])
        for row in worse.iter_rows(named=True)
    ]


__all__ = ["FORECAST_COLUMNS", "ForecastItem", "forecast", "forecast_frames", "forecast_scope", "review_after"]
