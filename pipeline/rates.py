"""开工率 / 竣工率 / 入统率 and 投资完成率 as of a date, for any grouping (SPEC §5, §7).

Pure: the caller hands in one `RateSubject` per project, built from the project's newest row
on or before D; this module reads no database and no clock. `compute_rates` makes one pass over
the subjects, so the work grows linearly with the number of projects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from rich.table import Table

from pipeline.facts import ProjectFacts
from pipeline.rules.metrics import time_progress

GROUPINGS: tuple[str, ...] = ("city", "county", "list", "leader", "industry")
CITY_GROUP = "全市"
UNSPECIFIED_GROUP = "未指定"
EMPTY_DISPLAY = "—"
STATS_GRACE = timedelta(days=30)  # a project is expected in the statistics 30 days after start


def _percent(value: Fraction) -> str:
    """A percentage with one decimal, rounded half away from zero, computed exactly."""
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    tenths = (2 * magnitude.numerator * 1000 + magnitude.denominator) // (2 * magnitude.denominator)
    return f"{sign}{tenths // 10}.{tenths % 10}%"


def _json_money(amount: Decimal) -> int | float:
    return int(amount) if amount == amount.to_integral_value() else float(amount)


@dataclass(frozen=True, slots=True)
class Ratio:
    """A count ratio kept whole, so nothing is lost to rounding."""

    numerator: int
    denominator: int

    @property
    def value(self) -> Fraction | None:
        return Fraction(self.numerator, self.denominator) if self.denominator else None

    def display(self) -> str:
        value = self.value
        return EMPTY_DISPLAY if value is None else _percent(value)

    def to_json(self) -> list[int]:
        return [self.numerator, self.denominator]


@dataclass(frozen=True, slots=True)
class MoneyRatio:
    """Σ ytd_completed ÷ Σ annual_plan, in 万元."""

    ytd_sum: Decimal
    plan_sum: Decimal

    @property
    def value(self) -> Fraction | None:
        return Fraction(self.ytd_sum) / Fraction(self.plan_sum) if self.plan_sum else None

    def display(self) -> str:
        value = self.value
        return EMPTY_DISPLAY if value is None else _percent(value)

    def to_json(self) -> list[int | float]:
        return [_json_money(self.ytd_sum), _json_money(self.plan_sum)]


@dataclass(frozen=True, slots=True)
class RateSubject:
    """One project as the rates see it: its newest row on or before D, and its groupings."""

    facts: ProjectFacts
    county: str
    lists: tuple[str, ...] = ()
    leader: str | None = None
    industry: str | None = None


@dataclass(frozen=True, slots=True)
class GroupRates:
    group: str
    projects: int
    start_rate: Ratio
    start_rate_annual: Ratio
    completion_rate: Ratio
    completion_rate_annual: Ratio
    stats_rate: Ratio
    investment: MoneyRatio

    def to_json(self) -> dict[str, Any]:
        """The `pipeline rates --json` line for this group, keys in SPEC §7 order."""
        return {
            "group": self.group,
            "start_rate": self.start_rate.to_json(),
            "start_rate_annual": self.start_rate_annual.to_json(),
            "completion_rate": self.completion_rate.to_json(),
            "completion_rate_annual": self.completion_rate_annual.to_json(),
            "stats_rate": self.stats_rate.to_json(),
            "investment": self.investment.to_json(),
        }


@dataclass(slots=True)
class _Tally:
    """Running counts of one group while the subjects stream past."""

    projects: int = 0
    due_start: int = 0
    due_start_done: int = 0
    year_start: int = 0
    year_start_done: int = 0
    due_completion: int = 0
    due_completion_done: int = 0
    year_completion: int = 0
    year_completion_done: int = 0
    stats_due: int = 0
    stats_done: int = 0
    ytd_sum: Decimal = field(default_factory=lambda: Decimal(0))
    plan_sum: Decimal = field(default_factory=lambda: Decimal(0))

    def freeze(self, group: str) -> GroupRates:
        return GroupRates(
            group=group,
            projects=self.projects,
            start_rate=Ratio(self.due_start_done, self.due_start),
            start_rate_annual=Ratio(self.year_start_done, self.year_start),
            completion_rate=Ratio(self.due_completion_done, self.due_completion),
            completion_rate_annual=Ratio(self.year_completion_done, self.year_completion),
            stats_rate=Ratio(self.stats_done, self.stats_due),
            investment=MoneyRatio(self.ytd_sum, self.plan_sum),
        )


@dataclass(frozen=True, slots=True)
class _Contribution:
    """What one project adds to every group it belongs to (computed once per project)."""

    due_start: bool
    due_start_done: bool
    year_start: bool
    year_start_done: bool
    due_completion: bool
    due_completion_done: bool
    year_completion: bool
    year_completion_done: bool
    stats_due: bool
    stats_done: bool
    ytd: Decimal
    plan: Decimal

    def add_to(self, tally: _Tally) -> None:
        tally.projects += 1
        tally.due_start += self.due_start
        tally.due_start_done += self.due_start_done
        tally.year_start += self.year_start
        tally.year_start_done += self.year_start_done
        tally.due_completion += self.due_completion
        tally.due_completion_done += self.due_completion_done
        tally.year_completion += self.year_completion
        tally.year_completion_done += self.year_completion_done
        tally.stats_due += self.stats_due
        tally.stats_done += self.stats_done
        tally.ytd_sum += self.ytd
        tally.plan_sum += self.plan


def _happened_by(when: date | None, as_of: date) -> bool:
    return when is not None and when <= as_of


def _contribution(facts: ProjectFacts, as_of: date) -> _Contribution:
    ps, pc = facts.planned_start, facts.planned_completion
    started = _happened_by(facts.actual_start, as_of)
    completed = _happened_by(facts.actual_completion, as_of)
    year_start = ps is not None and ps.year == as_of.year
    due_start = year_start and ps is not None and ps <= as_of
    year_completion = pc is not None and pc.year == as_of.year
    due_completion = year_completion and pc is not None and pc <= as_of
    stats_due = _happened_by(facts.actual_start, as_of - STATS_GRACE)
    return _Contribution(
        due_start=due_start,
        due_start_done=due_start and started,
        year_start=year_start,
        year_start_done=year_start and started,
        due_completion=due_completion,
        due_completion_done=due_completion and completed,
        year_completion=year_completion,
        year_completion_done=year_completion and completed,
        stats_due=stats_due,
        stats_done=stats_due and _happened_by(facts.stats_included_on, as_of),
        ytd=facts.ytd_completed or Decimal(0),
        plan=facts.annual_plan or Decimal(0),
    )


def _named(value: str | None) -> str:
    text = (value or "").strip()
    return text or UNSPECIFIED_GROUP


def _groups_of(subject: RateSubject, by: str) -> tuple[str, ...]:
    if by == "city":
        return (CITY_GROUP,)
    if by == "county":
        return (_named(subject.county),)
    if by == "leader":
        return (_named(subject.leader),)
    if by == "industry":
        return (_named(subject.industry),)
    # by == "list": one group per distinct list; a project on no list is 未指定
    names = {name.strip() for name in subject.lists if name and name.strip()}
    return tuple(names) if names else (UNSPECIFIED_GROUP,)


def _sort_key(order: Sequence[str]) -> Callable[[str], tuple[int, int, str]]:
    """全市 first, then the names of ``order`` in that order (the configured counties, lists, …),
    then any other group by name (code-point order, deterministic), 未指定 last."""
    rank = {name: i for i, name in enumerate(order)}

    def key(group: str) -> tuple[int, int, str]:
        if group == CITY_GROUP:
            return (0, 0, "")
        if group == UNSPECIFIED_GROUP:
            return (3, 0, "")
        if group in rank:
            return (1, rank[group], "")
        return (2, 0, group)

    return key


def compute_rates(
    subjects: Iterable[RateSubject], *, as_of: date, by: str = "city", order: Sequence[str] = ()
) -> list[GroupRates]:
    """The rates of each group as of `as_of`, groups in ``order`` (the configured order of the
    grouping's names, see ``Reference.order_for``), others after them by name; one pass over the subjects.

    Each subject is one project's newest row on or before `as_of`; a row after it, or the same
    project twice, is a caller's error and raises ValueError. A project on several lists counts in
    each list's group. `by="city"` always yields exactly one group, 全市, even with no projects.
    """
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}; expected one of {', '.join(GROUPINGS)}")
    tallies: dict[str, _Tally] = {CITY_GROUP: _Tally()} if by == "city" else {}
    seen: set[str] = set()
    for subject in subjects:
        facts = subject.facts
        if facts.as_of > as_of:
            raise ValueError(f"project {facts.code}: row of {facts.as_of} is after {as_of}")
        if facts.code in seen:
            raise ValueError(f"project {facts.code} given more than once")
        seen.add(facts.code)
        contribution = _contribution(facts, as_of)
        for group in _groups_of(subject, by):
            tally = tallies.get(group)
            if tally is None:
                tally = tallies[group] = _Tally()
            contribution.add_to(tally)
    return [tallies[group].freeze(group) for group in sort_groups(tallies, order)]


def sort_groups(groups: Iterable[str], order: Sequence[str] = ()) -> list[str]:
    """Group names as the rates list them: 全市, ``order``'s names in order, others by name, 未指定 last."""
    return sorted(groups, key=_sort_key(order))


def _cell(ratio: Ratio, separator: str = " ") -> str:
    if ratio.denominator == 0:
        return EMPTY_DISPLAY
    return f"{ratio.display()}{separator}({ratio.numerator}/{ratio.denominator})"


def format_group_rates(group: GroupRates, as_of: date) -> Table:
    """One group's rates as a narrow table (one rate per line): fits an 80-column terminal."""
    table = Table(title=f"项目推进三率：{group.group}（截至 {as_of.isoformat()}，共 {group.projects} 个项目）")
    table.add_column("指标")
    table.add_column("比率", justify="right")
    table.add_column("分子/分母", justify="right")
    for name, ratio in (("开工率", group.start_rate), ("开工率（全年）", group.start_rate_annual),
                        ("竣工率", group.completion_rate), ("竣工率（全年）", group.completion_rate_annual),
                        ("入统率", group.stats_rate)):
        table.add_row(name, ratio.display(), f"{ratio.numerator}/{ratio.denominator}")
    table.add_row("投资完成率", group.investment.display(),
                  f"{group.investment.ytd_sum:,.0f}/{group.investment.plan_sum:,.0f} 万元")
    table.add_row("序时进度", _percent(time_progress(as_of)), "")
    return table


def format_rates_table(groups: Iterable[GroupRates], as_of: date, *, narrow: bool = False) -> Table:
    """The rates as a rich table for the CLI, with 序时进度 f(D) beside 投资完成率.

    ``narrow`` (a terminal under 120 columns): the annual forms are left out, each ratio's
    numerator/denominator goes on a second line, 序时进度 into the title (all of it is in --json)."""
    progress = _percent(time_progress(as_of))
    if narrow:
        table = Table(title=f"项目推进三率（截至 {as_of.isoformat()}，序时进度 {progress}）")
        table.add_column("分组")
        for heading in ("项目数", "开工率", "竣工率", "入统率", "投资完成率"):
            table.add_column(heading, justify="right")
        for group in groups:
            table.add_row(group.group, str(group.projects), _cell(group.start_rate, "\n"),
                          _cell(group.completion_rate, "\n"), _cell(group.stats_rate, "\n"),
                          group.investment.display())
        return table
    table = Table(title=f"项目推进三率（截至 {as_of.isoformat()}）")
    table.add_column("分组")
    for heading in (
        "项目数",
        "开工率",
        "开工率(全年)",
        "竣工率",
        "竣工率(全年)",
        "入统率",
        "投资完成率",
        "序时进度",
    ):
        table.add_column(heading, justify="right")
    for group in groups:
        table.add_row(
            group.group,
            str(group.projects),
            _cell(group.start_rate),
            _cell(group.start_rate_annual),
            _cell(group.completion_rate),
            _cell(group.completion_rate_annual),
            _cell(group.stats_rate),
            group.investment.display(),
            progress,
        )
    return table
