"""Hypothesis strategies for the rules: evaluation dates, projects aimed at every band edge, and
random schemes written as YAML documents in the scheme grammar."""

from __future__ import annotations

import calendar
import json
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import yaml
from hypothesis import strategies as st

from pipeline.facts import ProjectFacts
from pipeline.rules import Scheme, load_scheme, time_progress
from pipeline.rules.scheme import NUMERIC_OPERATORS, _ExactLoader, parse_scheme

CONFIG = Path(__file__).resolve().parent.parent / "config"
SHIPPED = {name: load_scheme(name, config_dir=CONFIG) for name in ("jingzhou-2024", "yinchuan-2025")}

EDGE_DAYS = (0, 1, 2, 29, 30, 31, 32, 44, 45, 46, 47, 59, 60, 61, 62, 89, 90, 91, 92, 120, 400)


def month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def add_months(d: date, months: int) -> tuple[int, int]:
    index = d.year * 12 + d.month - 1 + months
    return index // 12, index % 12 + 1


# --- D ------------------------------------------------------------------------------------------

SPECIAL_DAYS = (
    date(2024, 2, 29), date(2024, 2, 28), date(2023, 2, 28), date(2024, 3, 1), date(2025, 1, 1), date(2025, 1, 15),
    date(2025, 1, 31), date(2024, 12, 31), date(2024, 6, 15), date(2024, 3, 31), date(2024, 11, 30), date(2026, 2, 28),
)
month_ends = st.builds(month_end, st.integers(2023, 2026), st.integers(1, 12))
evaluation_dates = st.one_of(
    st.sampled_from(SPECIAL_DAYS), month_ends, st.dates(min_value=date(2023, 1, 1), max_value=date(2026, 12, 31)),
)


# --- money ----------------------------------------------------------------------------------------


def cents(amount: int) -> Decimal:
    return Decimal(f"{amount}e-2")  # exact at any size


def pace_edges(scheme: Scheme, d: date, scale: Fraction) -> list[Fraction]:
    """The values of q = ytd / plan on the edges of the scheme's pace bands as of D."""
    f = time_progress(d)
    edges: list[Fraction] = []
    if scale == 0:
        return edges
    for rule in scheme.rules:
        for band in rule.bands:
            low, _, high, _ = band.interval()
            for t in (low, high):
                if t is None:
                    continue
                if rule.metric == "pace_ratio":
                    edges.append(Fraction(t) * f / scale)  # r = s·q / f
                elif rule.metric == "pace_gap":
                    edges.append((f - Fraction(t) / 100) / scale)  # gap = 100·(f − s·q)
    return edges


# Strategies are built once (building one per draw costs more than the draw).
BOOLEANS = st.booleans()
MONEY_KIND = st.sampled_from(["edge", "edge", "edge", "random", "none", "zero", "huge", "tiny"])
EDGE_DELTA = st.sampled_from([-1, 0, 0, 1, 2])
EXPONENT = st.sampled_from([17, 20, 30, 36])
AMOUNT = st.integers(1, 10**12)
NON_POSITIVE = st.sampled_from([Decimal(0), Decimal("-5.00")])
COUNT = st.integers(0, 10**5)
INDEX = st.integers(0, 10**6)
MONTH_DELAY = st.sampled_from((0, 1, 2, 3, 4, 12, 13))
DAY_CHOICE = st.integers(0, 2)
AGE = st.one_of(st.sampled_from((0, 0, 1, 45, 46, 90, 91)), st.integers(0, 400))
NATURE = st.sampled_from(["新开工", "续建"])
SMALL_DAYS = st.integers(0, 300)
PS_KIND = st.sampled_from(["none", "days", "days", "month"])
NONE_ONE_IN = st.integers(0, 3)


@lru_cache(maxsize=None)
def day_offsets(extra: tuple[int, ...] = ()) -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(EDGE_DAYS + extra), st.integers(-400, 800))


def plan_and_ytd(draw: st.DrawFn, edges: list[Fraction]) -> tuple[Decimal | None, Decimal | None]:
    """(annual_plan, ytd_completed): often exactly on a pace edge or a cent either side."""
    kind = draw(MONEY_KIND)
    if kind == "none":
        return (None if draw(BOOLEANS) else cents(draw(AMOUNT))), (None if draw(BOOLEANS) else Decimal(0))
    if kind == "zero":
        return draw(NON_POSITIVE), cents(draw(AMOUNT))
    if kind == "huge":  # beyond 15 significant digits, and beyond Int128 products
        plan = 1 + draw(INDEX) * 10 ** (draw(EXPONENT) - 6)
        ytd = draw(INDEX) * 10 ** (draw(EXPONENT) - 6) + draw(AMOUNT)
        return cents(plan), (None if draw(BOOLEANS) else cents(ytd))
    if kind == "tiny":
        return cents(1 + draw(DAY_CHOICE)), cents(draw(AMOUNT) * 1000)
    if kind == "random" or not edges:
        return cents(draw(AMOUNT)), (None if draw(BOOLEANS) else cents(draw(AMOUNT)))
    q = edges[draw(INDEX) % len(edges)]
    if draw(BOOLEANS) and q.denominator <= 10**9:
        plan = q.denominator * (1 + draw(COUNT))  # q·plan is a whole number of cents
    else:
        plan = draw(AMOUNT) // 10
    on_edge = q * plan
    ytd = on_edge.numerator // on_edge.denominator + draw(EDGE_DELTA)
    return cents(plan), cents(ytd)


def maybe_day(draw: st.DrawFn, d: date, offsets: st.SearchStrategy[int]) -> date | None:
    if draw(NONE_ONE_IN) == 0:
        return None
    return d - timedelta(days=draw(offsets))


def planned_start(draw: st.DrawFn, d: date, extra_days: tuple[int, ...], month_edges: tuple[int, ...]) -> date | None:
    """Often on a day edge, sometimes on a month edge of the delay-month count."""
    kind = draw(PS_KIND)
    if kind == "none":
        return None
    if kind == "days":
        return d - timedelta(days=draw(day_offsets(extra_days)))
    delays = (0, 1, 2, 3, 4, 12, 13, *month_edges)
    delay = delays[draw(INDEX) % len(delays)]  # value = months back + 1
    year, month = add_months(d, -(delay - 1))
    last = calendar.monthrange(year, month)[1]
    return date(year, month, (1, last, min(d.day, last))[draw(DAY_CHOICE)])


problems_text = st.one_of(
    st.none(), st.sampled_from(["征地拆迁", "资金到位慢", 'say "hi"\\now', "换行\n制表\t", "\x00\x1f\x7f\u2028", ""]),
    st.text(max_size=12),
)


@st.composite
def project(
    draw: st.DrawFn, d: date, edges: list[Fraction], *, extra_days: tuple[int, ...] = (), month_edges: tuple[int, ...] = (),
    code: str = "X",
) -> ProjectFacts | None:
    if draw(INDEX) % 10 == 0:
        return None
    offsets = day_offsets(extra_days)
    report = d - timedelta(days=abs(draw(AGE)))  # a row is never dated after D
    plan, ytd = plan_and_ytd(draw, edges)
    return ProjectFacts(
        code=code,
        as_of=report,
        nature=draw(NATURE),
        annual_plan=plan,
        planned_start=planned_start(draw, d, extra_days, month_edges),
        planned_completion=maybe_day(draw, d, offsets),
        actual_start=maybe_day(draw, d, offsets),
        actual_completion=maybe_day(draw, d, SMALL_DAYS),
        stats_included_on=maybe_day(draw, d, SMALL_DAYS),
        cumulative_completed=None if draw(BOOLEANS) else cents(draw(AMOUNT)),
        ytd_completed=ytd,
        needs_coordination=draw(BOOLEANS),
        problems=draw(problems_text),
    )


# --- random schemes --------------------------------------------------------------------------------

NUMERIC_METRICS = (
    "start_overdue_days", "start_delay_month", "completion_overdue_days", "days_since_start_not_in_stats",
    "pace_ratio", "pace_gap", "days_since_report",
)
BOOLEAN_METRICS = ("needs_coordination", "consecutive_yellow")
PLACEHOLDERS = {
    "start_overdue_days": ("planned_start", "overdue_days", "as_of"),
    "start_delay_month": ("planned_start", "overdue_days", "as_of", "delay_month"),
    "completion_overdue_days": ("planned_completion", "overdue_days", "as_of"),
    "days_since_start_not_in_stats": ("actual_start", "days_since_start", "as_of"),
    "pace_ratio": ("ytd_completed", "annual_plan", "time_progress", "target", "as_of", "pace_ratio", "pace_percent"),
    "pace_gap": ("ytd_completed", "annual_plan", "time_progress", "target", "as_of", "pace_gap"),
    "days_since_report": ("report_date", "days_since_report", "as_of"),
    "needs_coordination": ("problems", "as_of"),
    "consecutive_yellow": ("previous_month_end", "as_of"),
}


@lru_cache(maxsize=None)
def _thresholds(metric: str) -> st.SearchStrategy[str]:
    """Threshold text as a file would write it (read exactly by the loader)."""
    if metric == "pace_ratio":
        return st.one_of(st.sampled_from(["0.6", "0.8", "0.5", "1", "0.75", "1.2", "0"]),
                         st.builds(lambda n: str(Decimal(n).scaleb(-3)), st.integers(0, 1500)))
    if metric == "pace_gap":
        return st.one_of(st.sampled_from(["10", "30", "0", "-5", "12.5", "50"]),
                         st.builds(lambda n: str(Decimal(n).scaleb(-2)), st.integers(-5000, 10000)))
    if metric == "start_delay_month":
        return st.one_of(st.integers(0, 14).map(str), st.sampled_from(["1.5", "2.5"]))
    return st.one_of(st.integers(-3, 400).map(str), st.sampled_from(["30.5", "45.25", "60.0"]))


@st.composite
def numeric_bands(draw: st.DrawFn, metric: str) -> dict[str, str]:
    """One or two non-overlapping bands (colour → YAML flow text) from sorted thresholds."""
    points = sorted({Decimal(t) for t in draw(_threshold_lists(metric))})
    colors = draw(COLOR_ORDER)
    if len(points) == 1 or draw(NONE_ONE_IN) == 0:  # one band
        p, q = points[0], points[-1]
        shape = draw(SHAPES)
        if shape == "list" and p < q:
            return {colors[0]: f"[{p}, {q}]"}
        if shape == "between" and p < q:
            return {colors[0]: f"{{above: {p}, max: {q}}}"}
        return {colors[0]: f"{{{shape if shape in NUMERIC_OPERATORS else 'min'}: {p}}}"}
    low_end = points[0] if len(points) == 3 and draw(BOOLEANS) else None
    cut = points[1] if len(points) == 3 else points[0]
    high_end = points[-1] if len(points) >= 2 and points[-1] > cut and draw(BOOLEANS) else None
    closed_below = draw(BOOLEANS)  # the lower band includes the cut, the upper does not
    lower = [f"{'min' if draw(BOOLEANS) else 'above'}: {low_end}"] if low_end is not None else []
    lower.append(f"{'max' if closed_below else 'below'}: {cut}")
    upper = [f"{'above' if closed_below else 'min'}: {cut}"]
    if high_end is not None:
        upper.append(f"{'max' if draw(BOOLEANS) else 'below'}: {high_end}")
    return {colors[0]: "{" + ", ".join(lower) + "}", colors[1]: "{" + ", ".join(upper) + "}"}


@st.composite
def boolean_bands(draw: st.DrawFn) -> dict[str, str]:
    shape = draw(BOOLEAN_SHAPES)
    colors = draw(COLOR_ORDER)
    if shape == "both":
        return {colors[0]: "{equals: true}", colors[1]: "{equals: false}"}
    return {colors[0]: f"{{equals: {shape}}}"}


LITERALS = ("，", "计划", '"quoted"', "back\\slash", "{{braces}}", " ", "已逾期", "%", "\\n", "}}", "{{")
LITERAL = st.sampled_from(LITERALS)
SPEC = st.sampled_from(["", "", "", "", "!r", "!s", ":>12", ":^3"])
SHAPES = st.sampled_from(["min", "above", "max", "below", "between", "list"])
BOOLEAN_SHAPES = st.sampled_from(["true", "false", "both"])
COLOR_ORDER = st.sampled_from([("yellow", "red"), ("red", "yellow")])
RULE_COUNT = st.integers(1, 6)
METRIC = st.sampled_from(NUMERIC_METRICS + BOOLEAN_METRICS)
WHEN = st.sampled_from([None, None, "{month_from: 3}", "{month_to: 6}", "{month_from: 2, month_to: 11}"])


@lru_cache(maxsize=None)
def _threshold_lists(metric: str) -> st.SearchStrategy[list[str]]:
    return st.lists(_thresholds(metric), min_size=1, max_size=3)


@lru_cache(maxsize=None)
def _field_lists(metric: str) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(PLACEHOLDERS[metric]), max_size=5)


@st.composite
def message(draw: st.DrawFn, metric: str) -> str:
    fields = draw(_field_lists(metric))
    parts = ["提示"]  # a message is never blank
    for field in fields:
        parts.append(draw(LITERAL))
        parts.append("{" + field + draw(SPEC) + "}")
    parts.append(draw(LITERAL))
    return "".join(parts)


@st.composite
def random_scheme(draw: st.DrawFn) -> Scheme:
    count = draw(RULE_COUNT)
    lines = ["name: random-city", "version: 7", "title: 随机方案", "rules:"]
    codes = []
    for i in range(count):
        metric = draw(METRIC)
        code = f"R{i}"
        codes.append(code)
        bands = draw(boolean_bands() if metric in BOOLEAN_METRICS else numeric_bands(metric))
        lines += [f"  - code: {code}", f"    name: 规则{i}", f"    metric: {metric}"]
        lines += [f"    {color}: {text}" for color, text in bands.items()]
        when = draw(WHEN)
        if when:
            lines.append(f"    when: {when}")
        lines.append(f"    message: {json.dumps(draw(message(metric)), ensure_ascii=False)}")
    completed = [c for c in codes if draw(NONE_ONE_IN) == 0]
    lines.insert(3, f"completed_projects: [{', '.join(completed)}]")
    document = yaml.load("\n".join(lines) + "\n", Loader=_ExactLoader)  # noqa: S506 - a SafeLoader subclass
    return parse_scheme(document)


def scheme_extras(scheme: Scheme) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(day offsets, delay months) on and around the scheme's integer thresholds."""
    days: set[int] = set()
    months: set[int] = set()
    for rule in scheme.rules:
        for band in rule.bands:
            low, _, high, _ = band.interval()
            for t in (low, high):
                if t is None or rule.metric in ("pace_ratio", "pace_gap"):
                    continue
                f = Fraction(t)
                around = {f.numerator // f.denominator + k for k in (-1, 0, 1, 2)}
                (months if rule.metric == "start_delay_month" else days).update(around)
    return tuple(sorted(d for d in days if -400 <= d <= 800)), tuple(sorted(m for m in months if -24 <= m <= 60))


__all__ = [
    "CONFIG", "SHIPPED", "cents", "evaluation_dates", "month_end", "pace_edges", "project", "random_scheme",
    "scheme_extras",
]
