"""The default scheme ``jingzhou-2024`` (SPEC §4): every band boundary, pace, escalation, completion."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from pipeline.facts import ProjectFacts
from pipeline.rules import (
    Color, Flag, Scheme, evaluate, evaluate_many, load_scheme, previous_month_end, time_progress, worst,
)

CONFIG = Path(__file__).resolve().parent.parent / "config"
D = date(2024, 6, 15)


@pytest.fixture(scope="module")
def scheme() -> Scheme:
    return load_scheme("jingzhou-2024", config_dir=CONFIG)


def facts(**fields: Any) -> ProjectFacts:
    """A quiet project (started, in the statistics, fresh report) unless the test says otherwise."""
    base: dict[str, Any] = {
        "code": "2024-421003-44-01-000123",
        "as_of": D,
        "actual_start": date(2024, 1, 2),
        "stats_included_on": date(2024, 1, 20),
    }
    base.update(fields)
    return ProjectFacts(**base)


def reasons_by_code(flag: Flag) -> dict[str, Any]:
    return {r.code: r for r in flag.reasons}


def only(flag: Flag, code: str) -> Color | None:
    reason = reasons_by_code(flag).get(code)
    return reason.color if reason is not None else None


DAY_CASES = [0, 1, 30, 31, 45, 46, 60, 61, 90, 91]


# --- START_OVERDUE -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("days", "expected"),
    [(0, None), (1, Color.YELLOW), (30, Color.YELLOW), (31, Color.YELLOW), (45, Color.YELLOW), (46, Color.YELLOW),
     (60, Color.YELLOW), (61, Color.RED), (90, Color.RED), (91, Color.RED)],
)
def test_start_overdue_bands(scheme: Scheme, days: int, expected: Color | None) -> None:
    row = facts(actual_start=None, stats_included_on=None, planned_start=D - timedelta(days=days))
    flag = evaluate(scheme, row, D, None)
    assert only(flag, "START_OVERDUE") == expected
    assert flag.color == (expected or Color.GREEN)
    if expected is not None:
        reason = reasons_by_code(flag)["START_OVERDUE"]
        ps = (D - timedelta(days=days)).isoformat()
        assert reason.values == {"planned_start": ps, "overdue_days": days, "as_of": "2024-06-15"}
        assert reason.message == f"计划{ps}开工，截至2024-06-15已逾期{days}天未开工"


def test_planned_start_in_the_future_gives_nothing(scheme: Scheme) -> None:
    row = facts(actual_start=None, stats_included_on=None, planned_start=D + timedelta(days=10),
                planned_completion=D + timedelta(days=400))
    flag = evaluate(scheme, row, D, None)
    assert flag.color is Color.GREEN
    assert flag.reasons == ()


def test_started_project_is_not_start_overdue(scheme: Scheme) -> None:
    row = facts(planned_start=D - timedelta(days=200), actual_start=D - timedelta(days=5), stats_included_on=None)
    assert only(evaluate(scheme, row, D, None), "START_OVERDUE") is None


# --- COMPLETION_OVERDUE --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("days", "expected"),
    [(0, None), (1, Color.YELLOW), (30, Color.YELLOW), (31, Color.YELLOW), (45, Color.YELLOW), (46, Color.YELLOW),
     (60, Color.YELLOW), (61, Color.YELLOW), (90, Color.YELLOW), (91, Color.RED)],
)
def test_completion_overdue_bands(scheme: Scheme, days: int, expected: Color | None) -> None:
    pc = D - timedelta(days=days)
    flag = evaluate(scheme, facts(planned_completion=pc), D, None)
    assert only(flag, "COMPLETION_OVERDUE") == expected
    assert flag.color == (expected or Color.GREEN)
    if expected is not None:
        reason = reasons_by_code(flag)["COMPLETION_OVERDUE"]
        assert reason.values == {"planned_completion": pc.isoformat(), "overdue_days": days, "as_of": "2024-06-15"}
        assert f"{days}天" in reason.message and pc.isoformat() in reason.message


# --- NOT_IN_STATS --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("days", "expected"),
    [(0, None), (1, None), (30, None), (31, Color.YELLOW), (45, Color.YELLOW), (46, Color.YELLOW),
     (60, Color.YELLOW), (61, Color.RED), (90, Color.RED), (91, Color.RED)],
)
def test_not_in_stats_bands(scheme: Scheme, days: int, expected: Color | None) -> None:
    start = D - timedelta(days=days)
    flag = evaluate(scheme, facts(actual_start=start, stats_included_on=None), D, None)
    assert only(flag, "NOT_IN_STATS") == expected
    if expected is not None:
        reason = reasons_by_code(flag)["NOT_IN_STATS"]
        assert reason.values == {"actual_start": start.isoformat(), "days_since_start": days, "as_of": "2024-06-15"}
        assert f"{days}天" in reason.message


def test_in_stats_project_is_not_flagged_not_in_stats(scheme: Scheme) -> None:
    row = facts(actual_start=D - timedelta(days=200), stats_included_on=D - timedelta(days=1))
    assert evaluate(scheme, row, D, None).color is Color.GREEN


# --- STALE ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("days", "expected"),
    [(0, None), (1, None), (30, None), (31, None), (45, None), (46, Color.YELLOW),
     (60, Color.YELLOW), (61, Color.YELLOW), (90, Color.YELLOW), (91, Color.RED)],
)
def test_stale_bands(scheme: Scheme, days: int, expected: Color | None) -> None:
    report = D - timedelta(days=days)
    flag = evaluate(scheme, facts(as_of=report, actual_start=date(2023, 6, 1), stats_included_on=date(2023, 7, 1)), D,
                    None)
    assert only(flag, "STALE") == expected
    if expected is not None:
        reason = reasons_by_code(flag)["STALE"]
        assert reason.values == {"report_date": report.isoformat(), "days_since_report": days, "as_of": "2024-06-15"}
        assert f"{days}天" in reason.message


# --- 序时进度 and BEHIND_PACE -----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("d", "expected"),
    [
        (date(2024, 2, 29), Fraction(2, 12)),  # leap-year February ends exactly at 2/12
        (date(2023, 2, 28), Fraction(2, 12)),
        (date(2024, 2, 28), (1 + Fraction(28, 29)) / 12),
        (date(2024, 4, 30), Fraction(4, 12)),
        (date(2024, 12, 31), Fraction(1)),
        (date(2024, 1, 31), Fraction(1, 12)),
        (date(2024, 3, 15), (2 + Fraction(15, 31)) / 12),
    ],
)
def test_time_progress_is_exact(d: date, expected: Fraction) -> None:
    assert time_progress(d) == expected


def pace_row(ytd: str | None, plan: str = "1200", **fields: Any) -> ProjectFacts:
    return facts(annual_plan=Decimal(plan), ytd_completed=None if ytd is None else Decimal(ytd), **fields)


APRIL_END = date(2024, 4, 30)  # f = 1/3: a plan of 1200 has a target of exactly 400


@pytest.mark.parametrize(
    ("ytd", "expected"),
    [
        ("400", None),
        ("320", None),  # r = 0.8 exactly: on pace
        ("319.99", Color.YELLOW),
        ("240", Color.YELLOW),  # r = 0.6 exactly: yellow, not red
        ("239.99", Color.RED),
        ("0", Color.RED),
        (None, Color.RED),  # no ytd reported counts as 0
    ],
)
def test_behind_pace_ratio_boundaries(scheme: Scheme, ytd: str | None, expected: Color | None) -> None:
    flag = evaluate(scheme, pace_row(ytd, as_of=APRIL_END), APRIL_END, None)
    assert only(flag, "BEHIND_PACE") == expected


def test_behind_pace_values_and_message(scheme: Scheme) -> None:
    flag = evaluate(scheme, pace_row("240", as_of=APRIL_END), APRIL_END, None)
    reason = reasons_by_code(flag)["BEHIND_PACE"]
    assert reason.values == {
        "ytd_completed": 240, "annual_plan": 1200, "time_progress": 33.33, "target": 400.0,
        "pace_ratio": 0.6, "pace_percent": 60.0, "as_of": "2024-04-30",
    }
    assert "240" in reason.message and "400" in reason.message and "60%" in reason.message
    json.dumps(reason.to_json(), ensure_ascii=False)


def test_behind_pace_exact_in_mid_month(scheme: Scheme) -> None:
    d = date(2024, 3, 15)  # f = 77/372; a plan of 3720 has a target of exactly 770
    assert only(evaluate(scheme, pace_row("616", plan="3720", as_of=d), d, None), "BEHIND_PACE") is None  # r = 0.8
    assert only(evaluate(scheme, pace_row("615.99", plan="3720", as_of=d), d, None), "BEHIND_PACE") is Color.YELLOW
    assert only(evaluate(scheme, pace_row("462", plan="3720", as_of=d), d, None), "BEHIND_PACE") is Color.YELLOW
    assert only(evaluate(scheme, pace_row("461.99", plan="3720", as_of=d), d, None), "BEHIND_PACE") is Color.RED


@pytest.mark.parametrize("d", [date(2024, 1, 31), date(2024, 2, 1), date(2024, 2, 29)])
def test_behind_pace_not_in_january_or_february(scheme: Scheme, d: date) -> None:
    flag = evaluate(scheme, pace_row("0", as_of=d), d, None)
    assert only(flag, "BEHIND_PACE") is None
    assert flag.color is Color.GREEN


def test_behind_pace_from_march_first(scheme: Scheme) -> None:
    d = date(2024, 3, 1)
    assert only(evaluate(scheme, pace_row("0", as_of=d), d, None), "BEHIND_PACE") is Color.RED


@pytest.mark.parametrize("plan", ["0", None])
def test_no_annual_plan_no_pace_rule(scheme: Scheme, plan: str | None) -> None:
    row = facts(as_of=APRIL_END, annual_plan=None if plan is None else Decimal(plan), ytd_completed=Decimal(0))
    assert evaluate(scheme, row, APRIL_END, None).color is Color.GREEN


def test_not_started_no_pace_rule(scheme: Scheme) -> None:
    row = pace_row("0", as_of=APRIL_END, actual_start=None, stats_included_on=None)
    assert only(evaluate(scheme, row, APRIL_END, None), "BEHIND_PACE") is None


# --- NEEDS_COORDINATION --------------------------------------------------------------------------

def test_needs_coordination_is_yellow_with_the_problem(scheme: Scheme) -> None:
    flag = evaluate(scheme, facts(needs_coordination=True, problems="征地拆迁未完成"), D, None)
    assert flag.color is Color.YELLOW
    reason = reasons_by_code(flag)["NEEDS_COORDINATION"]
    assert reason.color is Color.YELLOW
    assert "征地拆迁未完成" in reason.message
    assert reason.values["problems"] == "征地拆迁未完成"


# --- ESCALATED -----------------------------------------------------------------------------------

def test_previous_month_end_crosses_the_year() -> None:
    assert previous_month_end(date(2025, 1, 15)) == date(2024, 12, 31)
    assert previous_month_end(date(2024, 3, 1)) == date(2024, 2, 29)
    assert previous_month_end(date(2024, 3, 31)) == date(2024, 2, 29)


def test_escalated_across_the_year_boundary(scheme: Scheme) -> None:
    previous = facts(as_of=date(2024, 12, 31), needs_coordination=True, problems="用地指标")
    now = facts(as_of=date(2025, 1, 15), needs_coordination=True, problems="用地指标")
    flag = evaluate(scheme, now, date(2025, 1, 15), previous)
    assert flag.color is Color.RED
    assert flag.base_color is Color.YELLOW
    assert [r.code for r in flag.reasons] == ["ESCALATED", "NEEDS_COORDINATION"]
    escalated = flag.reasons[0]
    assert escalated.color is Color.RED
    assert escalated.values == {"previous_month_end": "2024-12-31", "as_of": "2025-01-15"}
    assert "2024-12-31" in escalated.message


def test_no_previous_row_no_escalation(scheme: Scheme) -> None:
    now = facts(as_of=date(2025, 1, 15), needs_coordination=True)
    flag = evaluate(scheme, now, date(2025, 1, 15), None)
    assert flag.color is Color.YELLOW
    assert only(flag, "ESCALATED") is None


def test_yellow_then_red_is_not_escalated(scheme: Scheme) -> None:
    previous = facts(as_of=date(2024, 12, 31), needs_coordination=True)
    now = facts(as_of=date(2025, 1, 15), needs_coordination=True, planned_completion=date(2024, 9, 1))  # 136 days
    flag = evaluate(scheme, now, date(2025, 1, 15), previous)
    assert flag.color is Color.RED
    assert only(flag, "COMPLETION_OVERDUE") is Color.RED
    assert only(flag, "ESCALATED") is None


def test_green_then_yellow_is_not_escalated(scheme: Scheme) -> None:
    previous = facts(as_of=date(2024, 12, 31))
    now = facts(as_of=date(2025, 1, 15), needs_coordination=True)
    assert evaluate(scheme, now, date(2025, 1, 15), previous).color is Color.YELLOW


def test_previous_base_flag_is_judged_as_of_the_previous_month_end(scheme: Scheme) -> None:
    d = date(2025, 1, 15)
    # planned start 2024-12-31: not yet overdue on 2024-12-31 (green then), 15 days overdue now (yellow)
    late = {"actual_start": None, "stats_included_on": None, "planned_start": date(2024, 12, 31)}
    flag = evaluate(scheme, facts(as_of=d, **late), d, facts(as_of=date(2024, 12, 31), **late))
    assert flag.color is Color.YELLOW
    # planned start 2024-12-20: already 11 days overdue on 2024-12-31, so two yellows in a row
    later = {**late, "planned_start": date(2024, 12, 20)}
    flag = evaluate(scheme, facts(as_of=d, **later), d, facts(as_of=date(2024, 12, 31), **later))
    assert flag.color is Color.RED and only(flag, "ESCALATED") is Color.RED


def test_previous_row_ages_to_stale_at_the_month_end(scheme: Scheme) -> None:
    d = date(2025, 1, 15)
    previous = facts(as_of=date(2024, 10, 31))  # 61 days old on 2024-12-31: STALE yellow then
    now = facts(as_of=date(2025, 1, 10), needs_coordination=True)
    flag = evaluate(scheme, now, d, previous)
    assert flag.color is Color.RED
    assert only(flag, "ESCALATED") is Color.RED


# --- completed projects, ordering, API ------------------------------------------------------------

def test_completed_project_is_judged_only_by_not_in_stats(scheme: Scheme) -> None:
    row = facts(
        as_of=date(2024, 4, 30),  # 46 days old: would be STALE
        planned_start=date(2023, 1, 1), planned_completion=date(2023, 6, 1),  # would be COMPLETION_OVERDUE red
        actual_start=date(2024, 4, 1), actual_completion=date(2024, 4, 30), stats_included_on=None,
        annual_plan=Decimal(1000), ytd_completed=Decimal(0), needs_coordination=True,  # would be BEHIND_PACE ...
    )
    previous = row  # the same row at 2024-05-31: NOT_IN_STATS yellow (60 days) then
    flag = evaluate(scheme, row, D, previous)
    assert [r.code for r in flag.reasons] == ["NOT_IN_STATS"]  # 75 days since start: red; no ESCALATED
    assert flag.color is Color.RED


def test_completed_project_in_the_statistics_is_green(scheme: Scheme) -> None:
    row = facts(planned_completion=date(2023, 6, 1), actual_completion=date(2024, 5, 1), needs_coordination=True)
    assert evaluate(scheme, row, D, None).color is Color.GREEN


def test_completed_project_two_yellows_not_escalated(scheme: Scheme) -> None:
    def done(as_of: date) -> ProjectFacts:
        return facts(as_of=as_of, actual_start=date(2024, 11, 20), actual_completion=date(2024, 12, 1),
                     stats_included_on=None)
    flag = evaluate(scheme, done(date(2025, 1, 10)), date(2025, 1, 10), done(date(2024, 12, 31)))
    assert flag.color is Color.YELLOW  # 51 days since start; 41 on 2024-12-31: both yellow
    assert [r.code for r in flag.reasons] == ["NOT_IN_STATS"]


def test_reasons_worst_first_then_scheme_order(scheme: Scheme) -> None:
    row = facts(
        actual_start=None, stats_included_on=None, planned_start=D - timedelta(days=10),  # START_OVERDUE yellow
        planned_completion=D - timedelta(days=100),  # COMPLETION_OVERDUE red
        as_of=D - timedelta(days=50),  # STALE yellow
        needs_coordination=True,
    )
    flag = evaluate(scheme, row, D, None)
    assert [(r.code, r.color) for r in flag.reasons] == [
        ("COMPLETION_OVERDUE", Color.RED), ("START_OVERDUE", Color.YELLOW), ("STALE", Color.YELLOW),
        ("NEEDS_COORDINATION", Color.YELLOW),
    ]
    assert flag.color is Color.RED


def test_no_row_is_green(scheme: Scheme) -> None:
    flag = evaluate(scheme, None, D, None)
    assert (flag.color, flag.base_color, flag.reasons) == (Color.GREEN, Color.GREEN, ())
    assert (flag.scheme, flag.scheme_version) == ("jingzhou-2024", 1)


def test_reason_json_shape(scheme: Scheme) -> None:
    flag = evaluate(scheme, facts(needs_coordination=True, problems="资金"), D, None)
    payload = flag.reasons[0].to_json()
    assert set(payload) == {"code", "color", "message", "values"}
    assert payload["color"] == "yellow"
    json.dumps(payload, ensure_ascii=False)


def test_rows_after_d_are_refused(scheme: Scheme) -> None:
    with pytest.raises(ValueError):
        evaluate(scheme, facts(as_of=D + timedelta(days=1)), D, None)
    with pytest.raises(ValueError):
        evaluate(scheme, facts(), D, facts(as_of=date(2024, 6, 1)))  # after the previous month's end


def test_evaluate_many_matches_evaluate(scheme: Scheme) -> None:
    items = [
        (None, None),
        (facts(needs_coordination=True), facts(as_of=date(2024, 5, 31), needs_coordination=True)),
        (facts(actual_start=None, stats_included_on=None, planned_start=date(2024, 1, 1)), None),
        (pace_row("10", as_of=D), None),
    ]
    assert evaluate_many(scheme, items, D) == [evaluate(scheme, row, D, prev) for row, prev in items]


def test_color_ordering() -> None:
    assert Color.GREEN < Color.YELLOW < Color.RED
    assert worst([]) is Color.GREEN
    assert worst([Color.YELLOW, Color.GREEN]) is Color.YELLOW
    assert worst([Color.YELLOW, Color.RED, Color.GREEN]) is Color.RED
    assert max([Color.RED, Color.YELLOW]) is Color.RED
