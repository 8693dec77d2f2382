"""The demo reserve: exact totals, determinism, the template's rules in every row, and slippage."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from calendar import monthrange
from collections import Counter
from datetime import date
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from pipeline.demo import DemoReserve, generate_demo
from pipeline.ingest.template import NATURE_CONTINUING, NATURE_NEW, UpdateRow
from pipeline.reference import Reference, load_reference
from pipeline.rules import evaluate, load_scheme

CONFIG = Path(__file__).resolve().parents[1] / "config"
D = date(2024, 12, 31)
PREVIOUS = date(2024, 11, 30)
CODE = re.compile(r"^(\d{4})-(\d{6})-(\d{2})-(\d{2})-(\d{6})$")
EMAIL = re.compile(r"^[a-z0-9._-]+@jingzhou\.gov\.cn$")


@pytest.fixture(scope="module")
def reference() -> Reference:
    return load_reference(CONFIG)


@pytest.fixture(scope="module")
def demo(reference: Reference) -> DemoReserve:
    return generate_demo(seed=2024, reference=reference)


def histories(reserve: DemoReserve) -> dict[str, list[UpdateRow]]:
    out: dict[str, list[UpdateRow]] = {}
    for report in reserve.reports:
        for row in report:
            out.setdefault(row.code, []).append(row)
    return out


def newest_on_or_before(rows: list[UpdateRow], day: date) -> UpdateRow | None:
    found = None
    for row in rows:
        if row.as_of <= day:
            found = row
    return found


def totals(reserve: DemoReserve) -> dict[str, object]:
    projects = {code: rows[-1] for code, rows in histories(reserve).items()}
    return {
        "projects": len(projects),
        "natures": Counter(r.nature for r in projects.values()),
        "investment": sum(r.total_investment for r in projects.values()),
        "bonds": sum(r.total_investment for r in projects.values() if "国债和专项债项目" in r.lists),
        "rows": [len(report) for report in reserve.reports],
    }


# --- exact totals ---------------------------------------------------------------------------------


def test_exact_totals(demo: DemoReserve, reference: Reference) -> None:
    hist = histories(demo)
    latest = {code: rows[-1] for code, rows in hist.items()}
    assert len(latest) == 1463
    natures = Counter(r.nature for r in latest.values())
    assert natures == {NATURE_NEW: 911, NATURE_CONTINUING: 552}
    assert sum(r.total_investment for r in latest.values()) == Decimal("106939000")  # 10,693.9 亿元
    for r in latest.values():
        assert r.total_investment >= 10_000  # 1 亿元 and more
        assert r.total_investment == r.total_investment.quantize(Decimal("0.01"))
    assert set(Counter(r.county for r in latest.values())) == reference.county_names
    assert demo.as_of == D


def test_county_weights_follow_size(demo: DemoReserve) -> None:
    counties = Counter(rows[-1].county for rows in histories(demo).values())
    assert min(counties.values()) >= 30
    assert counties["监利市"] > counties["江陵县"] > counties["纪南文旅区"]


def test_lists(demo: DemoReserve) -> None:
    latest = [rows[-1] for rows in histories(demo).values()]
    assert all("亿元以上项目" in r.lists for r in latest)
    key = [r for r in latest if "省市重点项目" in r.lists]
    infra = [r for r in latest if "重大基础设施项目" in r.lists]
    bonds = [r for r in latest if "国债和专项债项目" in r.lists]
    assert 200 <= len(key) <= 500
    assert 100 <= len(infra) <= 200
    assert len(bonds) == 42
    assert all(r.industry == "水利" for r in bonds)
    assert sum(r.total_investment for r in bonds) == Decimal("487000")  # 48.7 亿元
    assert all(r.total_investment >= 10_000 for r in bonds)


def test_codes(demo: DemoReserve, reference: Reference) -> None:
    region = {c.name: c.code for c in reference.counties}
    latest = [rows[-1] for rows in histories(demo).values()]
    assert len({r.code for r in latest}) == 1463
    for r in latest:
        m = CODE.match(r.code)
        assert m, r.code
        assert 2019 <= int(m.group(1)) <= 2024
        assert m.group(2) == region[r.county]
    assert len({CODE.match(r.code).group(5) for r in latest}) == 1463  # type: ignore[union-attr]


def test_leaders_and_units(demo: DemoReserve) -> None:
    assert len(demo.leaders) == 30
    assert len({leader.name for leader in demo.leaders}) == 30
    emails = [leader.email for leader in demo.leaders]
    assert len(set(emails)) == 30
    assert all(EMAIL.match(e) and e.isascii() for e in emails)
    assert all(leader.title for leader in demo.leaders)
    assert any("副市长" in leader.title for leader in demo.leaders)
    assert any("市委常委" in leader.title for leader in demo.leaders)
    latest = [rows[-1] for rows in histories(demo).values()]
    per_leader = Counter(r.leader for r in latest)
    assert set(per_leader) == {leader.name for leader in demo.leaders}
    assert all(20 <= n <= 80 for n in per_leader.values()), per_leader
    assert all(r.unit for r in latest)
    assert {r.unit for r in latest} == set(demo.units)
    assert len(demo.units) >= 40
    assert any(u.endswith("人民政府") for u in demo.units)
    assert any(u.endswith("局") for u in demo.units)
    assert any(u.endswith("公司") for u in demo.units)


def test_reports_are_the_month_ends_of_2024(demo: DemoReserve) -> None:
    assert len(demo.reports) == 12
    for month, report in enumerate(demo.reports, start=1):
        end = date(2024, month, monthrange(2024, month)[1])
        assert report and all(r.as_of == end for r in report)
        assert len({r.code for r in report}) == len(report)  # one row per project
    assert len(demo.reports[0]) == 1463
    assert 15_000 <= sum(len(r) for r in demo.reports) <= 17_556


# --- determinism ----------------------------------------------------------------------------------


def test_same_seed_same_output(demo: DemoReserve, reference: Reference) -> None:
    assert generate_demo(seed=2024, reference=reference) == demo


def _digest(reserve: DemoReserve) -> str:
    return hashlib.sha256(repr((reserve.reports, reserve.leaders, reserve.units)).encode()).hexdigest()


def test_same_seed_same_output_in_another_process(demo: DemoReserve) -> None:
    """No dependence on string hashing (set order) either: a process with another hash seed agrees."""
    script = (
        "import hashlib; from pathlib import Path; from pipeline.reference import load_reference; "
        "from pipeline.demo import generate_demo; "
        f"d = generate_demo(seed=2024, reference=load_reference(Path({str(CONFIG)!r}))); "
        "print(hashlib.sha256(repr((d.reports, d.leaders, d.units)).encode()).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          cwd=CONFIG.parent, timeout=120, check=True)
    assert done.stdout.strip() == _digest(demo)


def test_other_seed_other_data_same_totals(demo: DemoReserve, reference: Reference) -> None:
    other = generate_demo(seed=7, reference=reference)
    assert other != demo
    assert {r.code for r in other.reports[0]} != {r.code for r in demo.reports[0]}
    assert [leader.name for leader in other.leaders] != [leader.name for leader in demo.leaders]
    mine, theirs = totals(demo), totals(other)
    for key in ("projects", "natures", "investment", "bonds"):
        assert mine[key] == theirs[key]


# --- the template's rules (SPEC §2) in every row, and consistent months ---------------------------


def test_every_row_keeps_the_template_rules(demo: DemoReserve, reference: Reference) -> None:
    for report in demo.reports:
        for r in report:
            d = r.as_of
            assert r.code and r.name and r.county in reference.county_names
            assert r.nature in (NATURE_NEW, NATURE_CONTINUING)
            assert r.total_investment > 0
            assert set(r.lists) <= set(reference.lists)
            if r.nature == NATURE_NEW:
                assert r.planned_start is not None
            assert r.annual_plan is not None and r.annual_plan >= 0
            if r.planned_start is not None and r.planned_completion is not None:
                assert r.planned_completion >= r.planned_start
            if r.actual_start is not None:
                assert r.actual_start <= d
            if r.actual_completion is not None:
                assert r.actual_start is not None and r.actual_start <= r.actual_completion <= d
            if r.stats_included_on is not None:
                assert r.actual_start is not None and r.actual_start <= r.stats_included_on <= d
            assert r.ytd_completed is not None and r.cumulative_completed is not None
            assert r.cumulative_completed >= r.ytd_completed >= 0
            assert r.cumulative_completed <= r.total_investment
            for money in (r.total_investment, r.annual_plan, r.ytd_completed, r.cumulative_completed):
                assert money == money.quantize(Decimal("0.01"))
            assert (r.problems is not None) or not r.needs_coordination


def test_months_evolve_consistently(demo: DemoReserve) -> None:
    fixed = ("name", "county", "nature", "industry", "lists", "total_investment", "annual_plan",
             "planned_start", "planned_completion", "leader", "unit")
    for code, rows in histories(demo).items():
        first = rows[0]
        for earlier, later in zip(rows, rows[1:]):
            assert earlier.as_of < later.as_of
            for name in fixed:
                assert getattr(later, name) == getattr(first, name), (code, name)
            assert later.ytd_completed >= earlier.ytd_completed  # type: ignore[operator]
            assert later.cumulative_completed >= earlier.cumulative_completed  # type: ignore[operator]
            for name in ("actual_start", "stats_included_on", "actual_completion"):
                if getattr(earlier, name) is not None:
                    assert getattr(later, name) == getattr(earlier, name), (code, name)
        if first.nature == NATURE_CONTINUING:
            assert first.actual_start is not None and first.actual_start.year < 2024
            assert first.cumulative_completed > first.ytd_completed  # type: ignore[operator]
        else:
            assert first.planned_start is not None and first.planned_start.year in (2024, 2025)
            if first.actual_start is not None:
                assert first.actual_start.year == 2024


def test_new_starts_and_completions(demo: DemoReserve) -> None:
    latest = [rows[-1] for rows in histories(demo).values()]
    new = [r for r in latest if r.nature == NATURE_NEW]
    started = [r for r in new if r.actual_start is not None]
    assert 0.85 <= len(started) / len(new) <= 0.97
    on_time = [r for r in started if (r.actual_start - r.planned_start).days <= 45]  # type: ignore[operator]
    assert len(on_time) / len(started) >= 0.85
    assert sum(1 for r in new if r.planned_start and r.planned_start.year == 2025) >= 5
    completed = [r for r in latest if r.actual_completion is not None]
    assert 50 <= len(completed) <= 300
    assert all(r.actual_completion.year == 2024 for r in completed)  # type: ignore[union-attr]


def test_stale_projects_stop_reporting(demo: DemoReserve) -> None:
    hist = histories(demo)
    last = {code: rows[-1].as_of for code, rows in hist.items()}
    october = {c for c, day in last.items() if day == date(2024, 10, 31)}
    august = {c for c, day in last.items() if day == date(2024, 8, 31)}
    assert len(october) >= 10 and len(august) >= 5
    for month in (9, 10, 11, 12):
        codes = {r.code for r in demo.reports[month - 1]}
        assert not codes & august
        if month >= 11:
            assert not codes & october
    december = {r.code for r in demo.reports[11]}
    assert december | october | august == set(hist)
    assert len(december) == 1463 - len(october) - len(august)


# --- slippage as of 2024-12-31 (SPEC §4, jingzhou-2024), judged here straight from the spec --------


def _spec_reasons(row: UpdateRow, day: date) -> list[tuple[str, str]]:
    """The jingzhou-2024 reasons but ESCALATED, computed directly from SPEC §4."""
    out: list[tuple[str, str]] = []
    if row.actual_start is not None and row.stats_included_on is None:
        since = (day - row.actual_start).days
        if since > 60:
            out.append(("NOT_IN_STATS", "red"))
        elif since >= 31:
            out.append(("NOT_IN_STATS", "yellow"))
    if row.actual_completion is not None:
        return out
    if row.planned_start is not None and row.actual_start is None and row.planned_start < day:
        overdue = (day - row.planned_start).days
        out.append(("START_OVERDUE", "red" if overdue > 60 else "yellow"))
    if row.planned_completion is not None and row.planned_completion < day:
        overdue = (day - row.planned_completion).days
        out.append(("COMPLETION_OVERDUE", "red" if overdue > 90 else "yellow"))
    plan = row.annual_plan
    if row.actual_start is not None and plan and plan > 0 and day.month >= 3:
        f = Fraction(day.month - 1) / 12 + Fraction(day.day, monthrange(day.year, day.month)[1] * 12)
        r = Fraction(row.ytd_completed or 0) / (Fraction(plan) * f)
        if r < Fraction(6, 10):
            out.append(("BEHIND_PACE", "red"))
        elif r < Fraction(8, 10):
            out.append(("BEHIND_PACE", "yellow"))
    stale = (day - row.as_of).days
    if stale > 90:
        out.append(("STALE", "red"))
    elif stale >= 46:
        out.append(("STALE", "yellow"))
    if row.needs_coordination:
        out.append(("NEEDS_COORDINATION", "yellow"))
    return out


def _worst(reasons: list[tuple[str, str]]) -> str:
    colors = {c for _, c in reasons}
    return "red" if "red" in colors else "yellow" if "yellow" in colors else "green"


def _spec_flags(reserve: DemoReserve) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    flags = {}
    for code, rows in histories(reserve).items():
        now = newest_on_or_before(rows, D)
        assert now is not None
        reasons = _spec_reasons(now, D)
        before = newest_on_or_before(rows, PREVIOUS)
        was = _worst(_spec_reasons(before, PREVIOUS)) if before is not None else "green"
        if _worst(reasons) == "yellow" and was == "yellow":
            reasons.append(("ESCALATED", "red"))
        flags[code] = (_worst(reasons), reasons)
    return flags


def _check_mix(colors: Counter[str], fired: Counter[tuple[str, str]]) -> None:
    total = sum(colors.values())
    assert 0.70 <= colors["green"] / total <= 0.82, colors
    assert 0.12 <= colors["yellow"] / total <= 0.20, colors
    assert 0.05 <= colors["red"] / total <= 0.10, colors
    for code in ("START_OVERDUE", "COMPLETION_OVERDUE", "NOT_IN_STATS", "BEHIND_PACE", "STALE"):
        assert fired[(code, "yellow")] >= 5, (code, fired)
        assert fired[(code, "red")] >= 5, (code, fired)
    assert fired[("NEEDS_COORDINATION", "yellow")] >= 20
    assert fired[("ESCALATED", "red")] >= 10


def test_every_slippage_scenario_is_present(demo: DemoReserve) -> None:
    flags = _spec_flags(demo)
    colors = Counter(color for color, _ in flags.values())
    fired = Counter(reason for _, reasons in flags.values() for reason in reasons)
    _check_mix(colors, fired)
    # the bands inside each rule: START 1–60 / > 60 days, COMPLETION 1–90 / > 90, STATS 31–60 / > 60
    latest = {code: rows[-1] for code, rows in histories(demo).items()}
    not_started = [r.planned_start for r in latest.values() if r.nature == NATURE_NEW and r.actual_start is None]
    start_days = [(D - day).days for day in not_started if day is not None and day < D]
    assert any(d <= 30 for d in start_days) and any(30 < d <= 60 for d in start_days)
    assert any(d > 60 for d in start_days)
    # stale projects: last report 2024-10-31 (61 days, yellow) or 2024-08-31 (122 days, red)
    stale = Counter((D - r.as_of).days for r in latest.values() if r.as_of < D)
    assert set(stale) == {61, 122}
    # completed projects are judged by NOT_IN_STATS only, so they are green
    assert all(flags[c][0] == "green" for c, r in latest.items() if r.actual_completion is not None)


def test_same_mix_for_another_seed(reference: Reference) -> None:
    flags = _spec_flags(generate_demo(seed=11, reference=reference))
    _check_mix(Counter(c for c, _ in flags.values()), Counter(x for _, rs in flags.values() for x in rs))


# --- the same, through the rules engine (pipeline.rules) -----------------------------------------


def _engine_flags(reserve: DemoReserve, scheme_name: str) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """code → (colour, reasons) from pipeline.rules: row = newest ≤ D, previous = newest ≤ 11-30."""
    scheme = load_scheme(scheme_name, config_dir=CONFIG)
    flags = {}
    for code, rows in histories(reserve).items():
        now = newest_on_or_before(rows, D)
        before = newest_on_or_before(rows, PREVIOUS)
        assert now is not None
        flag = evaluate(scheme, now.facts(), D, before.facts() if before is not None else None)
        flags[code] = (flag.color.value, [(r.code, r.color.value) for r in flag.reasons])
    return flags


def test_engine_jingzhou_every_rule_fires(demo: DemoReserve) -> None:
    flags = _engine_flags(demo, "jingzhou-2024")
    fired = Counter(reason for _, reasons in flags.values() for reason in reasons)
    _check_mix(Counter(color for color, _ in flags.values()), fired)
    assert {code for code, _ in fired} == {"START_OVERDUE", "COMPLETION_OVERDUE", "NOT_IN_STATS", "BEHIND_PACE",
                                          "STALE", "NEEDS_COORDINATION", "ESCALATED"}
    # and the engine agrees with the spec, project for project
    spec = _spec_flags(demo)
    assert {code: color for code, (color, _) in flags.items()} == {code: color for code, (color, _) in spec.items()}
    assert {code: sorted(r) for code, (_, r) in flags.items()} == {code: sorted(r) for code, (_, r) in spec.items()}


def test_engine_yinchuan_fires_too(demo: DemoReserve) -> None:
    flags = _engine_flags(demo, "yinchuan-2025")
    colors = Counter(color for color, _ in flags.values())
    assert colors["red"] > 0 and colors["yellow"] > 0 and colors["green"] > 0.6 * len(flags)
    fired = {code for _, reasons in flags.values() for code, _ in reasons}
    assert fired == {"START_OVERDUE", "BEHIND_PACE", "NOT_IN_STATS"}
