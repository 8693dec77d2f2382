"""The set-based rates (pipeline.rate_frames) agree exactly with compute_rates, the rates' oracle."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pipeline.facts import ProjectFacts
from pipeline.rate_frames import contributions, tally_rates
from pipeline.rates import RateSubject, compute_rates
from pipeline.rules.frame import facts_frame
from tests.rules_strategies import evaluation_dates, project

COUNTIES = ("沙市区", "荆州区", "公安县", " ", "")
LEADERS = ("张三", "李四", None, "  王五 ")
ORDER = ("荆州区", "沙市区")


@st.composite
def reserves(draw: st.DrawFn) -> tuple[date, list[ProjectFacts | None], list[str], list[str | None]]:
    d = draw(evaluation_dates)
    n = draw(st.integers(0, 25))
    rows = [draw(project(d, [], code=f"P{i}")) for i in range(n)]
    counties = [draw(st.sampled_from(COUNTIES)) for _ in range(n)]
    leaders = [draw(st.sampled_from(LEADERS)) for _ in range(n)]
    return d, rows, counties, leaders


@settings(max_examples=150, deadline=None)
@given(reserves())
def test_tally_rates_equals_compute_rates(reserve: tuple) -> None:
    d, rows, counties, leaders = reserve
    # compute_rates adds Decimals in Python's default 28-digit context: beyond 10^18 万元 it rounds
    assume(all(abs(x) < 10**18 for f in rows if f is not None for x in (f.annual_plan or 0, f.ytd_completed or 0)))
    frame = contributions(facts_frame(rows, extra={"county": counties, "leader": leaders}), d)
    subjects = [RateSubject(facts=f, county=c, leader=l) for f, c, l in zip(rows, counties, leaders) if f is not None]
    assert tally_rates(frame) == compute_rates(subjects, as_of=d, by="city")
    assert tally_rates(frame, by="county", order=ORDER) == compute_rates(subjects, as_of=d, by="county", order=ORDER)
    assert tally_rates(frame, by="leader") == compute_rates(subjects, as_of=d, by="leader")


def test_band_edges_of_the_rates() -> None:
    """Each date exactly on its edge: planned on D counts as due; started 30 days before D is due in
    the statistics, 29 days is not; a row without amounts adds nothing to the sums."""
    d = date(2024, 6, 30)
    rows = [
        ProjectFacts("A", d, "新开工", Decimal("100.50"), planned_start=d, actual_start=d - timedelta(days=30),
                     stats_included_on=d, ytd_completed=Decimal("50.25")),
        ProjectFacts("B", d, "新开工", None, planned_start=d + timedelta(days=1), planned_completion=d,
                     actual_start=d - timedelta(days=29), actual_completion=d),
        ProjectFacts("C", d - timedelta(days=40), "续建", Decimal("10"), planned_start=date(2023, 12, 31),
                     planned_completion=date(2024, 12, 31), actual_start=date(2023, 1, 1)),
    ]
    frame = contributions(facts_frame(rows, extra={"county": ["沙市区"] * 3}), d)
    [city] = tally_rates(frame)
    subjects = [RateSubject(facts=f, county="沙市区") for f in rows]
    assert [city] == compute_rates(subjects, as_of=d, by="city")
    assert (city.start_rate.numerator, city.start_rate.denominator) == (1, 1)
    assert (city.start_rate_annual.numerator, city.start_rate_annual.denominator) == (2, 2)
    assert (city.stats_rate.numerator, city.stats_rate.denominator) == (1, 2)
    assert (city.investment.ytd_sum, city.investment.plan_sum) == (Decimal("50.25"), Decimal("110.50"))


def test_an_empty_reserve_has_one_city_group_with_empty_rates() -> None:
    frame = contributions(facts_frame([None, None], extra={"county": ["沙市区", "荆州区"]}), date(2024, 3, 31))
    assert tally_rates(frame) == compute_rates([], as_of=date(2024, 3, 31), by="city")
    assert tally_rates(frame, by="county") == []
