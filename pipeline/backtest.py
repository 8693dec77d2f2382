"""The backtest (方案试算, SPEC §10): the scheme in force and a candidate scheme, both evaluated as
of every month end of a range from the stored updates, month by month, side by side.

For each chunk of the reserve, one read gives each project's newest report on or before the end
of the month before the range, and a second every applied report dated within the range; each
month end M then takes each project's newest report on or before M (the later arrival among
equal 报告期). Each scheme keeps its own ESCALATED chain: the base flag at the end of the month
before M is that scheme's own, evaluated the same way (before the range: from the first read).
A project with no report by M is not judged at M (as ``pipeline evaluate`` does not list it).

Nothing is written: the reads use temporary tables only. Memory is bounded by the chunk.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import polars as pl
from sqlalchemy import text
from sqlalchemy.orm import Session

from pipeline import bulk
from pipeline.errors import ActionRefused
from pipeline.months import last_month_end, month_end_of
from pipeline.reflag import RANKS, reserve_scopes
from pipeline.rules import Scheme, previous_month_end
from pipeline.rules.columnar import CompiledScheme, compile_scheme
from pipeline.rules.frame import PREV_BASE
from pipeline.snapshot import FRAME_DTYPES, Scope, facts_as_of, updates_between

CHUNK_SIZE = 20_000  # project ids per chunk (the re-flag's default)
COLORS = ("red", "yellow", "green")


@dataclass(frozen=True)
class ChangedProject:
    """A project whose colour differs between the two schemes at a month end."""

    code: str
    name: str
    current_flag: str
    current_reasons: list[dict[str, Any]]
    candidate_flag: str
    candidate_reasons: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name,
                "current": {"flag": self.current_flag, "reasons": self.current_reasons},
                "candidate": {"flag": self.candidate_flag, "reasons": self.candidate_reasons}}


@dataclass
class BacktestMonth:
    """One month end: the counts under each scheme, how many projects change colour, and (when
    asked for) which."""

    month_end: date
    current: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COLORS, 0))
    candidate: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COLORS, 0))
    changed: int = 0
    projects: list[ChangedProject] = field(default_factory=list)

    @property
    def month(self) -> str:
        return self.month_end.strftime("%Y-%m")

    def to_json(self, *, with_projects: bool = False) -> dict[str, Any]:
        """SPEC §10's line: month, as_of, current, candidate, changed (and the projects)."""
        out: dict[str, Any] = {"month": self.month, "as_of": self.month_end.isoformat(), "current": self.current,
                               "candidate": self.candidate, "changed": self.changed}
        if with_projects:
            out["projects"] = [p.to_json() for p in self.projects]
        return out


def month_ends(first: date, last: date) -> list[date]:
    """The month ends from ``first``'s month to ``last``'s month, in order."""
    months, month = [], month_end_of(first)
    while month <= month_end_of(last):
        months.append(month)
        month = month_end_of(month + timedelta(days=1))
    return months


def parse_month(text: str | None, label: str) -> date | None:
    """``YYYY-MM`` → the first day of that month (None when empty); ``ActionRefused`` naming the
    field (``label``) otherwise."""
    value = (text or "").strip()
    if not value:
        return None
    try:
        year, month = value.split("-")
        return date(int(year), int(month), 1)
    except ValueError as exc:
        raise ActionRefused(f"{label}的月份格式应为 YYYY-MM：{value}") from exc


def month_range(first: date | None, last: date | None, *, today: date) -> list[date]:
    """The month ends from ``first``'s month to ``last``'s; by default the twelve months to the
    last month end on or before ``today``. ``ActionRefused`` when the range runs backwards."""
    end = month_end_of(last) if last is not None else last_month_end(today)
    start = first or end.replace(year=end.year - 1 + (end.month == 12), month=end.month % 12 + 1, day=1)
    if start > end:
        raise ActionRefused(f"起始月份 {start:%Y-%m} 晚于截止月份 {end:%Y-%m}")
    return month_ends(start, end)


def _reports(session: Session, scope: Scope, first: date, last: date) -> pl.DataFrame:
    """The chunk's reports that matter to the range: each project's newest on or before the month
    end before ``first`` and every applied one dated in (that month end, ``last``], sorted by
    project, 报告期 and arrival, one per project and 报告期 (the later arrival)."""
    before = previous_month_end(first)
    start = facts_as_of(session, scope, before).filter(pl.col("as_of").is_not_null())
    bulk.temp_table(session, "tmp_backtest_scope", "id INTEGER PRIMARY KEY, since DATE")
    session.execute(text(f"INSERT INTO tmp_backtest_scope (id, since) SELECT p.id, :since FROM projects p "
                         f"WHERE {scope.where()}"), {"since": before + timedelta(days=1), **scope.params})
    during = updates_between(session, "tmp_backtest_scope", last)
    return (pl.concat([start.select(list(FRAME_DTYPES)), during.select(list(FRAME_DTYPES))])
            .sort("project_id", "as_of", "update_id")
            .unique(subset=["project_id", "as_of"], keep="last", maintain_order=True))


class _Chain:
    """One scheme's month-to-month evaluation of a chunk: each month's flags, with ESCALATED from
    the base colour the same scheme gave at the month end before."""

    def __init__(self, compiled: CompiledScheme, reports: pl.DataFrame, before: date) -> None:
        self.compiled = compiled
        start = reports.filter(pl.col("as_of") <= before).unique("project_id", keep="last", maintain_order=True)
        ranks = compiled.base_ranks(start.with_columns(pl.lit(0, dtype=pl.UInt8).alias(PREV_BASE)), before)
        self.bases = pl.DataFrame({"project_id": start["project_id"], PREV_BASE: ranks})

    def evaluate(self, facts: pl.DataFrame, month_end: date) -> pl.DataFrame:
        """``facts`` (the month's reports) judged as of the month end; remembers its base colours."""
        framed = facts.join(self.bases, on="project_id", how="left", maintain_order="left").with_columns(
            pl.col(PREV_BASE).fill_null(0).cast(pl.UInt8))
        judged = self.compiled.evaluate(framed, month_end)
        self.bases = judged.select(
            "project_id", pl.col("base_color").replace_strict(RANKS, return_dtype=pl.UInt8).alias(PREV_BASE))
        return judged


def _names(session: Session, ids: pl.Series) -> dict[int, str]:
    found = bulk.read_frame(session, f"SELECT p.id, p.name FROM projects p WHERE {bulk.among(session, 'p.id', 'ids')}",
                            {"ids": bulk.id_set(session, ids)}, {"project_id": pl.Int64, "name": pl.Utf8})
    return dict(zip(found["project_id"].to_list(), found["name"].to_list()))


def _counts(colors: pl.Series) -> dict[str, int]:
    counted = colors.value_counts()
    found = dict(zip(counted[colors.name].to_list(), counted["count"].to_list()))
    return {c: int(found.get(c, 0)) for c in COLORS}


def backtest_scope(session: Session, scope: Scope, months: list[date], *, current: CompiledScheme,
                   candidate: CompiledScheme, with_projects: bool = False) -> Iterator[BacktestMonth]:
    """The months of one chunk (or any scope), in order."""
    before = previous_month_end(months[0])
    reports = _reports(session, scope, months[0], months[-1])
    chains = (_Chain(current, reports, before), _Chain(candidate, reports, before))
    for month_end in months:
        facts = reports.filter(pl.col("as_of") <= month_end).unique("project_id", keep="last", maintain_order=True)
        now, then = (chain.evaluate(facts, month_end) for chain in chains)
        differs = now["color"] != then["color"]
        result = BacktestMonth(month_end, _counts(now["color"]), _counts(then["color"]), int(differs.sum()))
        if with_projects and result.changed:
            a, b = now.filter(differs), then.filter(differs)
            names = _names(session, a["project_id"])
            result.projects = [
                ChangedProject(code, names.get(pid, ""), ca, json.loads(ra), cb, json.loads(rb))
                for pid, code, ca, ra, cb, rb in zip(a["project_id"], a["code"], a["color"], a["reasons"], b["color"],
                                                     b["reasons"])
            ]
        yield result


def backtest(session: Session, *, current: Scheme, candidate: Scheme, months: list[date],
             with_projects: bool = False, chunk_size: int = CHUNK_SIZE) -> list[BacktestMonth]:
    """Both schemes as of every month end in ``months`` (consecutive, in order) over the whole
    reserve, chunk by chunk; the changed projects sorted by code when ``with_projects``. Writes
    nothing (temporary tables only)."""
    if not months:
        return []
    total = {m: BacktestMonth(m) for m in months}
    a, b = compile_scheme(current), compile_scheme(candidate)
    for scope in reserve_scopes(session, chunk_size):
        for part in backtest_scope(session, scope, months, current=a, candidate=b,
                                   with_projects=with_projects):
            month = total[part.month_end]
            for color in COLORS:
                month.current[color] += part.current[color]
                month.candidate[color] += part.candidate[color]
            month.changed += part.changed
            month.projects.extend(part.projects)
    for month in total.values():
        month.projects.sort(key=lambda p: p.code)
    return list(total.values())


__all__ = ["BacktestMonth", "ChangedProject", "backtest", "backtest_scope", "month_ends", "month_range", "parse_month"]
