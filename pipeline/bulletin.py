"""The monthly bulletin 通报 (SPEC §10): for a month end M, the counties ranked by 开工率, 竣工率,
入统率 (SPEC §5, as of M) and by their red share (red projects ÷ the county's projects at M), each
with its change since the previous month end: the material of the city's 奖惩 system.

Rank 1 is the best: the highest rate, the lowest red share. Equal values share a rank (competition
ranking: 1, 1, 3); a county with an empty denominator shows "—" and ranks after every other.
Values stay exact fractions (``Ratio``: numerator and denominator) until they are displayed.

``build_bulletin`` is pure; ``gather_bulletin`` reads what it needs in a few set-based queries:
the rates of both month ends (``rates_as_of``, chunk by chunk) and the red counts, from
the month flags of a closed month, else evaluated as of the month end over the reserve in chunks.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Any

import polars as pl
from sqlalchemy import text
from sqlalchemy.orm import Session

from pipeline import bulk
from pipeline.months import last_month_end, month_end_of
from pipeline.rates import EMPTY_DISPLAY, UNSPECIFIED_GROUP, GroupRates, Ratio
from pipeline.rates_as_of import rates_as_of
from pipeline.reflag import evaluate_scope, month_closed, reserve_scopes
from pipeline.rules import Scheme, previous_month_end
from pipeline.rules.columnar import CompiledScheme

MEASURES: tuple[str, ...] = ("start_rate", "completion_rate", "stats_rate", "red_share")
MEASURE_NAMES = {"start_rate": "开工率", "completion_rate": "竣工率", "stats_rate": "入统率", "red_share": "红牌占比"}
# The numerator and the denominator of each measure, as headings name them.
MEASURE_TERMS = {"start_rate": ("已开工", "应开工"), "completion_rate": ("已竣工", "应竣工"),
                 "stats_rate": ("已入统", "应入统"), "red_share": ("红牌", "项目数")}
HIGHER_IS_BETTER = {"start_rate": True, "completion_rate": True, "stats_rate": True, "red_share": False}
EMPTY = Ratio(0, 0)
_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")


def month_end_of_text(written: str) -> date:
    """The last day of the month written YYYY-MM; ValueError (in Chinese) for anything else."""
    found = _MONTH.match(written.strip())
    if not found or not 1 <= int(found.group(2)) <= 12 or not 1900 <= int(found.group(1)) <= 9998:
        raise ValueError(f"月份格式应为 YYYY-MM：{written}")
    return month_end_of(date(int(found.group(1)), int(found.group(2)), 1))


def bulletin_month(written: str | None, *, evaluated: date) -> date:
    """The month end a bulletin describes: the month written YYYY-MM, or by default the newest
    month end on or before the evaluation date; a month not ended by then is refused (in Chinese)."""
    if written is None or not written.strip():
        return last_month_end(evaluated)
    month_end = month_end_of_text(written)
    if month_end > evaluated:
        raise ValueError(f"{written.strip()} 月尚未结束（评估日期 {evaluated.isoformat()}），只能通报已结束的月份")
    return month_end


def rank(values: Mapping[str, Ratio], *, higher_is_better: bool) -> dict[str, int]:
    """Competition ranks (1 best; equal values share a rank); an empty denominator ranks last."""
    known = {name: ratio.value for name, ratio in values.items() if ratio.value is not None}
    ordered = sorted(v for v in known.values() if v is not None)
    ranks: dict[str, int] = {}
    for name in values:
        value = known.get(name)
        if value is None:
            ranks[name] = len(ordered) + 1
        elif higher_is_better:
            ranks[name] = 1 + len(ordered) - bisect_right(ordered, value)
        else:
            ranks[name] = 1 + bisect_left(ordered, value)
    return ranks


def _fraction_json(value: Fraction | None) -> list[int] | None:
    return None if value is None else [value.numerator, value.denominator]


def _points(value: Fraction) -> str:
    """A change of a rate in percentage points, one decimal, signed: +12.5, -3.0, 0.0."""
    tenths = abs(value) * 1000
    rounded = int(tenths + Fraction(1, 2))
    sign = "+" if value > 0 and rounded else "-" if value < 0 and rounded else ""
    return f"{sign}{rounded // 10}.{rounded % 10}"


@dataclass(frozen=True, slots=True)
class Standing:
    """One county on one measure at M, beside the month before."""

    value: Ratio
    rank: int
    previous: Ratio
    previous_rank: int

    @property
    def change(self) -> Fraction | None:
        """value − previous value (None when either is empty)."""
        now, before = self.value.value, self.previous.value
        return None if now is None or before is None else now - before

    @property
    def rank_change(self) -> int | None:
        """Places gained since the month before (positive: moved up); None when either month's
        value is empty (its rank, last, says nothing of a move)."""
        if not (self.value.denominator and self.previous.denominator):
            return None
        return self.previous_rank - self.rank

    def change_display(self) -> str:
        change = self.change
        return EMPTY_DISPLAY if change is None else _points(change)

    def rank_change_display(self) -> str:
        moved = self.rank_change
        if moved is None:
            return EMPTY_DISPLAY
        return "持平" if moved == 0 else f"↑{moved}" if moved > 0 else f"↓{-moved}"

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value.to_json(), "rank": self.rank, "previous_value": self.previous.to_json(),
                "previous_rank": self.previous_rank, "change": _fraction_json(self.change),
                "rank_change": self.rank_change}


@dataclass(frozen=True, slots=True)
class CountyLine:
    county: str
    projects: int
    standings: Mapping[str, Standing]  # by measure, in MEASURES order

    def __getitem__(self, measure: str) -> Standing:
        return self.standings[measure]


@dataclass(frozen=True, slots=True)
class Bulletin:
    month_end: date
    previous_end: date
    lines: tuple[CountyLine, ...]  # counties in their configured order

    @property
    def month(self) -> str:
        return f"{self.month_end.year:04d}-{self.month_end.month:02d}"

    @property
    def title(self) -> str:
        return f"{self.month_end.year}年{self.month_end.month}月重大项目推进情况通报"

    def ranking(self, measure: str) -> list[CountyLine]:
        """The counties by their rank on ``measure``; equal ranks in the configured order."""
        position = {line.county: i for i, line in enumerate(self.lines)}
        return sorted(self.lines, key=lambda line: (line[measure].rank, position[line.county]))

    def to_json(self) -> list[dict[str, Any]]:
        """One object per county (the `pipeline bulletin --json` lines)."""
        head = {"month": self.month, "as_of": self.month_end.isoformat(), "previous": self.previous_end.isoformat()}
        return [{**head, "county": line.county, "projects": line.projects,
                 **{m: line[m].to_json() for m in MEASURES}} for line in self.lines]


@dataclass(frozen=True, slots=True)
class CountyFigures:
    """What a county's line is made of at one month end."""

    projects: int
    start_rate: Ratio = EMPTY
    completion_rate: Ratio = EMPTY
    stats_rate: Ratio = EMPTY
    red_share: Ratio = EMPTY

    def measure(self, name: str) -> Ratio:
        return getattr(self, name)  # type: ignore[no-any-return]


def county_figures(groups: Iterable[GroupRates], reds: Mapping[str, Ratio]) -> dict[str, CountyFigures]:
    """The figures of each county from its rates (``rates_as_of(..., by="county")``) and its red
    share (red ÷ projects flagged at the month end)."""
    out: dict[str, CountyFigures] = {}
    for g in groups:
        out[g.group] = CountyFigures(g.projects, g.start_rate, g.completion_rate, g.stats_rate,
                                     reds.get(g.group, EMPTY))
    for county, share in reds.items():
        if county not in out:
            out[county] = CountyFigures(share.denominator, red_share=share)
    return out


def counties_in_order(order: Sequence[str], *found: Iterable[str]) -> list[str]:
    """The configured counties (every one, even with no project), then any other found, by name, 未指定 last."""
    others = {name for names in found for name in names} - set(order)
    return [*order, *sorted(others - {UNSPECIFIED_GROUP}), *([UNSPECIFIED_GROUP] if UNSPECIFIED_GROUP in others else [])]


def build_bulletin(month_end: date, previous_end: date, now: Mapping[str, CountyFigures],
                   before: Mapping[str, CountyFigures], *, order: Sequence[str]) -> Bulletin:
    """Rank the counties on each measure at both month ends and put each rank beside the other."""
    counties = counties_in_order(order, now, before)
    blank = CountyFigures(0)
    current = {c: now.get(c, blank) for c in counties}
    earlier = {c: before.get(c, blank) for c in counties}
    standings: dict[str, dict[str, Standing]] = {c: {} for c in counties}
    for measure in MEASURES:
        best_high = HIGHER_IS_BETTER[measure]
        values = {c: f.measure(measure) for c, f in current.items()}
        previous = {c: f.measure(measure) for c, f in earlier.items()}
        ranks = rank(values, higher_is_better=best_high)
        previous_ranks = rank(previous, higher_is_better=best_high)
        for c in counties:
            standings[c][measure] = Standing(values[c], ranks[c], previous[c], previous_ranks[c])
    lines = tuple(CountyLine(c, current[c].projects, standings[c]) for c in counties)
    return Bulletin(month_end, previous_end, lines)


# --- reading -------------------------------------------------------------------------------------


def _named(county: str | None) -> str:
    return (county or "").strip() or UNSPECIFIED_GROUP


def _shares(rows: Iterable[tuple[str | None, int, int]]) -> dict[str, Ratio]:
    """(county, projects, red) rows → red share per county (names as the rates name them)."""
    totals: dict[str, tuple[int, int]] = {}
    for county, projects, red in rows:
        name = _named(county)
        done, due = totals.get(name, (0, 0))
        totals[name] = (done + int(red or 0), due + int(projects))
    return {name: Ratio(red, projects) for name, (red, projects) in totals.items()}


def red_shares(session: Session, month_end: date, *, scheme: Scheme, compiled: CompiledScheme,
               chunk_size: int) -> dict[str, Ratio]:
    """Red projects ÷ projects of each county at ``month_end`` (a project counts from its first
    report): from the month flags when that month is closed under ``scheme``, else evaluated as of
    the month end from the stored reports, chunk by chunk."""
    if month_closed(session, month_end, scheme):
        return _shares(session.execute(text(
            "SELECT p.county, COUNT(*), SUM(CASE WHEN mf.computed_color = 'red' THEN 1 ELSE 0 END) "
            "FROM month_flags mf JOIN projects p ON p.id = mf.project_id WHERE mf.month_end = :m GROUP BY p.county"),
            {"m": month_end}).tuples())
    colours = [
        evaluate_scope(session, scope, month_end, scheme=scheme, compiled=compiled)
        .filter(pl.col("as_of").is_not_null()).select("project_id", "color")
        for scope in reserve_scopes(session, chunk_size)
    ]
    if not colours:
        return {}
    counties = bulk.read_frame(session, "SELECT id, county FROM projects", {},
                               {"project_id": pl.Int64, "county": pl.Utf8})
    grouped = (pl.concat(colours).join(counties, on="project_id", how="left")
               .group_by("county").agg(pl.len().alias("projects"), (pl.col("color") == "red").sum().alias("red")))
    return _shares(grouped.select("county", "projects", "red").iter_rows())


def figures_at(session: Session, month_end: date, *, scheme: Scheme, compiled: CompiledScheme,
               chunk_size: int) -> dict[str, CountyFigures]:
    groups = rates_as_of(session, month_end, by="county", chunk_size=chunk_size)
    return county_figures(groups, red_shares(session, month_end, scheme=scheme, compiled=compiled,
                                             chunk_size=chunk_size))


def gather_bulletin(session: Session, month_end: date, *, scheme: Scheme, compiled: CompiledScheme,
                    order: Sequence[str], chunk_size: int) -> Bulletin:
    """The bulletin of ``month_end`` (a month's last day) beside the month end before it."""
    previous_end = previous_month_end(month_end)
    now = figures_at(session, month_end, scheme=scheme, compiled=compiled, chunk_size=chunk_size)
    before = figures_at(session, previous_end, scheme=scheme, compiled=compiled, chunk_size=chunk_size)
    return build_bulletin(month_end, previous_end, now, before, order=order)
