"""Month-end flags (SPEC §9): every project's computed flag at the end of every month since its
first report, kept in ``month_flags``.

Two paths keep them whole:
- ``close_month`` computes one month end for a chunk of the reserve (the nightly run, pipeline/
  nightly.py, closes each month end on or before the evaluation date once, chunk by chunk, then
  records a ``MonthClose``);
- ``refresh_months`` recomputes, for the projects a batch touched, every month end from the month
  of the batch's earliest report for them up to D, so a late report re-judges the months it
  changes (whichever order batches arrive in, the month flags end as the reports say).

A month's flag is evaluated as of its last day from the newest report on or before it, and its
ESCALATED rule looks at the base colour of the month before: the previous row of the same
project, or the stored month flag, or (a month not closed yet) an evaluation of the older report.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
from sqlalchemy import text
from sqlalchemy.orm import Session

from pipeline import bulk
from pipeline.reflag import RANKS, month_closed, previous_bases
from pipeline.rules import Scheme, previous_month_end
from pipeline.rules.columnar import CompiledScheme, compile_scheme
from pipeline.states import UpdateStatus
from pipeline.snapshot import Scope, facts_as_of, newest_on_or_before, updates_between
from pipeline.trends import drop_trends_from

_MONTH_FLAG_COLUMNS = (
    "project_id", "month_end", "update_id", "computed_color", "base_color", "reasons", "scheme", "scheme_version",
)


def last_month_end(d: date) -> date:
    """``d`` when it is the last day of its month, else the end of the month before."""
    return d if (d + timedelta(days=1)).day == 1 else previous_month_end(d)


def month_end_of(d: date) -> date:
    return last_month_end(date(d.year + d.month // 12, d.month % 12 + 1, 1) - timedelta(days=1))


def _to_rows(evaluated: pl.DataFrame, month_end: date | pl.Expr, scheme: Scheme) -> pl.DataFrame:
    month = month_end if isinstance(month_end, pl.Expr) else pl.lit(month_end, dtype=pl.Date)
    return evaluated.select(
        "project_id", month.alias("month_end"), "update_id", pl.col("color").alias("computed_color"),
        "base_color", "reasons", pl.lit(scheme.name).alias("scheme"),
        pl.lit(scheme.version, dtype=pl.Int64).alias("scheme_version"),
    )


def close_month(session: Session, scope: Scope, month_end: date, *, scheme: Scheme,
                compiled: CompiledScheme | None = None, previous_closed: bool | None = None) -> int:
    """Compute the month flags of ``month_end`` for the projects of the scope (those with a report by
    then); returns how many were written. ``previous_closed``: the month before is known to be
    complete for this scope (closed just before, in the same chunk)."""
    compiled = compiled or compile_scheme(scheme)
    facts = facts_as_of(session, scope, month_end).filter(pl.col("as_of").is_not_null())
    bases = previous_bases(session, scope, previous_month_end(month_end), scheme=scheme, compiled=compiled,
                           ids=facts["project_id"], closed=previous_closed)
    facts = facts.join(bases, on="project_id", how="left").with_columns(pl.col("prev_base").fill_null(0))
    rows = _to_rows(compiled.evaluate(facts, month_end), month_end, scheme)
    session.execute(text(f"DELETE FROM month_flags WHERE month_end = :m AND {scope.where('project_id')}"),
                    {"m": month_end, **scope.params})
    bulk.write_frame(session, "month_flags", rows, _MONTH_FLAG_COLUMNS)
    return rows.height


def refresh_months(session: Session, touched: pl.DataFrame, *, as_of: date, scheme: Scheme,
                   compiled: CompiledScheme | None = None) -> int:
    """Recompute the month flags of the ``touched`` projects (columns ``project_id``, ``since``: the
    earliest 报告期 a batch brought for it) for every month end from ``since``'s month to D."""
    last = last_month_end(as_of)
    starts = touched.group_by("project_id").agg(pl.col("since").min()).with_columns(
        pl.col("since").dt.month_start()).filter(pl.col("since") <= last)
    if starts.height == 0:
        return 0
    compiled = compiled or compile_scheme(scheme)
    bulk.temp_table(session, "tmp_month_scope", "id INTEGER PRIMARY KEY, since DATE")
    bulk.write_frame(session, "tmp_month_scope", starts.rename({"project_id": "id"}))
    updates = updates_between(session, "tmp_month_scope", last)
    # Same 报告期 twice: the later arrival is the report of that day.
    updates = updates.unique(subset=["project_id", "as_of"], keep="last", maintain_order=True)
    points = starts.select(
        "project_id",
        pl.date_ranges(pl.col("since"), pl.lit(last), interval="1mo").alias("month_start"),
    ).explode("month_start").with_columns(pl.col("month_start").dt.month_end().alias("month_end")).drop(
        "month_start").sort("month_end")
    at_points = points.join_asof(
        updates.sort("as_of"), left_on="month_end", right_on="as_of", by="project_id", strategy="backward",
        check_sortedness=False,  # both sides are sorted on the key just above
    ).filter(pl.col("as_of").is_not_null()).sort("project_id", "month_end")
    first_bases = _bases_before(session, starts, scheme=scheme, compiled=compiled)
    evaluated = _evaluate_points(at_points, first_bases, compiled)
    session.execute(text(
        # On PostgreSQL the ids probe month_flags' key (the planner, knowing nothing of the temporary
        # table, would otherwise scan the whole table for every batch).
        "DELETE FROM month_flags mf USING tmp_month_scope t WHERE mf.project_id = t.id AND mf.month_end >= t.since "
        f"AND {bulk.among_table(session, 'mf.project_id', 'tmp_month_scope')}" if bulk.is_postgres(session) else
        "DELETE FROM month_flags WHERE project_id IN (SELECT id FROM tmp_month_scope) AND month_end >= "
        "(SELECT t.since FROM tmp_month_scope t WHERE t.id = month_flags.project_id)"))
    rows = _to_rows(evaluated, pl.col("month_end"), scheme)
    bulk.write_frame(session, "month_flags", rows, _MONTH_FLAG_COLUMNS)
    drop_trends_from(session, starts["since"].min())  # the kept trend of these months is out of date
    return rows.height


def _bases_before(session: Session, starts: pl.DataFrame, *, scheme: Scheme,
                  compiled: CompiledScheme) -> pl.DataFrame:
    """Each project's base colour rank at the end of the month before its ``since``: the stored
    month flag, or green when that month is closed without one, else evaluated from its reports."""
    months = starts.with_columns((pl.col("since") - pl.duration(days=1)).alias("before"))
    stored = bulk.read_frame(
        session,
        "SELECT t.id, mf.base_color FROM tmp_month_scope t JOIN month_flags mf ON mf.project_id = t.id "
        "AND mf.month_end = CAST(t.since AS DATE) - 1 "
        f"WHERE {bulk.among_table(session, 'mf.project_id', 'tmp_month_scope')}" if bulk.is_postgres(session) else
        "SELECT t.id, mf.base_color FROM tmp_month_scope t JOIN month_flags mf ON mf.project_id = t.id "
        "AND mf.month_end = date(t.since, '-1 day')",
        {}, {"project_id": pl.Int64, "base_color": pl.Utf8},
    ).select("project_id", pl.col("base_color").replace_strict(RANKS, return_dtype=pl.UInt8).alias("prev_base"))
    missing = months.join(stored, on="project_id", how="anti")
    found = [stored]
    for before, group in missing.group_by("before"):
        day = before[0]
        if month_closed(session, day, scheme):
            found.append(group.select("project_id", pl.lit(0, dtype=pl.UInt8).alias("prev_base")))
        else:
            found.append(_evaluated_base(session, group["project_id"], day, compiled))
    return pl.concat(found)


def _evaluated_base(session: Session, ids: pl.Series, day: date, compiled: CompiledScheme) -> pl.DataFrame:
    earlier = newest_on_or_before(session, ids, day)
    ranks = compiled.base_ranks(earlier.with_columns(pl.lit(0, dtype=pl.UInt8).alias("prev_base")), day)
    return pl.DataFrame({"project_id": earlier["project_id"], "prev_base": ranks})


def _evaluate_points(points: pl.DataFrame, first_bases: pl.DataFrame, compiled: CompiledScheme) -> pl.DataFrame:
    """Evaluate every (project, month end): base colours first (month by month), then each point
    with the base of the project's previous month end as ``prev_base``."""
    months = sorted(points["month_end"].unique().to_list())
    with_base = []
    for month in months:
        part = points.filter(pl.col("month_end") == month)
        ranks = compiled.base_ranks(part.with_columns(pl.lit(0, dtype=pl.UInt8).alias("prev_base")), month)
        with_base.append(part.with_columns(ranks.alias("base_rank")))
    based = pl.concat(with_base).sort("project_id", "month_end")
    # The points of a project are consecutive month ends: the previous point is the month before.
    based = based.join(first_bases, on="project_id", how="left").with_columns(
        pl.col("base_rank").shift(1).over("project_id").fill_null(pl.col("prev_base")).fill_null(0)
        .cast(pl.UInt8).alias("prev_base"),
    )
    out = []
    for month in months:
        part = based.filter(pl.col("month_end") == month).drop("base_rank")
        out.append(compiled.evaluate(part, month))
    return pl.concat(out)


def months_to_close(session: Session, as_of: date, scheme: Scheme) -> list[date]:
    """The month ends on or before D not closed under ``scheme``: after the newest month closed
    under it, or, when none is, from the first report's month."""
    closed = {
        (m if isinstance(m, date) else date.fromisoformat(str(m)[:10]))
        for m, name, version in session.execute(text("SELECT month_end, scheme, scheme_version FROM month_closes"))
        if (name, version) == (scheme.name, scheme.version)
    }
    if closed:
        first = max(closed) + timedelta(days=1)
    else:
        found = session.execute(text("SELECT MIN(as_of) FROM status_updates WHERE status = :applied"),
                                {"applied": UpdateStatus.APPLIED.value}).scalar()
        if found is None:
            return []
        first = found if isinstance(found, date) else date.fromisoformat(str(found)[:10])
    last = last_month_end(as_of)
    months, month = [], month_end_of(first)
    while month <= last:
        months.append(month)
        month = month_end_of(month + timedelta(days=1))
    return months
