"""The rates of SPEC §5 as of a date D, read from the database: the one home of "the rates of a
grouping as of D" for the trend, the bulletin, the overview and ``pipeline rates``.

Set-based, in chunks of the reserve (``Scope``), in bounded memory: for each chunk, each project's
newest report on or before D (``snapshot.facts_as_of``), its groups (county, industry, leader;
its lists) in one query per kind, its contribution to the rates (``rate_frames.contributions``)
and the chunk's sums per group; the sums of the chunks are added up, and only then made into
``GroupRates``. What is held at once is one chunk and the sums of the groups. The answer is what
``pipeline.rates.compute_rates`` gives for the same projects (tests/test_rates_as_of.py), groups in
the same order. Several groupings come from one pass over the chunks (``rates_by``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date

import polars as pl
from sqlalchemy.orm import Session

from pipeline import bulk
from pipeline.rate_frames import (
    CITY,
    CONTRIBUTION_COLUMNS,
    add_sums,
    contributions,
    group_names,
    group_sums,
    rates_of_sums,
)
from pipeline.rates import GROUPINGS, UNSPECIFIED_GROUP, GroupRates
from pipeline.reflag import reserve_scopes
from pipeline.snapshot import Scope, facts_as_of

CHUNK = 20_000  # project ids read at a time

# What a project is grouped by, and what ``among`` may filter on (with ``code``).
GROUP_SCHEMA = {
    "project_id": pl.Int64, "county": pl.Utf8, "industry": pl.Utf8, "leader": pl.Utf8, "leader_id": pl.Int64,
    "unit_id": pl.Int64,
}
LIST_SCHEMA = {"project_id": pl.Int64, "list_name": pl.Utf8}
_GROUP_COLUMNS = {"county": "county", "industry": "industry", "leader": "leader"}


def rates_as_of(session: Session, as_of: date, *, by: str = "city", order: Sequence[str] = (),
                among: pl.Expr | None = None, chunk_size: int = CHUNK) -> list[GroupRates]:
    """The rates of each group of the grouping ``by`` as of ``as_of``, as ``compute_rates`` orders
    them (``order``: the configured order of the grouping's names). See ``rates_by``."""
    return rates_by(session, as_of, (by,), order=lambda _: order, among=among, chunk_size=chunk_size)[by]


def rates_by(session: Session, as_of: date, groupings: Iterable[str] = GROUPINGS, *,
             order: Callable[[str], Sequence[str]] | None = None, among: pl.Expr | None = None,
             chunk_size: int = CHUNK) -> dict[str, list[GroupRates]]:
    """The rates of each grouping of ``groupings`` (city, county, list, leader, industry) as of
    ``as_of``, from one pass over the reserve: each project counts with its newest applied report
    on or before D (a project with none does not count), in each group it belongs to (a project
    on several lists in each list's group, on none in 未指定). ``order(by)`` gives the configured
    order of a grouping's names (e.g. ``Reference.order_for``). ``among``, a filter over the
    columns of GROUP_SCHEMA and ``code``, keeps only the projects a user may see. ``全市`` is
    always there for the city, even with no project."""
    wanted = tuple(dict.fromkeys(groupings))
    unknown = [by for by in wanted if by not in GROUPINGS]
    if unknown:
        raise ValueError(f"unknown grouping {unknown[0]!r}; expected one of {', '.join(GROUPINGS)}")
    totals: dict[str, pl.DataFrame] = {}
    for scope in reserve_scopes(session, chunk_size):
        for by, sums in _chunk_sums(session, scope, as_of, wanted, among).items():
            totals[by] = sums if by not in totals else add_sums(totals[by], sums)
    return {by: rates_of_sums(totals.get(by), city=by == "city", order=order(by) if order else ()) for by in wanted}


def _chunk_sums(session: Session, scope: Scope, as_of: date, groupings: Sequence[str],
                among: pl.Expr | None) -> dict[str, pl.DataFrame]:
    """One chunk's sums per group of each grouping (only the projects with a report by D)."""
    facts = facts_as_of(session, scope, as_of).filter(pl.col("as_of").is_not_null())
    counted = contributions(facts, as_of).select("project_id", "code", *CONTRIBUTION_COLUMNS)
    if among is not None or set(groupings) - {"city"}:
        counted = counted.join(_groups(session, scope), on="project_id", how="left")
    if among is not None:
        counted = counted.filter(among)
    sums: dict[str, pl.DataFrame] = {}
    for by in groupings:
        if by == "city":
            sums[by] = group_sums(counted, CITY)
        elif by == "list":
            sums[by] = group_sums(_on_lists(counted, _lists(session, scope)), pl.col("group"))
        else:
            sums[by] = group_sums(counted, group_names(_GROUP_COLUMNS[by]))
    return sums


def _groups(session: Session, scope: Scope) -> pl.DataFrame:
    return bulk.read_frame(
        session,
        f"SELECT p.id, p.county, p.industry, l.name, p.leader_id, p.unit_id FROM projects p "
        f"LEFT JOIN leaders l ON l.id = p.leader_id WHERE {scope.where()}",
        scope.params, GROUP_SCHEMA)


def _lists(session: Session, scope: Scope) -> pl.DataFrame:
    """Each project's lists, names trimmed, blanks and repeats dropped."""
    found = bulk.read_frame(session, f"SELECT pl.project_id, pl.list_name FROM project_lists pl "
                                     f"WHERE {scope.where('pl.project_id')}", scope.params, LIST_SCHEMA)
    return (found.with_columns(pl.col("list_name").str.strip_chars().alias("group"))
            .filter(pl.col("group").is_not_null() & (pl.col("group") != "")).select("project_id", "group").unique())


def _on_lists(counted: pl.DataFrame, lists: pl.DataFrame) -> pl.DataFrame:
    """``counted`` once per list of each project (``group``), a project on none once in 未指定."""
    on_some = counted.join(lists, on="project_id", how="inner")
    on_none = counted.join(lists, on="project_id", how="anti").with_columns(pl.lit(UNSPECIFIED_GROUP).alias("group"))
    return pl.concat([on_some, on_none.select(on_some.columns)])


__all__ = ["CHUNK", "GROUP_SCHEMA", "rates_as_of", "rates_by"]
