"""The rates of SPEC §5 over a facts frame (one row per project, its newest report on or before D),
set-based: each project's contribution as boolean and money columns, then one ``group_by`` sum
per grouping, whose sums add up across parts of the reserve (``group_sums``, ``add_sums``) before
they are made into ``GroupRates`` (``rates_of_sums``). Gives exactly what
``pipeline.rates.compute_rates`` gives for the same projects (tests/test_rate_frames.py holds them
equal), at polars speed: the digests of a 100,000-project reserve need the rates of every leader,
county and the city on two days; pipeline/rates_as_of.py reads the rates of any grouping chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal

import polars as pl

from pipeline.rates import CITY_GROUP, STATS_GRACE, GroupRates, MoneyRatio, Ratio, UNSPECIFIED_GROUP, sort_groups

COUNTS = (
    "due_start", "due_start_done", "year_start", "year_start_done", "due_completion", "due_completion_done",
    "year_completion", "year_completion_done", "stats_due", "stats_done",
)
MONEY = ("ytd", "plan")
CONTRIBUTION_COLUMNS = (*COUNTS, *MONEY)
SUMS = ("projects", *COUNTS, *MONEY)  # a group's sums (``group_sums``)
CITY = pl.lit(CITY_GROUP).alias("group")  # the one group of by="city"


def _by(column: str, day: date) -> pl.Expr:
    return (pl.col(column) <= day).fill_null(False)


def contributions(facts: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """``facts`` (FRAME_DTYPES columns) with each project's contribution to its groups' rates as of D;
    a project with no report on or before D (null ``as_of``) contributes nothing, not even a count."""
    has_row = pl.col("as_of").is_not_null()
    year_start = (pl.col("planned_start").dt.year() == as_of.year).fill_null(False)
    year_completion = (pl.col("planned_completion").dt.year() == as_of.year).fill_null(False)
    due_start = year_start & _by("planned_start", as_of)
    due_completion = year_completion & _by("planned_completion", as_of)
    started, completed = _by("actual_start", as_of), _by("actual_completion", as_of)
    stats_due = _by("actual_start", as_of - STATS_GRACE)
    zero = pl.lit(Decimal(0), dtype=pl.Decimal(38, 2))
    return facts.with_columns(
        (due_start & has_row).alias("due_start"), (due_start & started & has_row).alias("due_start_done"),
        (year_start & has_row).alias("year_start"), (year_start & started & has_row).alias("year_start_done"),
        (due_completion & has_row).alias("due_completion"),
        (due_completion & completed & has_row).alias("due_completion_done"),
        (year_completion & has_row).alias("year_completion"),
        (year_completion & completed & has_row).alias("year_completion_done"),
        (stats_due & has_row).alias("stats_due"),
        (stats_due & _by("stats_included_on", as_of) & has_row).alias("stats_done"),
        pl.when(has_row).then(pl.col("ytd_completed").cast(pl.Decimal(38, 2)).fill_null(zero)).otherwise(zero)
        .alias("ytd"),
        pl.when(has_row).then(pl.col("annual_plan").cast(pl.Decimal(38, 2)).fill_null(zero)).otherwise(zero)
        .alias("plan"),
    )


def group_names(column: str) -> pl.Expr:
    """The group of each row named by ``column``, as ``compute_rates`` names it: trimmed, blank as 未指定."""
    named = pl.col(column).cast(pl.Utf8).str.strip_chars()
    return pl.when(named.is_null() | (named == "")).then(pl.lit(UNSPECIFIED_GROUP)).otherwise(named).alias("group")


def group_sums(frame: pl.DataFrame, group: pl.Expr, *extra: pl.Expr) -> pl.DataFrame:
    """``frame``'s rows (each a project's contributions) summed per ``group`` (an expression aliased
    ``group``): columns ``group``, SUMS and ``extra`` (more aggregations that add up across parts,
    such as counts). Sums of parts add up: ``add_sums`` of two parts' sums is the sums of both."""
    return frame.group_by(group).agg(
        pl.len().cast(pl.Int64).alias("projects"), *(pl.col(c).cast(pl.Int64).sum() for c in COUNTS),
        *(pl.col(m).sum() for m in MONEY), *extra)


def add_sums(*parts: pl.DataFrame) -> pl.DataFrame:
    """Several ``group_sums`` frames as one (every column of the groups they share added up)."""
    return pl.concat(parts).group_by("group").agg(pl.exclude("group").sum())


def rates_of_sums(sums: pl.DataFrame | None, *, city: bool = False, order: Sequence[str] = ()) -> list[GroupRates]:
    """The ``GroupRates`` of each group of ``sums`` (None: no group) in ``compute_rates``' order
    (``order``'s names first, then by name, 未指定 last); with ``city``, the one group 全市, present
    even when empty."""
    rows = {} if sums is None else {r["group"]: r for r in sums.iter_rows(named=True)}
    if city and CITY_GROUP not in rows:
        rows[CITY_GROUP] = {"projects": 0, **dict.fromkeys(COUNTS, 0), **dict.fromkeys(MONEY, Decimal(0))}
    return [_freeze(name, rows[name]) for name in sort_groups(rows, order)]


def tally_rates(frame: pl.DataFrame, *, by: str | None = None, order: Sequence[str] = ()) -> list[GroupRates]:
    """The rates of each group of ``frame`` (rows with ``contributions``' columns and ``as_of``):
    grouped by the column ``by`` (its names stripped, blank as 未指定), or all as 全市 when ``by`` is
    None (always exactly that one group). Groups in ``order``, then by name, 未指定 last, as
    ``compute_rates`` orders them."""
    counted = frame.filter(pl.col("as_of").is_not_null())
    group = CITY if by is None else group_names(by)
    return rates_of_sums(group_sums(counted, group), city=by is None, order=order)


def _freeze(group: str, r: dict) -> GroupRates:
    return GroupRates(
        group=group, projects=r["projects"], start_rate=Ratio(r["due_start_done"], r["due_start"]),
        start_rate_annual=Ratio(r["year_start_done"], r["year_start"]),
        completion_rate=Ratio(r["due_completion_done"], r["due_completion"]),
        completion_rate_annual=Ratio(r["year_completion_done"], r["year_completion"]),
        stats_rate=Ratio(r["stats_done"], r["stats_due"]),
        investment=MoneyRatio(Decimal(r["ytd"] or 0), Decimal(r["plan"] or 0)),
    )


__all__ = [
    "CITY", "CONTRIBUTION_COLUMNS", "SUMS", "add_sums", "contributions", "group_names", "group_sums", "rates_of_sums",
    "tally_rates",
]
