"""Invariants of every shipped scheme, checked on generated projects (hypothesis)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.facts import ProjectFacts
from pipeline.rules import METRICS, Color, Flag, Scheme, evaluate, evaluate_many, load_scheme, previous_month_end, worst
from tests.rules_oracle import ORACLE_METRICS, At

CONFIG = Path(__file__).resolve().parent.parent / "config"
SCHEMES = {name: load_scheme(name, config_dir=CONFIG) for name in ("jingzhou-2024", "yinchuan-2025")}
RANK = {Color.GREEN: 0, Color.YELLOW: 1, Color.RED: 2}

dates = st.dates(min_value=date(2023, 1, 1), max_value=date(2026, 12, 31))
money = st.decimals(min_value=0, max_value=100_000, places=2, allow_nan=False, allow_infinity=False)


@st.composite
def rows(draw: st.DrawFn, as_of: date | None = None) -> ProjectFacts:
    report = as_of or draw(dates)
    before = st.dates(min_value=report - timedelta(days=500), max_value=report)
    actual_start = draw(st.none() | before)
    started_before = st.dates(min_value=actual_start, max_value=report) if actual_start else st.none()
    return ProjectFacts(
        code=draw(st.sampled_from(["A", "B", "C"])),
        as_of=report,
        annual_plan=draw(st.none() | money),
        planned_start=draw(st.none() | st.dates(min_value=report - timedelta(days=400),
                                                  max_value=report + timedelta(days=400))),
        planned_completion=draw(st.none() | st.dates(min_value=report - timedelta(days=400),
                                                       max_value=report + timedelta(days=800))),
        actual_start=actual_start,
        actual_completion=draw(st.none() | started_before),
        stats_included_on=draw(st.none() | started_before),
        ytd_completed=draw(st.none() | money),
        needs_coordination=draw(st.booleans()),
        problems=draw(st.none() | st.sampled_from(["征地拆迁", "资金到位慢"])),
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[Scheme, ProjectFacts | None, date, ProjectFacts | None]:
    scheme = SCHEMES[draw(st.sampled_from(sorted(SCHEMES)))]
    d = draw(dates)
    row = draw(st.none() | rows(as_of=draw(st.dates(min_value=d - timedelta(days=200), max_value=d))))
    month_end = previous_month_end(d)
    previous = draw(st.none() | rows(as_of=draw(st.dates(min_value=month_end - timedelta(days=200),
                                                          max_value=month_end))))
    return scheme, row, d, previous


def derived_codes(scheme: Scheme) -> set[str]:
    return {r.code for r in scheme.rules if METRICS[r.metric].is_derived}


def check_flag(scheme: Scheme, row: ProjectFacts | None, flag: Flag) -> None:
    assert flag.color == worst(r.color for r in flag.reasons)
    derived = derived_codes(scheme)
    assert flag.base_color == worst(r.color for r in flag.reasons if r.code not in derived)
    order = [r.code for r in scheme.rules]
    keys = [(-RANK[r.color], order.index(r.code)) for r in flag.reasons]
    assert keys == sorted(keys)
    assert len({r.code for r in flag.reasons}) == len(flag.reasons)
    assert all(r.color is not Color.GREEN for r in flag.reasons)
    if any(r.code in derived for r in flag.reasons):
        assert flag.base_color is Color.YELLOW
    if row is not None and row.actual_completion is not None:
        assert {r.code for r in flag.reasons} <= scheme.completed_projects
    if row is None:
        assert flag.reasons == ()
    assert (flag.scheme, flag.scheme_version) == (scheme.name, scheme.version)
    json.dumps([r.to_json() for r in flag.reasons], ensure_ascii=False)


@settings(max_examples=400, deadline=None)
@given(cases())
def test_the_flag_is_the_worst_reason(case: tuple[Scheme, ProjectFacts | None, date, ProjectFacts | None]) -> None:
    scheme, row, d, previous = case
    check_flag(scheme, row, evaluate(scheme, row, d, previous))


@settings(max_examples=60, deadline=None)
@given(st.lists(cases(), min_size=1, max_size=12))
def test_evaluate_many_is_evaluate_for_each(batch: list[tuple[Scheme, ProjectFacts | None, date, ProjectFacts | None]]) -> None:
    scheme, _, d, _ = batch[0]
    items = [(row, prev) for _, row, day, prev in batch if day == d] or [(None, None)]
    assert evaluate_many(scheme, items, d) == [evaluate(scheme, row, d, prev) for row, prev in items]


def _reason(flag: Flag, code: str) -> tuple[int, int]:
    """(colour rank, overdue days) of a rule's reason; (0, -1) when it did not fire."""
    for r in flag.reasons:
        if r.code == code:
            return RANK[r.color], r.values.get("overdue_days", r.values.get("days_since_start", -1))
    return 0, -1


@pytest.mark.parametrize("name", sorted(SCHEMES))
@settings(max_examples=300, deadline=None)
@given(row=rows(), later=st.integers(min_value=0, max_value=400), step=st.integers(min_value=0, max_value=400))
def test_a_later_date_never_makes_a_late_start_less_late(name: str, row: ProjectFacts, later: int, step: int) -> None:
    scheme = SCHEMES[name]
    first = row.as_of + timedelta(days=later)
    second = first + timedelta(days=step)
    before = evaluate(scheme, row, first, None)
    after = evaluate(scheme, row, second, None)
    for code in ("START_OVERDUE", "NOT_IN_STATS"):
        (rank_before, days_before), (rank_after, days_after) = _reason(before, code), _reason(after, code)
        assert rank_after >= rank_before
        assert days_after >= days_before


@pytest.mark.parametrize("name", sorted(SCHEMES))
@given(d=dates)
def test_no_row_is_always_green(name: str, d: date) -> None:
    flag = evaluate(SCHEMES[name], None, d, None)
    assert (flag.color, flag.reasons) == (Color.GREEN, ())


@given(ytd=money, plan=money.filter(lambda p: p > 0), d=dates)
def test_pace_ratio_and_gap_agree(ytd: Decimal, plan: Decimal, d: date) -> None:
    """r = 1 − gap/100/f, so r < 0.8 exactly when gap > 20·f: the two measures classify consistently."""
    row = ProjectFacts(code="A", as_of=d, actual_start=d, annual_plan=plan, ytd_completed=ytd)
    at = At.of(d)
    ratio = ORACLE_METRICS["pace_ratio"].compute(row, at)  # type: ignore[misc]
    gap = ORACLE_METRICS["pace_gap"].compute(row, at)  # type: ignore[misc]
    assert ratio == 1 - gap / 100 / at.progress
