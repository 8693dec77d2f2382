"""The shipped scheme ``yinchuan-2025`` (SPEC §4): delay months, pace gap, statistics; nothing else."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pipeline.facts import ProjectFacts
from pipeline.rules import Color, Flag, Scheme, evaluate, load_scheme

CONFIG = Path(__file__).resolve().parent.parent / "config"
D = date(2025, 6, 15)


@pytest.fixture(scope="module")
def scheme() -> Scheme:
    return load_scheme("yinchuan-2025", config_dir=CONFIG)


def facts(**fields: Any) -> ProjectFacts:
    base: dict[str, Any] = {
        "code": "2025-640100-48-01-000042",
        "as_of": D,
        "actual_start": date(2025, 1, 2),
        "stats_included_on": date(2025, 1, 20),
    }
    base.update(fields)
    return ProjectFacts(**base)


def color_of(flag: Flag, code: str) -> Color | None:
    return next((r.color for r in flag.reasons if r.code == code), None)


def test_scheme_identity(scheme: Scheme) -> None:
    assert (scheme.name, scheme.version) == ("yinchuan-2025", 1)
    assert [r.code for r in scheme.rules] == ["START_OVERDUE", "BEHIND_PACE", "NOT_IN_STATS"]
    flag = evaluate(scheme, None, D, None)
    assert (flag.scheme, flag.scheme_version, flag.color) == ("yinchuan-2025", 1, Color.GREEN)


# --- START_OVERDUE by month of delay ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("days", "month", "expected"),
    [
        (0, None, None),  # planned for today: not overdue
        (1, 1, Color.YELLOW),  # 2025-06-14: 1st month
        (30, 2, Color.YELLOW),  # 2025-05-16
        (31, 2, Color.YELLOW),  # 2025-05-15
        (45, 2, Color.YELLOW),  # 2025-05-01
        (46, 3, Color.RED),  # 2025-04-30: 3rd month
        (60, 3, Color.RED),
        (61, 3, Color.RED),
        (90, 4, Color.RED),  # 2025-03-17
        (91, 4, Color.RED),
    ],
)
def test_start_overdue_by_delay_month(scheme: Scheme, days: int, month: int | None, expected: Color | None) -> None:
    ps = D - timedelta(days=days)
    flag = evaluate(scheme, facts(actual_start=None, stats_included_on=None, planned_start=ps), D, None)
    assert color_of(flag, "START_OVERDUE") == expected
    if expected is not None:
        reason = flag.reasons[0]
        assert reason.values == {
            "planned_start": ps.isoformat(), "overdue_days": days, "delay_month": month, "as_of": "2025-06-15",
        }
        assert f"第{month}个月" in reason.message and f"{days}天" in reason.message


@pytest.mark.parametrize(
    ("planned", "d", "expected"),
    [
        (date(2025, 1, 31), date(2025, 1, 31), None),
        (date(2025, 1, 31), date(2025, 2, 1), Color.YELLOW),  # one day late, yet already the 2nd month
        (date(2025, 1, 31), date(2025, 2, 28), Color.YELLOW),
        (date(2025, 1, 31), date(2025, 3, 1), Color.RED),  # 3rd month
        (date(2025, 1, 10), date(2025, 1, 20), Color.YELLOW),  # 1st month
        (date(2024, 12, 15), date(2025, 1, 31), Color.YELLOW),  # 2nd month across the year
        (date(2024, 12, 15), date(2025, 2, 1), Color.RED),  # 3rd month across the year
        (date(2025, 7, 1), date(2025, 6, 15), None),  # planned in the future
    ],
)
def test_delay_month_boundaries(scheme: Scheme, planned: date, d: date, expected: Color | None) -> None:
    row = facts(as_of=d, actual_start=None, stats_included_on=None, planned_start=planned)
    assert color_of(evaluate(scheme, row, d, None), "START_OVERDUE") == expected


def test_delay_month_values(scheme: Scheme) -> None:
    d = date(2025, 2, 1)
    flag = evaluate(scheme, facts(as_of=d, actual_start=None, stats_included_on=None,
                                  planned_start=date(2025, 1, 31)), d, None)
    assert flag.reasons[0].values["delay_month"] == 2
    assert flag.reasons[0].values["overdue_days"] == 1


# --- NOT_IN_STATS ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("days", "expected"),
    [(0, None), (1, None), (30, None), (31, Color.YELLOW), (45, Color.YELLOW), (46, Color.YELLOW),
     (60, Color.YELLOW), (61, Color.RED), (90, Color.RED), (91, Color.RED)],
)
def test_not_in_stats_bands(scheme: Scheme, days: int, expected: Color | None) -> None:
    flag = evaluate(scheme, facts(actual_start=D - timedelta(days=days), stats_included_on=None), D, None)
    assert color_of(flag, "NOT_IN_STATS") == expected
    assert flag.color == (expected or Color.GREEN)


# --- rules this scheme does not have ----------------------------------------------------------------

@pytest.mark.parametrize("days", [0, 1, 30, 31, 45, 46, 60, 61, 90, 91])
def test_no_completion_or_stale_rule(scheme: Scheme, days: int) -> None:
    row = facts(as_of=D - timedelta(days=days), planned_completion=D - timedelta(days=days))
    assert evaluate(scheme, row, D, None).reasons == ()


def test_no_coordination_or_escalation_rule(scheme: Scheme) -> None:
    d = date(2025, 1, 15)
    late = {"actual_start": None, "stats_included_on": None, "planned_start": date(2024, 12, 20),
            "needs_coordination": True}
    flag = evaluate(scheme, facts(as_of=d, **late), d, facts(as_of=date(2024, 12, 31), **late))
    assert [(r.code, r.color) for r in flag.reasons] == [("START_OVERDUE", Color.YELLOW)]  # 2nd month, no ESCALATED
    assert flag.color is Color.YELLOW


# --- BEHIND_PACE by gap --------------------------------------------------------------------------------

def pace_row(ytd: str | None, d: date, plan: str = "1200") -> ProjectFacts:
    return facts(as_of=d, annual_plan=Decimal(plan), ytd_completed=None if ytd is None else Decimal(ytd))


APRIL_END = date(2025, 4, 30)  # f = 1/3: a plan of 1200 has a target of exactly 400


@pytest.mark.parametrize(
    ("ytd", "expected"),
    [
        ("400", None),
        ("280.01", None),  # gap just under 10
        ("280", Color.YELLOW),  # gap = 10 exactly
        ("40", Color.YELLOW),  # gap = 30 exactly
        ("39.99", Color.RED),  # just over 30
        ("0", Color.RED),
        (None, Color.RED),
    ],
)
def test_behind_pace_gap_boundaries(scheme: Scheme, ytd: str | None, expected: Color | None) -> None:
    assert color_of(evaluate(scheme, pace_row(ytd, APRIL_END), APRIL_END, None), "BEHIND_PACE") == expected


def test_behind_pace_gap_values(scheme: Scheme) -> None:
    flag = evaluate(scheme, pace_row("280", APRIL_END), APRIL_END, None)
    reason = flag.reasons[0]
    assert reason.values == {
        "ytd_completed": 280, "annual_plan": 1200, "time_progress": 33.33, "target": 400.0, "pace_gap": 10.0,
        "as_of": "2025-04-30",
    }
    assert "10个百分点" in reason.message and "280" in reason.message


def test_behind_pace_in_february_of_a_leap_year(scheme: Scheme) -> None:
    d = date(2024, 2, 29)  # f = 2/12 exactly: a plan of 600 has a target of 100
    assert color_of(evaluate(scheme, pace_row("40", d, plan="600"), d, None), "BEHIND_PACE") is Color.YELLOW  # gap 10
    assert color_of(evaluate(scheme, pace_row("40.01", d, plan="600"), d, None), "BEHIND_PACE") is None


def test_behind_pace_applies_in_february(scheme: Scheme) -> None:
    d = date(2025, 2, 28)  # f = 1/6: nothing done gives a gap of 16.67 points
    flag = evaluate(scheme, pace_row("0", d), d, None)
    assert color_of(flag, "BEHIND_PACE") is Color.YELLOW
    assert flag.reasons[0].values["pace_gap"] == 16.67


def test_behind_pace_in_january_is_at_most_the_time_progress(scheme: Scheme) -> None:
    d = date(2025, 1, 31)  # f = 1/12: the largest possible gap is 8.33 points
    assert color_of(evaluate(scheme, pace_row("0", d), d, None), "BEHIND_PACE") is None


@pytest.mark.parametrize("plan", ["0", None])
def test_no_annual_plan_no_pace_rule(scheme: Scheme, plan: str | None) -> None:
    row = facts(as_of=APRIL_END, annual_plan=None if plan is None else Decimal(plan), ytd_completed=Decimal(0))
    assert evaluate(scheme, row, APRIL_END, None).color is Color.GREEN


def test_not_started_no_pace_rule(scheme: Scheme) -> None:
    row = facts(as_of=APRIL_END, actual_start=None, stats_included_on=None, annual_plan=Decimal(1200))
    assert evaluate(scheme, row, APRIL_END, None).color is Color.GREEN


# --- completed projects --------------------------------------------------------------------------------

def test_completed_project_is_judged_only_by_not_in_stats(scheme: Scheme) -> None:
    row = facts(
        as_of=APRIL_END, planned_start=date(2024, 1, 1), actual_start=date(2025, 3, 20),
        actual_completion=date(2025, 4, 20), stats_included_on=None, annual_plan=Decimal(1200),
        ytd_completed=Decimal(0),
    )
    flag = evaluate(scheme, row, APRIL_END, None)
    assert [(r.code, r.color) for r in flag.reasons] == [("NOT_IN_STATS", Color.YELLOW)]  # 41 days since start


def test_completed_project_in_the_statistics_is_green(scheme: Scheme) -> None:
    row = facts(as_of=APRIL_END, actual_completion=date(2025, 4, 1), annual_plan=Decimal(1200),
                ytd_completed=Decimal(0))
    assert evaluate(scheme, row, APRIL_END, None).color is Color.GREEN
