"""A review's digests from its material (pipeline.alerts.review_data): every leader's and the
office's, from one chunked pass over the reserve, so planning a review costs two evaluations of
each chunk (the digest day and the previous one) whatever the number of leaders.

Each chunk is reduced to what the digests show before the next is read: colour counts and rate
sums per leader, county and leader name (they add up across chunks), its red and yellow projects,
the projects whose colour changed since the previous digest day, and those the forecast sees
worsening before the review. Memory grows with those lists (what the messages carry), not with the
reserve: the green majority is counted and dropped (SPEC §8).

Each digest describes the reserve as of the review's digest day and compares with the previous
review's digest day (SPEC §9): flags, reasons, counts, rates and changes all come from those two
evaluations, and the message names exactly those dates.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from typing import Any

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
from pipeline.alerts.mapped import Listing, Mapped
from pipeline.alerts.review_data import (
    CHUNK,
    OVERRIDE_SCHEMA,
    PROJECT_SCHEMA,
    DayMarks,
    DigestDates,
    flags_of,
    marks_on,
    project_frame,
)
from pipeline.forecast import forecast_scope
from pipeline.models import Leader
from pipeline.rate_frames import CITY, add_sums, group_names, group_sums, rates_of_sums
from pipeline.rates import GroupRates
from pipeline.reflag import RANKS, reserve_scopes
from pipeline.rules import Scheme
from pipeline.rules.columnar import CompiledScheme, compile_scheme
from pipeline.snapshot import Scope

COLOR_ORDER = {"red": 0, "yellow": 1, "green": 2}
COLOR_COUNTS = tuple((pl.col("color") == c).sum().cast(pl.Int64).alias(c) for c in COLOR_ORDER)
# How a day's rows are summed: a key of ReviewMaterial.now / .then → the group it sums by.
NOW_GROUPS = {
    "county": pl.col("county").alias("group"),  # the office's counties, as written
    "leader_id": pl.col("leader_id").alias("group"),  # each leader's digest
    "leader": pl.col("leader").fill_null(NO_LEADER).alias("group"),  # the office's leaders, by name
}
THEN_GROUPS = {"leader_id": NOW_GROUPS["leader_id"]}
_ROW_SCHEMA = {**PROJECT_SCHEMA, **OVERRIDE_SCHEMA, "color": pl.Utf8, "computed_color": pl.Utf8, "reasons": pl.Utf8,
               "acknowledged": pl.Boolean, "before": pl.Utf8, "flag_now": pl.Utf8, "flag_at_review": pl.Utf8}
FLAGGED_COLUMNS = (
    "project_id", "code", "name", "county", "unit", "leader_id", "leader", "color", "computed_color", "reasons",
    "override_color", "override_reason", "override_by", "override_until", "acknowledged",
)
CHANGE_COLUMNS = ("project_id", "code", "name", "county", "leader_id", "leader", "before", "color")
OUTLOOK_COLUMNS = ("project_id", "flag_now", "flag_at_review", "reasons", *list(PROJECT_SCHEMA)[1:])
# Each change of colour the digests name (before, now) → its label and its place, most urgent first.
SHIFTS = pl.DataFrame(
    [(before, after, label, SHIFT_ORDER[label]) for (before, after), label in SHIFT_LABELS.items()],
    schema={"before": pl.Utf8, "color": pl.Utf8, "label": pl.Utf8, "__order": pl.Int64}, orient="row")


@dataclass(frozen=True)
class ReviewMaterial:
    """What a review's digests show of the reserve (or of some leaders' projects). As of the
    review's digest day: ``now`` (a key of NOW_GROUPS → each group's colour counts and rate sums),
    ``flagged`` (the red and yellow projects: FLAGGED_COLUMNS, listed red first, each colour by code) and
    ``outlook`` (``with_outlook``: the projects whose flag at the review will be worse:
    OUTLOOK_COLUMNS). Against the previous review's digest day (both None without a previous
    review): ``then`` (sums per THEN_GROUPS) and ``changes`` (each project whose colour differs:
    CHANGE_COLUMNS, ``before`` being its colour then, green without a report then, with its
    ``label`` from SHIFTS, listed most urgent first, then by code)."""

    dates: DigestDates
    now: dict[str, pl.DataFrame]
    flagged: Listing
    then: dict[str, pl.DataFrame] | None = None
    changes: Listing | None = None
    outlook: pl.DataFrame | None = None


def _frame(columns: Sequence[str]) -> pl.DataFrame:
    return pl.DataFrame(schema={c: _ROW_SCHEMA[c] for c in columns})


class _Gathering:
    """A review's material, read chunk by chunk: each chunk reduced to what the digests show."""

    def __init__(self, session: Session, dates: DigestDates, *, scheme: Scheme, compiled: CompiledScheme,
                 current: date, forecast: bool):
        self.session, self.dates, self.scheme, self.compiled, self.current = session, dates, scheme, compiled, current
        compare = dates.previous_day is not None
        self.now: dict[str, pl.DataFrame] = {}
        self.then: dict[str, pl.DataFrame] | None = {} if compare else None
        self.flagged = [_frame(FLAGGED_COLUMNS)]
        self.changes = [_frame(CHANGE_COLUMNS)] if compare else None
        self.outlook = [_frame(OUTLOOK_COLUMNS)] if forecast else None

    @cached_property
    def marks_now(self) -> DayMarks:
        return marks_on(self.session, self.dates.day, current=self.current)

    @cached_property
    def marks_then(self) -> DayMarks:
        """(Read only with a previous review: ``then`` is not None.)"""
        return marks_on(self.session, self.dates.previous_day or self.dates.day, current=self.current)

    def read(self, scope: Scope) -> None:
        """Evaluate one chunk as of both days (and forecast it) and keep what the digests show."""
        projects = project_frame(self.session, scope)
        now = flags_of(self.session, scope, self.marks_now, scheme=self.scheme, compiled=self.compiled,
                       each=None if self.outlook is None else self._forecast(projects, self.outlook)
                       ).join(projects, on="project_id", how="inner")
        _add_sums(self.now, now, NOW_GROUPS)
        self.flagged.append(_kept(now.filter(pl.col("color") != "green").select(FLAGGED_COLUMNS)))
        if self.then is None or self.changes is None:
            return
        then = flags_of(self.session, scope, self.marks_then, scheme=self.scheme, compiled=self.compiled).join(
            projects.select("project_id", "leader_id"), on="project_id", how="inner")
        _add_sums(self.then, then, THEN_GROUPS)
        self.changes.append(_kept(now.join(then.select("project_id", pl.col("color").alias("before")),
                                           on="project_id", how="left")
                                  .with_columns(pl.col("before").fill_null("green"))
                                  .filter(pl.col("before") != pl.col("color")).select(CHANGE_COLUMNS)))

    def _forecast(self, projects: pl.DataFrame, into: list[pl.DataFrame]) -> Callable[[Scope, pl.DataFrame], None]:
        """The forecast from the digest day to the review (SPEC §10), from the digest day's own
        evaluation of a chunk: its projects whose flag at the review will be worse, added ``into``."""
        def worsening(scope: Scope, evaluated: pl.DataFrame) -> None:
            found = forecast_scope(self.session, scope, as_of=self.dates.day, review=self.dates.review,
                                   scheme=self.scheme, compiled=self.compiled, evaluated=evaluated)
            rank = {c: pl.col(c).replace_strict(RANKS, return_dtype=pl.UInt8) for c in ("flag_now", "flag_at_review")}
            into.append(_kept(found.filter(rank["flag_at_review"] > rank["flag_now"]).drop("code").join(
                projects, on="project_id", how="inner").select(OUTLOOK_COLUMNS)))
        return worsening

    def share(self) -> dict[str, pl.DataFrame]:
        """What has been gathered so far, as named frames (a chunk task's share of a review)."""
        named = {f"now:{key}": sums for key, sums in self.now.items()}
        named.update({f"then:{key}": sums for key, sums in (self.then or {}).items()})
        lists = {"flagged": self.flagged, "changes": self.changes, "outlook": self.outlook}
        named.update({name: pl.concat(parts) for name, parts in lists.items() if parts is not None})
        return named

    def add_share(self, share: dict[str, pl.DataFrame]) -> None:
        """Another gathering's share (a chunk gathered elsewhere) added to this one."""
        for name, frame in share.items():
            kind, _, key = name.partition(":")
            if kind in ("now", "then"):
                into = self.now if kind == "now" else self.then
                if into is not None:
                    _merge(into, key, frame)
            elif (parts := getattr(self, kind)) is not None:
                parts.append(frame)

    def material(self) -> ReviewMaterial:
        """The gathered lists each as one frame, the flagged projects and the changes listed in the
        order the digests list them rather than copied into it (at national scale they are over
        100 MB): a digest's red or yellow projects are a slice of the listing."""
        flagged = Listing.sorted_by(pl.concat(self.flagged), pl.col("color") != "red", "code")
        changes = None if self.changes is None else Listing.sorted_by(_labelled(pl.concat(self.changes)),
                                                                      "__order", "code")
        return ReviewMaterial(self.dates, self.now, flagged, self.then, changes,
                              None if self.outlook is None else pl.concat(self.outlook))


def _labelled(changes: pl.DataFrame) -> pl.DataFrame:
    """``changes`` with each change's ``label`` and its place (``__order``) from SHIFTS (which names
    every change of colour), its other columns shared, not copied."""
    shift = changes.select("before", "color").join(SHIFTS, on=["before", "color"], how="left", maintain_order="left")
    return changes.with_columns(shift["label"], shift["__order"])


def _kept(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows kept from a chunk, in memory of their own: a filtered frame's text still points into the
    whole chunk's buffers (polars' string views), which would keep every chunk's names and reasons."""
    return rows.with_columns(pl.col(pl.Utf8) + "")  # new strings: the only copy polars offers


def _add_sums(into: dict[str, pl.DataFrame], rows: pl.DataFrame, groups: dict[str, pl.Expr]) -> None:
    for key, group in groups.items():
        _merge(into, key, group_sums(rows, group, *COLOR_COUNTS))


def _merge(into: dict[str, pl.DataFrame], key: str, sums: pl.DataFrame) -> None:
    """``sums`` added to the sums kept under ``key``."""
    into[key] = sums if key not in into else add_sums(into[key], sums)


def gather_share(session: Session, dates: DigestDates, scope: Scope, *, scheme: Scheme, current: date,
                 compiled: CompiledScheme | None = None, with_outlook: bool = True) -> dict[str, pl.DataFrame]:
    """One chunk's share of a review's material (a worker's chunk task), as named frames."""
    gathering = _Gathering(session, dates, scheme=scheme, compiled=compiled or compile_scheme(scheme),
                           current=current, forecast=with_outlook and dates.day < dates.review)
    gathering.read(scope)
    return gathering.share()


def material_of(session: Session, dates: DigestDates, shares: Iterable[dict[str, pl.DataFrame]], *, scheme: Scheme,
                current: date, with_outlook: bool = True) -> ReviewMaterial:
    """A review's material from the shares of all its chunks, gathered anywhere."""
    gathering = _Gathering(session, dates, scheme=scheme, compiled=compile_scheme(scheme), current=current,
                           forecast=with_outlook and dates.day < dates.review)
    for share in shares:
        gathering.add_share(share)
    return gathering.material()


def review_material(session: Session, dates: DigestDates, *, scheme: Scheme, current: date,
                    leader_ids: Sequence[int] | None = None, compiled: CompiledScheme | None = None,
                    with_outlook: bool = False) -> ReviewMaterial:
    """Evaluate the reserve (or the given leaders' projects) chunk by chunk as of the two days of
    ``dates`` and, ``with_outlook``, forecast it from the digest day to the review."""
    if leader_ids is None:
        scopes = reserve_scopes(session, CHUNK)
    else:
        ids = session.scalars(text(f"SELECT p.id FROM projects p WHERE {bulk.among(session, 'p.leader_id', 'leaders')}"),
                              {"leaders": bulk.id_set(session, list(leader_ids))}).all()
        scopes = [Scope.of_ids(session, ids)]
    gathering = _Gathering(session, dates, scheme=scheme, compiled=compiled or compile_scheme(scheme),
                           current=current, forecast=with_outlook and dates.day < dates.review)
    for scope in scopes:
        gathering.read(scope)
    return gathering.material()


# --- pieces -------------------------------------------------------------------------------------------


def _rows(sums: pl.DataFrame | None) -> dict:
    """A sums frame as group → its row."""
    return {} if sums is None else {r["group"]: r for r in sums.iter_rows(named=True)}


def _counts(group: str, row: dict | None) -> ColorCounts:
    row = row or {}
    return ColorCounts(group, red=row.get("red", 0), yellow=row.get("yellow", 0), green=row.get("green", 0))


def _whole(sums: pl.DataFrame | None, label: str) -> tuple[ColorCounts, GroupRates]:
    """The counts (named ``label``) and the rates (as 全市) of all of ``sums``' groups together."""
    total = None if sums is None else add_sums(sums.with_columns(CITY))
    [rates] = rates_of_sums(total, city=True)
    return _counts(label, _rows(total).get(rates.group)), rates


def _flagged(listing: Listing, color: str, *, day: date, names: dict[str, str], link_base: str,
             ) -> Mapped[dict[str, Any], FlaggedProject]:
    """The projects of ``listing`` (red and yellow projects, red first, each colour by code) flagged ``color``."""
    def project(r: dict[str, Any]) -> FlaggedProject:
        return FlaggedProject(
            id=r["project_id"], code=r["code"], name=r["name"], county=r["county"], unit=r["unit"], leader=r["leader"],
            color=r["color"], computed_color=r["computed_color"],
            reasons=_reasons(json.loads(r["reasons"]) if r["reasons"] else (), names),
            override=OverrideNote(r["override_color"], r["computed_color"], r["override_reason"], r["override_by"],
                                  r["override_until"]) if r["override_color"] is not None else None,
            flag_as_of=day, link=_link(link_base, r["code"]), acknowledged=bool(r["acknowledged"]),
        )

    reds = listing.count(pl.col("color") == "red")
    return Mapped(listing.rows(0, reds) if color == "red" else listing.rows(reds), project)


def _changes(listing: Listing | None, *, link_base: str) -> Mapped[dict[str, Any], FlagShift]:
    """The changes of ``listing`` (ReviewMaterial.changes or a part of it), none without a previous review."""
    def shift(r: dict[str, Any]) -> FlagShift:
        return FlagShift(r["code"], r["name"], r["county"], r["leader"], r["before"], r["color"], r["label"],
                         _link(link_base, r["code"]))

    return Mapped([] if listing is None else listing.rows(), shift)


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


def _since_last(m: ReviewMaterial, now: ColorCounts, rates: GroupRates,
                then: tuple[ColorCounts, GroupRates] | None) -> SinceLast | None:
    """较上次述职 for a group whose counts and rates as of the previous digest day are ``then``."""
    label = since_label(m.dates.previous_review, m.dates.previous_day)
    if then is None or label is None:
        return None
    return since_last(label, now, then[0], rates, then[1])


class _Parts:
    """``frame``'s rows by the value of ``column`` (a leader's id; a sums frame's ``group``), each
    part copied out only when asked for: the parts of every leader are never held at once. With
    ``order`` (row positions), each part's rows are in that order."""

    def __init__(self, frame: pl.DataFrame | None, column: str = "leader_id", order: pl.Series | None = None):
        self.frame = frame
        rows: dict[int | None, list[int]] = {}
        if frame is not None and frame.height:
            index = frame.select(pl.col(column).alias("key"), pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"))
            if order is not None:
                index = index[order]
            rows = dict(index.group_by("key", maintain_order=True).agg("row").iter_rows())
        self.rows = rows

    def __contains__(self, key: object) -> bool:
        return key in self.rows

    def get(self, key: int | None) -> pl.DataFrame | None:
        """The rows of ``key`` (none: an empty frame; None without a frame)."""
        return None if self.frame is None else self.of(self.frame, key)

    def of(self, frame: pl.DataFrame, key: int | None) -> pl.DataFrame:
        """The rows of ``key`` in ``frame`` (this part's frame, when the caller knows it is there)."""
        return frame[self.rows[key]] if key in self.rows else frame.clear()

    @classmethod
    def listed(cls, listing: Listing | None) -> _Parts:
        """A listing's rows by leader, each part in the listing's order."""
        return cls(None) if listing is None else cls(listing.frame, order=listing.order)

    def listing(self, key: int | None) -> Listing:
        """The rows of ``key``, copied out in order (one leader's part: a compact frame of its own
        reads faster, row by row, than its rows scattered over the whole)."""
        assert self.frame is not None
        return Listing(self.of(self.frame, key))


@dataclass(frozen=True)
class LeaderRows:
    """One leader's part of a review's material."""

    now: pl.DataFrame | None  # their sums as of the digest day (one group; None: no project reported by then)
    flagged: Listing
    then: pl.DataFrame | None = None  # their sums as of the previous digest day
    changes: Listing | None = None
    outlook: pl.DataFrame | None = None


# --- the digests ----------------------------------------------------------------------------------------


def leader_digest_of(m: ReviewMaterial, leader: Leader, rows: LeaderRows, *, names: dict[str, str],
                     link_base: str) -> LeaderDigest:
    """One leader's digest from their part of the material."""
    d = m.dates
    red, yellow = (_flagged(rows.flagged, color, day=d.day, names=names, link_base=link_base)
                   for color in ("red", "yellow"))
    counts, rates = _whole(rows.now, leader.name)
    then = None if m.then is None else _whole(rows.then, "")
    return LeaderDigest(
        leader=leader.name, leader_title=leader.title, review_date=d.review, as_of=d.day,
        previous_review=d.previous_review, days_left=days_left(d.review, d.day), counts=counts,
        red=red, yellow=yellow, changes=_changes(rows.changes, link_base=link_base),
        rates=rate_line(rates, as_of=d.day, group=leader.name),
        link_base=link_base, previous_as_of=d.previous_day, since_last=_since_last(m, counts, rates, then),
        outlook=_outlook_lines(rows.outlook, names=names, link_base=link_base),
    )


def leader_digests(session: Session, dates: DigestDates, *, scheme: Scheme, link_base: str, current: date,
                   leader_ids: Sequence[int] | None = None, material: ReviewMaterial | None = None,
                   leader_range: tuple[int | None, int | None] | None = None) -> Iterator[LeaderDigest]:
    """The digest of each leader who answers for a project (or of each of ``leader_ids``), by id,
    made one at a time as they are taken (a review's planning renders and stores each before
    the next is made). ``leader_range``: only the leaders whose id lies from its first id (or any)
    up to its second (or on): a part of a review's rendering."""
    if material is None:
        material = review_material(session, dates, scheme=scheme, current=current, leader_ids=leader_ids)
    query = select(Leader).order_by(Leader.id)
    if leader_ids is not None:
        query = query.where(Leader.id.in_(list(leader_ids)))
    if leader_range is not None:
        low, high = leader_range
        query = query.where(*([] if low is None else [Leader.id >= low]), *([] if high is None else [Leader.id < high]))
    now = _Parts(material.now.get("leader_id"), "group")
    then = _Parts(None if material.then is None else material.then.get("leader_id"), "group")
    flagged, changes = _Parts.listed(material.flagged), _Parts.listed(material.changes)
    outlook = _Parts(material.outlook)
    names = _rule_names(scheme)
    leaders = session.scalars(query).all()
    return (
        leader_digest_of(material, leader, LeaderRows(
            now=now.get(leader.id) if leader.id in now else None, flagged=flagged.listing(leader.id),
            then=then.get(leader.id) if leader.id in then else None,
            changes=None if material.changes is None else changes.listing(leader.id), outlook=outlook.get(leader.id),
        ), names=names, link_base=link_base)
        for leader in leaders
        if leader_ids is not None or leader.id in now or leader.id in then
    )


def office_digest_of(m: ReviewMaterial, *, names: dict[str, str], link_base: str,
                     county_order: Sequence[str] = ()) -> OfficeDigest:
    """The city-wide digest; counties in ``county_order`` (the configured order), any others after."""
    d = m.dates
    red, yellow = (_flagged(m.flagged, color, day=d.day, names=names, link_base=link_base)
                   for color in ("red", "yellow"))
    by_county = m.now.get("county")
    rank = {name: i for i, name in enumerate(county_order)}
    counties = sorted(_rows(by_county).items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))
    leaders = sorted((_counts(name, row) for name, row in _rows(m.now.get("leader")).items()),
                     key=lambda c: (-c.red, -c.yellow, c.group == NO_LEADER, c.group))
    city, city_rates = _whole(by_county, "全市")
    county_rates = rates_of_sums(None if by_county is None else add_sums(by_county.with_columns(group_names("group"))),
                                 order=county_order)
    rates = [city_rates, *county_rates]
    then = None if m.then is None else _whole(m.then.get("leader_id"), "")
    return OfficeDigest(
        review_date=d.review, as_of=d.day, previous_review=d.previous_review, days_left=days_left(d.review, d.day),
        city=city, counties=tuple(_counts(name, row) for name, row in counties),
        rates=tuple(rate_line(r, as_of=d.day) for r in rates),
        red=red, leaders=tuple(leaders), changes=_changes(m.changes, link_base=link_base), link_base=link_base,
        yellow=yellow, previous_as_of=d.previous_day,
        since_last=_since_last(m, city, city_rates, then),
        outlook=_outlook_lines(m.outlook, names=names, link_base=link_base),
    )


__all__ = [
    "LeaderRows", "ReviewMaterial", "gather_share", "leader_digest_of", "leader_digests", "material_of",
    "office_digest_of", "review_material",
]
