"""A review's digests from its material (pipeline.alerts.review_data): every leader's and the
office's, grouped in polars from one evaluation of the reserve per day, so planning a review
costs two chunked passes over the reserve whatever the number of leaders.

Each digest describes the reserve as of the review's digest day and compares with the previous
review's digest day (SPEC §9): flags, reasons, counts, rates and changes all come from those two
evaluations, and the message names exactly those dates.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date

import polars as pl
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from pipeline import bulk
from pipeline.alerts.content import (
    NO_LEADER,
    SHIFT_LABELS,
    SHIFT_ORDER,
    ColorCounts,
    FlaggedProject,
    FlagShift,
    LeaderDigest,
    OfficeDigest,
    OutlookLine,
    OverrideNote,
    SinceLast,
    _link,
    _reasons,
    _rule_names,
    days_left,
    rate_line,
    since_label,
    since_last,
)
from pipeline.alerts.review_data import CHUNK, DigestDates, flags_on, project_frame
from pipeline.forecast import forecast_scope
from pipeline.models import Leader
from pipeline.rate_frames import CONTRIBUTION_COLUMNS, tally_rates
from pipeline.rates import GroupRates
from pipeline.reflag import RANKS, reserve_scopes
from pipeline.rules import Scheme
from pipeline.rules.columnar import CompiledScheme
from pipeline.snapshot import Scope

COLOR_ORDER = {"red": 0, "yellow": 1, "green": 2}
# What the digests read of the previous digest day: each project's colour (what changed since), its
# leader (whose digest it is in) and its rate contributions (较上次述职). No names, no reasons.
THEN_COLUMNS = ("project_id", "leader_id", "color", "as_of", *CONTRIBUTION_COLUMNS)


@dataclass(frozen=True)
class ReviewMaterial:
    """The reserve (or some leaders' projects) as of a review's digest day (``now``: one row per
    project with a report by that day, its flag, reasons, override, rate contributions and its
    code, name, county, unit and leader) and as of the previous review's digest day (``then``,
    None without a previous review: the same rows, with only ``THEN_COLUMNS``)."""

    dates: DigestDates
    now: pl.DataFrame
    then: pl.DataFrame | None
    outlook: pl.DataFrame | None = None  # the forecast from the digest day to the review (pipeline.forecast)


class _Outlook:
    """The forecast from the digest day to the review (SPEC §10), made chunk by chunk from the digest
    day's own evaluation: the projects whose flag at the review will be worse."""

    def __init__(self, session: Session, dates: DigestDates, *, scheme: Scheme, compiled: CompiledScheme | None):
        self.session, self.dates, self.scheme, self.compiled = session, dates, scheme, compiled
        self.parts: list[pl.DataFrame] = []

    def __call__(self, scope: Scope, evaluated: pl.DataFrame) -> None:
        found = forecast_scope(self.session, scope, as_of=self.dates.day, review=self.dates.review,
                               scheme=self.scheme, compiled=self.compiled, evaluated=evaluated)
        rank = {c: pl.col(c).replace_strict(RANKS, return_dtype=pl.UInt8) for c in ("flag_now", "flag_at_review")}
        self.parts.append(found.filter(rank["flag_at_review"] > rank["flag_now"]).drop("code"))

    def frame(self, projects: pl.DataFrame) -> pl.DataFrame:
        schema = {"project_id": pl.Int64, "flag_now": pl.Utf8, "flag_at_review": pl.Utf8, "reasons": pl.Utf8}
        return pl.concat([pl.DataFrame(schema=schema), *self.parts]).join(projects, on="project_id", how="inner")


def review_material(session: Session, dates: DigestDates, *, scheme: Scheme, current: date,
                    leader_ids: Sequence[int] | None = None, compiled: CompiledScheme | None = None,
                    with_outlook: bool = False) -> ReviewMaterial:
    """Evaluate the reserve (or the given leaders' projects) as of the two days of ``dates`` and,
    ``with_outlook``, forecast it from the digest day to the review."""
    if leader_ids is None:
        scopes = reserve_scopes(session, CHUNK)
    else:
        ids = session.scalars(text(f"SELECT p.id FROM projects p WHERE {bulk.among(session, 'p.leader_id', 'leaders')}"),
                              {"leaders": bulk.id_set(session, list(leader_ids))}).all()
        scopes = [Scope.of_ids(session, ids)]
    projects = project_frame(session, scopes)
    then = None
    if dates.previous_day is not None:
        flags = flags_on(session, dates.previous_day, scopes, scheme=scheme, current=current, compiled=compiled)
        then = flags.join(projects.select("project_id", "leader_id"), on="project_id", how="inner").select(
            THEN_COLUMNS)
    outlook = (_Outlook(session, dates, scheme=scheme, compiled=compiled)
               if with_outlook and dates.day < dates.review else None)
    now = flags_on(session, dates.day, scopes, scheme=scheme, current=current, compiled=compiled, each=outlook).join(
        projects, on="project_id", how="inner")
    return ReviewMaterial(dates, now, then, outlook.frame(projects) if outlook is not None else None)


# --- pieces -------------------------------------------------------------------------------------------


def _counts(group: str, frame: pl.DataFrame) -> ColorCounts:
    tally = dict(frame["color"].value_counts().iter_rows()) if frame.height else {}
    return ColorCounts(group, red=tally.get("red", 0), yellow=tally.get("yellow", 0), green=tally.get("green", 0))


def _flagged(frame: pl.DataFrame, *, day: date, names: dict[str, str], link_base: str) -> list[FlaggedProject]:
    """The red and yellow projects of ``frame``, red first, then by code."""
    rows = frame.filter(pl.col("color").is_in(["red", "yellow"])).with_columns(
        pl.col("color").replace_strict(COLOR_ORDER, return_dtype=pl.UInt8).alias("__rank")).sort("__rank", "code")
    return [
        FlaggedProject(
            id=r["project_id"], code=r["code"], name=r["name"], county=r["county"], unit=r["unit"], leader=r["leader"],
            color=r["color"], computed_color=r["computed_color"],
            reasons=_reasons(json.loads(r["reasons"]) if r["reasons"] else (), names),
            override=OverrideNote(r["override_color"], r["computed_color"], r["override_reason"], r["override_by"],
                                  r["override_until"]) if r["override_color"] is not None else None,
            flag_as_of=day, link=_link(link_base, r["code"]), acknowledged=bool(r["acknowledged"]),
        )
        for r in rows.iter_rows(named=True)
    ]


def _changes(now: pl.DataFrame, then: pl.DataFrame | None, *, link_base: str) -> tuple[FlagShift, ...]:
    """Each project whose colour differs from the previous digest day's (no report then: green)."""
    if then is None or now.height == 0:
        return ()
    moved = now.select("project_id", "code", "name", "county", "leader", "color").join(
        then.select("project_id", pl.col("color").alias("before")), on="project_id", how="left",
    ).with_columns(pl.col("before").fill_null("green")).filter(pl.col("before") != pl.col("color"))
    shifts = [
        FlagShift(r["code"], r["name"], r["county"], r["leader"], r["before"], r["color"], label,
                  _link(link_base, r["code"]))
        for r in moved.iter_rows(named=True)
        if (label := SHIFT_LABELS.get((r["before"], r["color"]))) is not None
    ]
    shifts.sort(key=lambda s: (SHIFT_ORDER[s.label], s.code))
    return tuple(shifts)


def _outlook_lines(frame: pl.DataFrame | None, *, names: dict[str, str], link_base: str,
                   ) -> tuple[OutlookLine, ...] | None:
    """述职前将转红 then 将转黄, each by code."""
    if frame is None:
        return None
    rows = frame.with_columns(pl.col("flag_at_review").replace_strict(COLOR_ORDER, return_dtype=pl.UInt8)
                              .alias("__rank")).sort("__rank", "code")
    return tuple(
        OutlookLine(r["code"], r["name"], r["county"], r["leader"], r["flag_now"], r["flag_at_review"],
                    _reasons(json.loads(r["reasons"]), names), _link(link_base, r["code"]))
        for r in rows.iter_rows(named=True)
    )


def _since_last(m: ReviewMaterial, now: ColorCounts, rates: GroupRates, then: pl.DataFrame | None) -> SinceLast | None:
    """较上次述职 for a group whose rows as of the previous digest day are ``then``."""
    label = since_label(m.dates.previous_review, m.dates.previous_day)
    if then is None or label is None:
        return None
    [rates_then] = tally_rates(then)
    return since_last(label, now, _counts("", then), rates, rates_then)


def _by_leader(frame: pl.DataFrame | None) -> dict[int | None, pl.DataFrame]:
    if frame is None or frame.height == 0:
        return {}
    return {key[0]: part for key, part in frame.partition_by("leader_id", as_dict=True).items()}


# --- the digests ----------------------------------------------------------------------------------------


def leader_digest_of(m: ReviewMaterial, leader: Leader, now: pl.DataFrame, then: pl.DataFrame | None, *,
                     names: dict[str, str], link_base: str, outlook: pl.DataFrame | None = None) -> LeaderDigest:
    """One leader's digest from their rows of the material (``now``, ``then``)."""
    d = m.dates
    flagged = _flagged(now, day=d.day, names=names, link_base=link_base)
    [rates] = tally_rates(now)
    counts = _counts(leader.name, now)
    return LeaderDigest(
        leader=leader.name, leader_title=leader.title, review_date=d.review, as_of=d.day,
        previous_review=d.previous_review, days_left=days_left(d.review, d.day), counts=counts,
        red=tuple(p for p in flagged if p.color == "red"), yellow=tuple(p for p in flagged if p.color == "yellow"),
        changes=_changes(now, then, link_base=link_base), rates=rate_line(rates, as_of=d.day, group=leader.name),
        link_base=link_base, previous_as_of=d.previous_day, since_last=_since_last(m, counts, rates, then),
        outlook=_outlook_lines(outlook, names=names, link_base=link_base),
    )


def leader_digests(session: Session, dates: DigestDates, *, scheme: Scheme, link_base: str, current: date,
                   leader_ids: Sequence[int] | None = None, material: ReviewMaterial | None = None,
                   ) -> Iterator[LeaderDigest]:
    """The digest of each leader who answers for a project (or of each of ``leader_ids``), by id,
    made one at a time as they are taken (a review's planning renders and stores each before
    the next is made)."""
    if material is None:
        material = review_material(session, dates, scheme=scheme, current=current, leader_ids=leader_ids)
    query = select(Leader).order_by(Leader.id)
    if leader_ids is not None:
        query = query.where(Leader.id.in_(list(leader_ids)))
    now, then, outlook = _by_leader(material.now), _by_leader(material.then), _by_leader(material.outlook)
    empty = material.now.clear()
    names = _rule_names(scheme)
    leaders = session.scalars(query).all()
    return (
        leader_digest_of(material, leader, now.get(leader.id, empty),
                         None if material.then is None else then.get(leader.id, empty), names=names,
                         link_base=link_base,
                         outlook=None if material.outlook is None else outlook.get(leader.id, material.outlook.clear()))
        for leader in leaders
        if leader_ids is not None or leader.id in now or leader.id in then
    )


def office_digest_of(m: ReviewMaterial, *, names: dict[str, str], link_base: str,
                     county_order: Sequence[str] = ()) -> OfficeDigest:
    """The city-wide digest; counties in ``county_order`` (the configured order), any others after."""
    d, now = m.dates, m.now
    flagged = _flagged(now, day=d.day, names=names, link_base=link_base)
    rank = {name: i for i, name in enumerate(county_order)}
    counties = sorted(set(now["county"].to_list()), key=lambda n: (rank.get(n, len(rank)), n))
    by_county = {key[0]: part for key, part in now.partition_by("county", as_dict=True).items()} if now.height else {}
    with_leader = now.with_columns(pl.col("leader").fill_null(NO_LEADER))
    by_leader = ({key[0]: part for key, part in with_leader.partition_by("leader", as_dict=True).items()}
                 if now.height else {})
    leaders = sorted((_counts(name, part) for name, part in by_leader.items()),
                     key=lambda c: (-c.red, -c.yellow, c.group == NO_LEADER, c.group))
    rates = [*tally_rates(now), *tally_rates(now, by="county", order=county_order)]
    city = _counts("全市", now)
    return OfficeDigest(
        review_date=d.review, as_of=d.day, previous_review=d.previous_review, days_left=days_left(d.review, d.day),
        city=city, counties=tuple(_counts(name, by_county[name]) for name in counties),
        rates=tuple(rate_line(r, as_of=d.day) for r in rates),
        red=tuple(p for p in flagged if p.color == "red"), leaders=tuple(leaders),
        changes=_changes(now, m.then, link_base=link_base), link_base=link_base,
        yellow=tuple(p for p in flagged if p.color == "yellow"), previous_as_of=d.previous_day,
        since_last=_since_last(m, city, rates[0], m.then),
        outlook=_outlook_lines(m.outlook, names=names, link_base=link_base),
    )


__all__ = ["ReviewMaterial", "leader_digest_of", "leader_digests", "office_digest_of", "review_material"]
