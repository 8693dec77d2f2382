"""What a review's digests are made of, read set-based (SPEC §6, §9).

A digest describes the reserve as of its **digest day** (the day it is sent: the review
calendar's ``lead_working_days`` before the review) and compares it with the previous review's
digest day. A chunk of the reserve (or one leader's projects) is evaluated as of each of the two
days by the re-flag's evaluation (``evaluate_scope``: each project's newest report on or before
the day, ESCALATED from the base colour at the end of the month before), with the overrides and
acknowledgements in force then (read once per day: ``marks_on``) and each project's contribution
to the rates; the chunk's names, counties, units and leaders come in one more query
(``project_frame``). pipeline.alerts.digests reduces each chunk to what the digests show before
it reads the next: no query per leader or per project, and never the whole reserve at once.

Overrides and acknowledgements: on a day on or after ``current`` (the evaluation date), those in
force now; on an earlier day, those set by then and not revoked by then.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

import polars as pl
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline import bulk
from pipeline.alerts.calendar import ReviewCalendar
from pipeline.models import Acknowledgement, FlagChange, FlagOverride, ProjectFlag
from pipeline.overrides import TURNED_RED
from pipeline.rate_frames import CONTRIBUTION_COLUMNS, contributions
from pipeline.reflag import evaluate_scope
from pipeline.rules import Scheme
from pipeline.rules.columnar import CompiledScheme
from pipeline.snapshot import Scope

CHUNK = 20_000  # project ids evaluated at a time

PROJECT_SCHEMA = {
    "project_id": pl.Int64, "code": pl.Utf8, "name": pl.Utf8, "county": pl.Utf8, "unit": pl.Utf8,
    "leader_id": pl.Int64, "leader": pl.Utf8,
}
OVERRIDE_SCHEMA = {
    "project_id": pl.Int64, "override_color": pl.Utf8, "override_reason": pl.Utf8, "override_by": pl.Utf8,
    "override_until": pl.Date,
}


@dataclass(frozen=True)
class DigestDates:
    """The dates of one review's digest: the review, the day the digest describes (its send date),
    and the previous review with its digest day (what "since the last review" compares with)."""

    review: date
    day: date
    previous_review: date | None = None
    previous_day: date | None = None


def digest_dates(calendar: ReviewCalendar, review: date) -> DigestDates:
    previous = calendar.previous_review(review)
    return DigestDates(review, calendar.digest_day(review), previous, calendar.digest_day(previous))


def project_frame(session: Session, scope: Scope) -> pl.DataFrame:
    """Each project's code, name, county, unit and leader: one query."""
    return bulk.read_frame(
        session,
        f"""SELECT p.id, p.code, p.name, p.county, u.name, p.leader_id, l.name FROM projects p
            LEFT JOIN units u ON u.id = p.unit_id LEFT JOIN leaders l ON l.id = p.leader_id WHERE {scope.where()}""",
        scope.params, PROJECT_SCHEMA)


def _day_end(day: date) -> datetime:
    return datetime.combine(day, datetime.max.time())


def overrides_on(session: Session, day: date, *, current: date) -> pl.DataFrame:
    """The override in force on ``day`` for each project that had one (the newest wins)."""
    query = select(FlagOverride.id, FlagOverride.project_id, FlagOverride.color, FlagOverride.reason,
                   FlagOverride.set_by, FlagOverride.expires_on, FlagOverride.created_at, FlagOverride.revoked_at
                   ).where(FlagOverride.expires_on >= day).order_by(FlagOverride.id)
    found: dict[int, tuple] = {}
    for row in session.execute(query):
        if day >= current:
            in_force = row.revoked_at is None
        else:
            in_force = row.created_at.date() <= day and (row.revoked_at is None or row.revoked_at.date() > day)
        if in_force:
            found[row.project_id] = (row.project_id, row.color, row.reason, row.set_by, row.expires_on)
    return pl.DataFrame(list(found.values()), schema=OVERRIDE_SCHEMA, orient="row")


def acknowledged_on(session: Session, day: date, *, current: date) -> pl.Series:
    """Ids of the projects whose red episode open on ``day`` was acknowledged (by then)."""
    if day >= current:
        episodes = (select(FlagChange.project_id, func.max(FlagChange.id).label("episode"))
                    .join(ProjectFlag, ProjectFlag.project_id == FlagChange.project_id)
                    .where(ProjectFlag.effective_color == "red", TURNED_RED).group_by(FlagChange.project_id))
        acked = Acknowledgement.id.is_not(None)
    else:
        episodes = (select(FlagChange.project_id, func.max(FlagChange.id).label("episode"))
                    .where(TURNED_RED, FlagChange.as_of <= day).group_by(FlagChange.project_id))
        acked = Acknowledgement.created_at <= _day_end(day)
    sub = episodes.subquery()
    ids = session.scalars(select(sub.c.project_id).join(
        Acknowledgement, Acknowledgement.episode_change_id == sub.c.episode).where(acked)).all()
    return pl.Series("project_id", sorted(set(ids)), dtype=pl.Int64)


def _kept(evaluated: pl.DataFrame, day: date) -> pl.DataFrame:
    """What a digest keeps of an evaluated chunk: colour, reasons where not green, rate contributions."""
    return contributions(evaluated.filter(pl.col("as_of").is_not_null()), day).select(
        "project_id", "as_of", pl.col("color").alias("computed_color"),
        pl.when(pl.col("color") != "green").then(pl.col("reasons")).alias("reasons"), *CONTRIBUTION_COLUMNS)


@dataclass(frozen=True)
class DayMarks:
    """What a day's flags take besides each project's evaluation: the overrides in force that day
    and the projects whose open red episode was acknowledged by then."""

    day: date
    overrides: pl.DataFrame
    acknowledged: pl.Series


def marks_on(session: Session, day: date, *, current: date) -> DayMarks:
    return DayMarks(day, overrides_on(session, day, current=current), acknowledged_on(session, day, current=current))


def flags_of(session: Session, scope: Scope, marks: DayMarks, *, scheme: Scheme, compiled: CompiledScheme,
             each: Callable[[Scope, pl.DataFrame], None] | None = None) -> pl.DataFrame:
    """The scope's projects that had a report on or before the marks' day, as of that day:
    ``computed_color``, ``color`` (effective), ``reasons`` (JSON text, for red and yellow only), the
    override in force, ``acknowledged``, ``as_of`` (the report's 报告期) and the rate contributions.
    ``each`` is handed the scope's full evaluation (the forecast starts from it)."""
    evaluated = evaluate_scope(session, scope, marks.day, scheme=scheme, compiled=compiled)
    if each is not None:
        each(scope, evaluated)
    return _kept(evaluated, marks.day).join(marks.overrides, on="project_id", how="left").with_columns(
        pl.coalesce("override_color", "computed_color").alias("color"),
    ).with_columns(((pl.col("color") == "red") & pl.col("project_id").is_in(marks.acknowledged.implode()))
                   .alias("acknowledged"))


__all__ = ["CHUNK", "DayMarks", "DigestDates", "digest_dates", "flags_of", "marks_on", "project_frame"]
