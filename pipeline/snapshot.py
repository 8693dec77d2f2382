"""The reserve as of a date: each project's newest report on or before D, as a polars frame.

The fast path reads the current state (``project_states``: each project's newest report) in one
pass over a chunk of projects; only the projects whose newest report is dated after D (a report
from the near future, or a question about the past) are looked up among their stored updates.
Sets of projects are a ``Scope``: an id range (a chunk of the reserve) or a temporary table of ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl
from sqlalchemy.orm import Session

from pipeline import bulk
from pipeline.facts import FACT_FIELDS
from pipeline.rules.frame import FACT_DTYPES
from pipeline.states import UpdateStatus

# A facts frame as the engine takes it, with the project and the report it came from.
FRAME_DTYPES: dict[str, Any] = {
    "project_id": pl.Int64, "code": pl.Utf8, "nature": pl.Utf8, "update_id": pl.Int64,
    **{f: FACT_DTYPES[f] for f in FACT_FIELDS},
}
_FACT_SQL = ", ".join(f"{{t}}.{f}" for f in FACT_FIELDS)


@dataclass(frozen=True)
class Scope:
    """Which projects: an id range ``[lo, hi)`` (a chunk of the reserve), a set of ids (one
    statement parameter, see ``bulk.id_set``), or every project."""

    lo: int | None = None
    hi: int | None = None
    ids: list[int] | str | None = None  # the set as a statement parameter
    ids_sql: str = ""  # the test for the set, with ``{column}`` to fill (``bulk.among``)

    @classmethod
    def of_ids(cls, session: Session, ids: Sequence[int] | pl.Series) -> Scope:
        return cls(ids=bulk.id_set(session, ids), ids_sql=bulk.among(session, "{column}", "scope_ids"))

    @classmethod
    def range(cls, lo: int, hi: int) -> Scope:
        return cls(lo=lo, hi=hi)

    def where(self, column: str = "p.id") -> str:
        if self.ids is not None:
            return self.ids_sql.format(column=column)
        if self.lo is not None and self.hi is not None:
            return f"{column} >= :scope_lo AND {column} < :scope_hi"
        return "1 = 1"

    def also(self, column: str) -> str:
        """The range again, on a joined table's project id (`` AND ...``, for its ON clause): the
        planner does not carry a range across a join, and would read the whole table per chunk.
        (A set of ids is not repeated: each joined row would be tested against the whole set.)"""
        return "" if self.lo is None else f" AND {self.where(column)}"

    @property
    def params(self) -> dict[str, Any]:
        if self.ids is not None:
            return {"scope_ids": self.ids}
        return {"scope_lo": self.lo, "scope_hi": self.hi} if self.lo is not None else {}


def facts_as_of(session: Session, scope: Scope, as_of: date) -> pl.DataFrame:
    """One row per project of the scope: its newest applied report on or before D (``as_of`` null
    when it has none yet), with ``project_id``, ``code``, ``nature`` and the report's ``update_id``."""
    facts = _FACT_SQL.format(t="s")
    current = bulk.read_frame(
        session,
        f"SELECT p.id, p.code, p.nature, s.update_id, {facts} FROM projects p "
        f"LEFT JOIN project_states s ON s.project_id = p.id{scope.also('s.project_id')} WHERE {scope.where()}",
        scope.params, FRAME_DTYPES,
    )
    later = current.filter(pl.col("as_of") > as_of)
    if later.height == 0:
        return current
    earlier = newest_on_or_before(session, later["project_id"], as_of)
    return pl.concat([current.filter(pl.col("as_of").is_null() | (pl.col("as_of") <= as_of)), earlier]).sort(
        "project_id")


def newest_on_or_before(session: Session, project_ids: pl.Series, day: date) -> pl.DataFrame:
    """For the given projects, their newest applied report dated on or before ``day`` (searched
    among the stored updates; a project with none comes back with empty facts)."""
    facts = _FACT_SQL.format(t="u")
    params = {"day": day, "applied": UpdateStatus.APPLIED.value, "ids": bulk.id_set(session, project_ids)}
    chosen = bulk.among(session, "p.id", "ids")
    if bulk.is_postgres(session):
        # Each project probes its own reports, newest first, through the (code, 报告期, id) index and
        # stops at the first applied one: the cost follows the projects asked about, not the
        # stored history (as a join, every chunk of a digest scanned all the updates: 2-3x slower
        # at 100,000 projects with four months of reports, and growing with every month kept).
        return bulk.read_frame(session, f"""
            SELECT p.id, p.code, p.nature, u.id, {facts}
            FROM projects p LEFT JOIN LATERAL (
                SELECT * FROM status_updates u
                WHERE u.project_code = p.code AND u.as_of <= :day AND u.status = :applied
                ORDER BY u.as_of DESC, u.id DESC LIMIT 1) u ON true
            WHERE {chosen} ORDER BY p.id""", params, FRAME_DTYPES)
    found = bulk.read_frame(session, f"""
        SELECT x.project_id, x.code, x.nature, u.id, {facts}
        FROM (SELECT p.id AS project_id, p.code, p.nature, u.id AS uid,
                     ROW_NUMBER() OVER (PARTITION BY p.id ORDER BY u.as_of DESC, u.id DESC) AS rn
              FROM projects p JOIN status_updates u ON u.project_code = p.code
              WHERE u.as_of <= :day AND u.status = :applied AND {chosen}) x
        JOIN status_updates u ON u.id = x.uid WHERE x.rn = 1""", params, FRAME_DTYPES)
    missing = bulk.read_frame(  # only the projects without any such report
        session,
        f"SELECT p.id, p.code, p.nature FROM projects p WHERE {chosen} AND NOT EXISTS (SELECT 1 FROM status_updates u "
        "WHERE u.project_code = p.code AND u.as_of <= :day AND u.status = :applied)",
        params, {"project_id": pl.Int64, "code": pl.Utf8, "nature": pl.Utf8},
    )
    return pl.concat([found, missing], how="diagonal_relaxed").select(list(FRAME_DTYPES)).cast(FRAME_DTYPES)


def updates_between(session: Session, scope_table: str, until: date) -> pl.DataFrame:
    """The applied updates of the projects in ``scope_table(id, since)`` dated from the project's
    ``since`` to ``until``, sorted by project, 报告期 and arrival: the material of month flags."""
    facts = _FACT_SQL.format(t="u")
    return bulk.read_frame(
        session,
        f"""SELECT p.id, p.code, p.nature, u.id, {facts}
            FROM {scope_table} t JOIN projects p ON p.id = t.id
            JOIN status_updates u ON u.project_code = p.code
            WHERE u.as_of >= t.since AND u.as_of <= :until AND u.status = :applied
              AND {bulk.among_table(session, "p.id", scope_table)}""",
        {"until": until, "applied": UpdateStatus.APPLIED.value}, FRAME_DTYPES,
    ).sort("project_id", "as_of", "update_id")
