"""What a review's digests are made of, read set-based (SPEC §6, §9).

A digest describes the reserve as of its **digest day** (the day it is sent: the review
calendar's ``lead_working_days`` before the review) and compares it with the previous review's
digest day. For each of the two days, the whole reserve (or one leader's projects) is evaluated
as of that day in chunks, the re-flag's evaluation (``evaluate_scope``: each project's newest
report on or before the day, ESCALATED from the base colour at the end of the month before),
with the overrides and acknowledgements in force then and each project's contribution to the
rates; the projects' names, counties, units and leaders come in one more query. Everything a
digest shows (flags, reasons, counts, changes, rates) is then grouped in polars: no query per
leader or per project.

Overrides and acknowledgements: on a day on or after ``current`` (the evaluation date), those in
force now; on an earlier day, those set by then and not revoked by then.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
from pipeline.rules.columnar import CompiledScheme, compile_scheme
from pipeline.snapshot import FRAME_DTYPES, Scope

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


def project_frame(session: Session, scopes: Sequence[Scope]) -> pl.DataFrame:
    """Each project's code, name, county, unit and leader: one query per scope."""
    parts = [bulk.read_frame(
        session,
        f"""SELECT p.id, p.code, p.name, p.county, u.name, p.leader_id, l.name FROM projects p
            LEFT JOIN units u ON u.id = p.unit_id LEFT JOIN leaders l ON l.id = p.leader_id WHERE {scope.where()}""",
        scope.params, PROJECT_SCHEMA) for scope in scopes]
    return pl.concat(parts) if parts else pl.DataFrame(schema=PROJECT_SCHEMA)


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


def flags_on(session: Session, day: date, scopes: Sequence[Scope], *, scheme: Scheme, current: date,
             compiled: CompiledScheme | None = None,
             each: Callable[[Scope, pl.DataFrame], None] | None = None) -> pl.DataFrame:
    """The projects that had a report on or before ``day``, as of that day: ``computed_color``,
    ``color`` (effective), ``reasons`` (JSON text, for red and yellow only), the override in force,
    ``acknowledged``, ``as_of`` (the report's 报告期) and the rate contributions. ``each`` is handed
    every scope's full evaluation as it is made (the forecast starts from it)."""
    compiled = compiled or compile_scheme(scheme)
    parts = [_kept(pl.DataFrame(schema={**FRAME_DTYPES, "color": pl.Utf8, "reasons": pl.Utf8}), day)]
    for scope in scopes:
        evaluated = evaluate_scope(session, scope, day, scheme=scheme, compiled=compiled)
        if each is not None:
            each(scope, evaluated)
        parts.append(_kept(evaluated, day))
    frame = pl.concat(parts)
    acked = acknowledged_on(session, day, current=current)
    return frame.join(overrides_on(session, day, current=current), on="project_id", how="left").with_columns(
        pl.coalesce("override_color", "computed_color").alias("color"),
    ).with_columns(((pl.col("color") == "red") & pl.col("project_id").is_in(acked.implode())).alias("acknowledged"))


__all__ = ["CHUNK", "DigestDates", "digest_dates", "flags_on", "project_frame"]
