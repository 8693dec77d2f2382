"""The trend (SPEC §9): for every month end, each group's red, yellow and green counts and its three
rates, for the city and for each county, list, leader and industry, kept in ``month_trends``.

A month end's figures are computed once, set-based: the counts from the month flags of that month
end (grouped in SQL), the rates of every grouping as of the month end (each project's newest report
on or before it) from one chunked pass over the reserve (pipeline/rates_as_of.py), and kept. The nightly run fills the months it closes; a batch that
changes past month flags drops the kept figures from its earliest month on, and they are computed
again the next time they are asked for (``ensure_trends``, which ``trend`` calls), once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import polars as pl
from sqlalchemy import text
from sqlalchemy.orm import Session

from pipeline import bulk
from pipeline.rates import CITY_GROUP, GROUPINGS, UNSPECIFIED_GROUP, GroupRates, MoneyRatio, Ratio
from pipeline.rates_as_of import rates_by

_RATE_COLUMNS = ("start_done", "start_due", "start_year_done", "start_year", "completion_done", "completion_due",
                 "completion_year_done", "completion_year", "stats_done", "stats_due")
COLUMNS = ("month_end", "grouping", "group_name", "red", "yellow", "green", "projects", *_RATE_COLUMNS, "ytd_sum",
           "plan_sum", "computed_at")
_SCHEMA = {
    "month_end": pl.Date, "grouping": pl.Utf8, "group_name": pl.Utf8, "red": pl.Int64, "yellow": pl.Int64,
    "green": pl.Int64, "projects": pl.Int64, **{c: pl.Int64 for c in _RATE_COLUMNS},
    "ytd_sum": pl.Decimal(18, 2), "plan_sum": pl.Decimal(18, 2),
}

_TABLE_SQL = (
    "month_end DATE, grouping VARCHAR(20), group_name VARCHAR(200), "
    + ", ".join(f"{c} INTEGER" for c in ("red", "yellow", "green", "projects", *_RATE_COLUMNS))
    + ", ytd_sum NUMERIC(18, 2), plan_sum NUMERIC(18, 2), computed_at TIMESTAMP WITH TIME ZONE"
)


@dataclass(frozen=True)
class TrendPoint:
    """One group at one month end: its colour counts and its rates as of that day."""

    month_end: date
    group: str
    red: int
    yellow: int
    green: int
    rates: GroupRates

    @property
    def total(self) -> int:
        return self.red + self.yellow + self.green


# --- computing one month end ---------------------------------------------------------------------

def _named(column: str) -> str:
    """The group name as the rates name it: trimmed, 未指定 when empty."""
    return f"COALESCE(NULLIF(TRIM({column}), ''), '{UNSPECIFIED_GROUP}')"


_COUNT_GROUPS = {
    "city": ("", f"'{CITY_GROUP}'"),
    "county": ("", _named("p.county")),
    "industry": ("", _named("p.industry")),
    "leader": ("LEFT JOIN leaders l ON l.id = p.leader_id", _named("l.name")),
    # A project counts once in each of its lists (names trimmed), on no list: 未指定.
    "list": ("LEFT JOIN (SELECT DISTINCT project_id, TRIM(list_name) AS list_name FROM project_lists "
             "WHERE TRIM(list_name) <> '') pl ON pl.project_id = p.id", _named("pl.list_name")),
}


def _counts(session: Session, month_end: date, grouping: str) -> dict[str, dict[str, int]]:
    joins, name = _COUNT_GROUPS[grouping]
    rows = session.execute(text(
        f"SELECT {name} AS g, mf.computed_color, COUNT(*) FROM month_flags mf JOIN projects p ON p.id = mf.project_id "
        f"{joins} WHERE mf.month_end = :m GROUP BY 1, 2"), {"m": month_end})
    out: dict[str, dict[str, int]] = {}
    for group, colour, n in rows:
        out.setdefault(group, {"red": 0, "yellow": 0, "green": 0})[colour] = int(n)
    return out


def _rate_cells(rates: GroupRates) -> dict[str, object]:
    return {
        "projects": rates.projects,
        "start_done": rates.start_rate.numerator, "start_due": rates.start_rate.denominator,
        "start_year_done": rates.start_rate_annual.numerator, "start_year": rates.start_rate_annual.denominator,
        "completion_done": rates.completion_rate.numerator, "completion_due": rates.completion_rate.denominator,
        "completion_year_done": rates.completion_rate_annual.numerator,
        "completion_year": rates.completion_rate_annual.denominator,
        "stats_done": rates.stats_rate.numerator, "stats_due": rates.stats_rate.denominator,
        "ytd_sum": rates.investment.ytd_sum, "plan_sum": rates.investment.plan_sum,
    }


def month_figures(session: Session, month_end: date) -> pl.DataFrame:
    """Every group's row of ``month_end``: counts from the month flags, rates as of the month end."""
    every = rates_by(session, month_end, GROUPINGS)
    rows = []
    for grouping in GROUPINGS:
        counts = _counts(session, month_end, grouping)
        rated = {g.group: g for g in every[grouping]}
        for group in sorted(set(counts) | set(rated)):
            colours = counts.get(group, {"red": 0, "yellow": 0, "green": 0})
            rates = rated.get(group) or _empty(group)
            rows.append({"month_end": month_end, "grouping": grouping, "group_name": group, **colours,
                         **_rate_cells(rates)})
    return pl.DataFrame(rows, schema=_SCHEMA, orient="row")


def _empty(group: str) -> GroupRates:
    zero = Ratio(0, 0)
    return GroupRates(group, 0, zero, zero, zero, zero, zero, MoneyRatio(Decimal(0), Decimal(0)))


# --- keeping them --------------------------------------------------------------------------------

def fill_trends(session: Session, month_ends: Iterable[date], *, now: datetime) -> int:
    """Compute and keep the figures of these month ends (replacing any kept); returns the rows."""
    written = 0
    for month_end in sorted(set(month_ends)):
        frame = month_figures(session, month_end).with_columns(pl.lit(now).alias("computed_at"))
        session.execute(text("DELETE FROM month_trends WHERE month_end = :m"), {"m": month_end})
        written += _insert(session, frame)
    return written


def _insert(session: Session, frame: pl.DataFrame) -> int:
    """Insert through a staging table, keeping rows another transaction kept meanwhile (two
    requests may compute the same missing month at once: the figures are the same)."""
    bulk.temp_table(session, "tmp_month_trends", _TABLE_SQL)
    bulk.write_frame(session, "tmp_month_trends", frame, COLUMNS)
    names = ", ".join(COLUMNS)
    session.execute(bulk.sql(f"INSERT INTO month_trends ({names}) SELECT {names} FROM tmp_month_trends WHERE 1 = 1 "
                             "ON CONFLICT (month_end, grouping, group_name) DO NOTHING"))
    return frame.height


def drop_trends_from(session: Session, first: date) -> None:
    """Forget the kept figures of ``first``'s month end and after (their month flags changed)."""
    session.execute(text("DELETE FROM month_trends WHERE month_end >= :first"), {"first": first})


def missing_months(session: Session) -> list[date]:
    """The month ends that have month flags and no kept figures."""
    rows = session.execute(text(
        "SELECT DISTINCT mf.month_end FROM month_flags mf WHERE NOT EXISTS "
        "(SELECT 1 FROM month_trends t WHERE t.month_end = mf.month_end) ORDER BY mf.month_end")).scalars()
    return [m if isinstance(m, date) else date.fromisoformat(str(m)[:10]) for m in rows]


def ensure_trends(session: Session, *, now: datetime) -> int:
    """Compute the month ends not kept yet (once: they are kept after)."""
    return fill_trends(session, missing_months(session), now=now)


# --- reading -------------------------------------------------------------------------------------

def trend(session: Session, *, group_by: str = "city", group: str | None = None, months: int | None = 12,
          until: date | None = None, now: datetime | None = None) -> list[TrendPoint]:
    """The trend of one grouping (``group_by``: city|county|list|leader|industry), oldest first:
    every group's points, or ``group``'s only (``全市`` for the city); the last ``months`` month
    ends up to ``until`` (all of them with ``months=None``). With ``now``, month ends not kept yet
    are computed first (and kept); without it, only what is kept is read."""
    if group_by not in GROUPINGS:
        raise ValueError(f"unknown grouping {group_by!r}; expected one of {', '.join(GROUPINGS)}")
    if now is not None:
        ensure_trends(session, now=now)
    where = ["grouping = :g"]
    params: dict[str, object] = {"g": group_by}
    if group is not None:
        where.append("group_name = :n")
        params["n"] = group
    if until is not None:
        where.append("month_end <= :until")
        params["until"] = until
    if months is not None:
        bound = "WHERE month_end <= :until" if until is not None else ""
        where.append(f"month_end IN (SELECT month_end FROM (SELECT DISTINCT month_end FROM month_trends {bound} "
                     "ORDER BY month_end DESC LIMIT :k) last_k)")
        params["k"] = months
    frame = bulk.read_frame(
        session, f"SELECT {', '.join(COLUMNS[:-1])} FROM month_trends WHERE {' AND '.join(where)} "
                 "ORDER BY month_end, group_name", params, _SCHEMA)
    return [_point(row) for row in frame.iter_rows(named=True)]


def _point(row: dict) -> TrendPoint:
    rates = GroupRates(
        row["group_name"], row["projects"], Ratio(row["start_done"], row["start_due"]),
        Ratio(row["start_year_done"], row["start_year"]), Ratio(row["completion_done"], row["completion_due"]),
        Ratio(row["completion_year_done"], row["completion_year"]), Ratio(row["stats_done"], row["stats_due"]),
        MoneyRatio(row["ytd_sum"], row["plan_sum"]),
    )
    return TrendPoint(row["month_end"], row["group_name"], row["red"], row["yellow"], row["green"], rates)


def point_on_or_before(points: Sequence[TrendPoint], day: date) -> TrendPoint | None:
    """The newest point dated on or before ``day`` (for "较上次述职": the month end before a review)."""
    found = [p for p in points if p.month_end <= day]
    return found[-1] if found else None


__all__ = [
    "TrendPoint", "drop_trends_from", "ensure_trends", "fill_trends", "missing_months", "month_figures",
    "point_on_or_before", "trend",
]
