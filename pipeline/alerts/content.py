"""What an alert says: the dataclasses of a digest or a red notice, and the red notice's gathering.

A red notice reads the stored ``ProjectFlag`` rows (effective colour, computed colour beside an
override, reasons with their numbers). A digest describes the reserve as of a day and compares it
with an earlier day: both evaluated set-based (pipeline.alerts.review_data, pipeline.alerts.digests;
``gather_leader_digest`` and ``gather_office_digest`` here are their entry points for one leader or
the office). ``render`` turns either into a ``RenderedMessage``. Everything comes back sorted (red,
yellow, green, then project code).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction
from functools import cached_property
from typing import Any
from urllib.parse import quote

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from pipeline.alerts.render import (
    RenderedMessage,
    render_leader_digest,
    render_office_digest,
    render_red_notice,
)
from pipeline.models import FlagOverride, Leader, Project, ProjectFlag, Unit
from pipeline.overrides import acknowledged_now
from pipeline.rates import EMPTY_DISPLAY, GroupRates, Ratio
from pipeline.rules import Scheme, time_progress
from pipeline.rules.presentation import rule_names

COLORS: tuple[str, ...] = ("red", "yellow", "green")
COLOR_RANK = {color: rank for rank, color in enumerate(COLORS)}
COLOR_ZH = {"red": "红牌", "yellow": "黄牌", "green": "绿牌"}
NO_LEADER = "（未指定包保领导）"

# (colour at the previous review, colour now) → what the digest calls the change, most urgent first.
SHIFT_LABELS: dict[tuple[str, str], str] = {
    ("green", "red"): "新增红牌",
    ("yellow", "red"): "黄转红",
    ("green", "yellow"): "新增黄牌",
    ("red", "yellow"): "红转黄",
    ("red", "green"): "转为绿牌",
    ("yellow", "green"): "转为绿牌",
}
SHIFT_ORDER = {label: i for i, label in enumerate(dict.fromkeys(SHIFT_LABELS.values()))}


class ContentNotFound(LookupError):
    """The leader or project a message is about does not exist (or has no flag yet)."""


# --- what a message is made of -------------------------------------------------------------------


@dataclass(frozen=True)
class ReasonLine:
    code: str
    name: str | None  # the rule's Chinese name from the scheme (未按期开工), when known
    color: str
    message: str  # the stored message, numbers included

    @property
    def color_zh(self) -> str:
        return COLOR_ZH.get(self.color, self.color)

    @property
    def line(self) -> str:
        return f"{self.name}：{self.message}" if self.name else self.message


@dataclass(frozen=True)
class OverrideNote:
    color: str
    computed_color: str
    reason: str
    set_by: str
    expires_on: date

    @property
    def line(self) -> str:
        return (
            f"人工调整为{COLOR_ZH.get(self.color, self.color)}（计算结果：{COLOR_ZH.get(self.computed_color, self.computed_color)}），"
            f"理由：{self.reason}；调整人：{self.set_by}；有效期至{self.expires_on.isoformat()}"
        )


@dataclass(frozen=True)
class FlaggedProject:
    id: int
    code: str
    name: str
    county: str
    unit: str | None
    leader: str | None
    color: str  # effective
    computed_color: str
    reasons: tuple[ReasonLine, ...]
    override: OverrideNote | None
    flag_as_of: date
    link: str
    acknowledged: bool = False  # red, and this red episode acknowledged by the leader or the office

    @property
    def color_zh(self) -> str:
        return COLOR_ZH.get(self.color, self.color)

    @property
    def flag_label(self) -> str:
        """挂牌 as the tables show it: 红牌, 红牌（已确认）, or 红牌（人工调整，计算为黄牌）."""
        label = self.color_zh + ("（已确认）" if self.acknowledged and self.color == "red" else "")
        if self.override is None or self.computed_color == self.color:
            return label
        return f"{label}（人工调整，计算为{COLOR_ZH.get(self.computed_color, self.computed_color)}）"


@dataclass(frozen=True)
class FlagShift:
    """A project whose effective colour differs from what it was at the previous review."""

    code: str
    name: str
    county: str
    leader: str | None
    before: str
    after: str
    label: str
    link: str

    @property
    def before_zh(self) -> str:
        return COLOR_ZH[self.before]

    @property
    def after_zh(self) -> str:
        return COLOR_ZH[self.after]


@dataclass(frozen=True)
class OutlookLine:
    """A project whose flag at the review will be worse than on the digest day if nothing changes but
    time (SPEC §10's forecast): 述职前将转红 / 将转黄, with the reasons that will fire by then."""

    code: str
    name: str
    county: str
    leader: str | None
    now: str
    at_review: str
    reasons: tuple[ReasonLine, ...]
    link: str

    @property
    def label(self) -> str:
        return "将转红" if self.at_review == "red" else "将转黄"

    @property
    def now_zh(self) -> str:
        return COLOR_ZH[self.now]

    @property
    def at_review_zh(self) -> str:
        return COLOR_ZH[self.at_review]


def count_changes(changes: Iterable[FlagShift]) -> tuple[tuple[str, int], ...]:
    """(label, count) for each kind of change present, most urgent first."""
    tally = Counter(s.label for s in changes)
    return tuple(sorted(tally.items(), key=lambda item: SHIFT_ORDER[item[0]]))


def since_label(previous_review: date | None, previous_as_of: date | None) -> str | None:
    """上次述职（2024年4月30日） or, when that digest described an earlier day, 上次述职（2024年4月30日，
    挂牌截至2024年4月23日）: every date the comparison rests on, named."""
    if previous_review is None:
        return None
    label = f"上次述职（{previous_review.year}年{previous_review.month}月{previous_review.day}日"
    if previous_as_of is not None and previous_as_of != previous_review:
        label += f"，挂牌截至{previous_as_of.year}年{previous_as_of.month}月{previous_as_of.day}日"
    return label + "）"


def _points(change: Fraction | None) -> str:
    """A rate's change in percentage points, one decimal, rounded half away from zero."""
    if change is None:
        return "无可比数据"
    tenths = (abs(change) * 1000 * 2 + 1) // 2
    if tenths == 0:
        return "持平"
    return f"{'+' if change > 0 else '-'}{tenths // 10}.{tenths % 10}个百分点"


def _count_change(change: int) -> str:
    return "持平" if change == 0 else f"{change:+d}个"


@dataclass(frozen=True)
class SinceLast:
    """较上次述职: how the red and yellow counts and the three rates moved since the previous
    review's digest day (each rate's change in percentage points; None: a denominator was empty)."""

    since: str  # 上次述职（…）, as the message names it
    red: int
    yellow: int
    start_rate: Fraction | None
    completion_rate: Fraction | None
    stats_rate: Fraction | None

    @property
    def counts_text(self) -> str:
        return f"红牌{_count_change(self.red)}、黄牌{_count_change(self.yellow)}"

    @property
    def rates_text(self) -> str:
        return (f"开工率{_points(self.start_rate)}、竣工率{_points(self.completion_rate)}、"
                f"入统率{_points(self.stats_rate)}")

    @property
    def line(self) -> str:
        return f"较{self.since}：{self.counts_text}；{self.rates_text}。"


def since_last(since: str, now: ColorCounts, then: ColorCounts, rates_now: GroupRates,
               rates_then: GroupRates) -> SinceLast:
    def change(a: Ratio, b: Ratio) -> Fraction | None:
        return None if a.value is None or b.value is None else a.value - b.value

    return SinceLast(
        since, now.red - then.red, now.yellow - then.yellow, change(rates_now.start_rate, rates_then.start_rate),
        change(rates_now.completion_rate, rates_then.completion_rate), change(rates_now.stats_rate, rates_then.stats_rate),
    )


@dataclass(frozen=True)
class ColorCounts:
    group: str
    red: int = 0
    yellow: int = 0
    green: int = 0

    @property
    def total(self) -> int:
        return self.red + self.yellow + self.green


@dataclass(frozen=True)
class RateLine:
    """The three rates of one group as display strings ("—" for an empty denominator), and the
    figures behind them (for the workbook, which keeps numbers as numbers)."""

    figures: GroupRates
    progress: Fraction  # 序时进度 f(D)
    group: str
    projects: int
    start_rate: str
    start_rate_annual: str
    completion_rate: str
    completion_rate_annual: str
    stats_rate: str
    investment_rate: str
    ytd_completed: str  # 万元
    annual_plan: str  # 万元
    time_progress: str  # 序时进度 f(D)


@dataclass(frozen=True)
class LeaderDigest:
    leader: str
    leader_title: str | None
    review_date: date
    as_of: date
    previous_review: date | None
    days_left: int | None  # calendar days from as_of to the review; None once it has passed
    counts: ColorCounts
    red: Sequence[FlaggedProject]  # at province scale lazy sequences, each item made as it is read
    yellow: Sequence[FlaggedProject]
    changes: Sequence[FlagShift]
    rates: RateLine
    link_base: str
    previous_as_of: date | None = None  # the day the previous review's digest described (its digest day)
    since_last: SinceLast | None = None  # 较上次述职: counts and rates against the previous digest day
    outlook: tuple[OutlookLine, ...] | None = None  # 述职前将转红/转黄 (None: not computed), red first

    @property
    def since(self) -> str | None:
        """What the changes compare with, as the message names it."""
        return since_label(self.previous_review, self.previous_as_of)

    @property
    def all_green(self) -> bool:
        return not self.red and not self.yellow

    @property
    def page_link(self) -> str:
        """The leader's page in the workspace: the same portfolio, kept current."""
        return f"{self.link_base.rstrip('/')}/leaders/{quote(self.leader, safe='')}"

    @property
    def change_counts(self) -> tuple[tuple[str, int], ...]:
        return count_changes(self.changes)


@dataclass(frozen=True)
class OfficeDigest:
    review_date: date
    as_of: date
    previous_review: date | None
    days_left: int | None
    city: ColorCounts
    counties: tuple[ColorCounts, ...]
    rates: tuple[RateLine, ...]  # 全市 first, then each county
    red: Sequence[FlaggedProject]  # at province scale a lazy sequence, each item made as it is read
    leaders: tuple[ColorCounts, ...]  # most red first
    changes: Sequence[FlagShift]
    link_base: str
    yellow: Sequence[FlaggedProject] = ()
    previous_as_of: date | None = None
    since_last: SinceLast | None = None  # the city's
    outlook: tuple[OutlookLine, ...] | None = None

    @property
    def since(self) -> str | None:
        return since_label(self.previous_review, self.previous_as_of)

    @property
    def page_link(self) -> str:
        """The workspace's overview."""
        return f"{self.link_base.rstrip('/')}/"

    @cached_property
    def change_counts(self) -> tuple[tuple[str, int], ...]:
        return count_changes(self.changes)

    @cached_property
    def turned_red(self) -> tuple[FlagShift, ...]:
        """The changes the body lists (the workbook lists them all): projects now red that were not."""
        return tuple(s for s in self.changes if s.after == "red")


@dataclass(frozen=True)
class RedNotice:
    project: FlaggedProject


# --- gathering ---------------------------------------------------------------------------------------


def _link(link_base: str, code: str) -> str:
    return f"{link_base.rstrip('/')}/projects/{quote(code, safe='-')}"


def _rule_names(scheme: Scheme | None) -> dict[str, str]:
    return rule_names(scheme.rules) if scheme is not None else {}


def _reasons(raw: Iterable[dict[str, Any]] | None, names: dict[str, str]) -> tuple[ReasonLine, ...]:
    lines = [
        ReasonLine(code=str(r.get("code", "")), name=names.get(str(r.get("code", ""))), color=str(r.get("color", "")),
                   message=str(r.get("message", "")))
        for r in raw or ()
    ]
    return tuple(sorted(lines, key=lambda r: COLOR_RANK.get(r.color, 3)))  # stable: the scheme's order within a colour


def _sort_key(p: FlaggedProject) -> tuple[int, str]:
    return (COLOR_RANK.get(p.color, 3), p.code)


def load_flagged(
    session: Session, *, where: Sequence[ColumnElement[bool]] = (), scheme: Scheme | None, link_base: str
) -> list[FlaggedProject]:
    """Projects with their stored flags, unit, leader and active override: one query, sorted."""
    query = (
        select(
            Project.id, Project.code, Project.name, Project.county, Unit.name.label("unit"),
            Leader.name.label("leader"), ProjectFlag.effective_color, ProjectFlag.computed_color,
            ProjectFlag.reasons, ProjectFlag.as_of, FlagOverride.color.label("override_color"),
            FlagOverride.reason.label("override_reason"), FlagOverride.set_by, FlagOverride.expires_on,
            acknowledged_now(Project.id).label("acknowledged"),
        )
        .join(ProjectFlag, ProjectFlag.project_id == Project.id)
        .join(Unit, Unit.id == Project.unit_id, isouter=True)
        .join(Leader, Leader.id == Project.leader_id, isouter=True)
        .join(FlagOverride, FlagOverride.id == ProjectFlag.override_id, isouter=True)
        .where(*where)
    )
    names = _rule_names(scheme)
    projects = [
        FlaggedProject(
            id=row.id, code=row.code, name=row.name, county=row.county, unit=row.unit, leader=row.leader,
            color=row.effective_color, computed_color=row.computed_color, reasons=_reasons(row.reasons, names),
            override=OverrideNote(row.override_color, row.computed_color, row.override_reason, row.set_by,
                                  row.expires_on) if row.override_color is not None else None,
            flag_as_of=row.as_of, link=_link(link_base, row.code), acknowledged=bool(row.acknowledged),
        )
        for row in session.execute(query)
    ]
    projects.sort(key=_sort_key)
    return projects


def _percent(value: Fraction) -> str:
    return Ratio(value.numerator, value.denominator).display()


def _money(amount: Decimal) -> str:
    return f"{amount:,.0f}" if amount == amount.to_integral_value() else f"{amount:,.2f}"


def _ratio(ratio: Ratio) -> str:
    return f"{ratio.display()}（{ratio.numerator}/{ratio.denominator}）" if ratio.denominator else EMPTY_DISPLAY


def rate_line(rates: GroupRates, *, as_of: date, group: str | None = None) -> RateLine:
    return RateLine(
        figures=rates, progress=time_progress(as_of), group=group or rates.group, projects=rates.projects, start_rate=_ratio(rates.start_rate),
        start_rate_annual=_ratio(rates.start_rate_annual), completion_rate=_ratio(rates.completion_rate),
        completion_rate_annual=_ratio(rates.completion_rate_annual), stats_rate=_ratio(rates.stats_rate),
        investment_rate=rates.investment.display(), ytd_completed=_money(rates.investment.ytd_sum),
        annual_plan=_money(rates.investment.plan_sum), time_progress=_percent(time_progress(as_of)),
    )


def days_left(review_date: date, as_of: date) -> int | None:
    days = (review_date - as_of).days
    return days if days >= 0 else None


def gather_leader_digest(
    session: Session, *, leader_id: int, review_date: date, as_of: date, previous_review: date | None,
    scheme: Scheme, link_base: str, previous_as_of: date | None = None, current: date | None = None,
) -> LeaderDigest:
    """One leader's digest as of ``as_of``, compared with ``previous_as_of`` (default: the previous
    review's date); see pipeline.alerts.digests."""
    from pipeline.alerts.digests import leader_digests
    from pipeline.alerts.review_data import DigestDates

    dates = DigestDates(review_date, as_of, previous_review, previous_as_of or previous_review)
    found = next(leader_digests(session, dates, scheme=scheme, link_base=link_base, current=current or as_of,
                                leader_ids=[leader_id]), None)
    if found is None:
        raise ContentNotFound(f"包保领导不存在：{leader_id}")
    return found


def gather_office_digest(
    session: Session, *, review_date: date, as_of: date, previous_review: date | None, scheme: Scheme,
    link_base: str, county_order: Sequence[str] = (), previous_as_of: date | None = None,
    current: date | None = None,
) -> OfficeDigest:
    """The city-wide digest; counties in ``county_order`` (the configured order), any others after."""
    from pipeline.alerts.digests import office_digest_of, review_material
    from pipeline.alerts.review_data import DigestDates

    dates = DigestDates(review_date, as_of, previous_review, previous_as_of or previous_review)
    material = review_material(session, dates, scheme=scheme, current=current or as_of)
    return office_digest_of(material, names=_rule_names(scheme), link_base=link_base, county_order=county_order)


def gather_red_notice(session: Session, *, project_id: int, link_base: str, scheme: Scheme | None = None) -> RedNotice:
    found = load_flagged(session, where=[Project.id == project_id], scheme=scheme, link_base=link_base)
    if not found:
        raise ContentNotFound(f"项目不存在或尚未挂牌：{project_id}")
    return RedNotice(project=found[0])


# --- the API planning calls --------------------------------------------------------------------------


def leader_digest(
    session: Session, *, leader_id: int, review_date: date, as_of: date, previous_review: date | None,
    scheme: Scheme, link_base: str, previous_as_of: date | None = None,
) -> RenderedMessage:
    """One leader's 双月述职 digest (SPEC §6): subject, text, HTML, robot markdown and the workbook."""
    return render_leader_digest(gather_leader_digest(
        session, leader_id=leader_id, review_date=review_date, as_of=as_of, previous_review=previous_review,
        scheme=scheme, link_base=link_base, previous_as_of=previous_as_of,
    ))


def office_digest(
    session: Session, *, review_date: date, as_of: date, previous_review: date | None, scheme: Scheme,
    link_base: str, county_order: Sequence[str] = (), previous_as_of: date | None = None,
) -> RenderedMessage:
    """The investment office's city-wide digest for one review."""
    return render_office_digest(gather_office_digest(
        session, review_date=review_date, as_of=as_of, previous_review=previous_review, scheme=scheme,
        link_base=link_base, county_order=county_order, previous_as_of=previous_as_of,
    ))


def red_notice(session: Session, *, project_id: int, link_base: str, scheme: Scheme | None = None) -> RenderedMessage:
    """The notice that a project turned red, for its leader and unit (email and robots)."""
    return render_red_notice(gather_red_notice(session, project_id=project_id, link_base=link_base, scheme=scheme))


__all__ = [
    "COLOR_ZH", "ColorCounts", "ContentNotFound", "FlagShift", "FlaggedProject", "LeaderDigest", "OfficeDigest",
    "OverrideNote", "RateLine", "ReasonLine", "OutlookLine", "RedNotice", "RenderedMessage", "SinceLast", "count_changes", "since_label", "since_last",
    "gather_leader_digest", "gather_office_digest", "gather_red_notice", "leader_digest", "load_flagged",
    "office_digest", "rate_line", "red_notice",
]
