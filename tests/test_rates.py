"""The three rates and investment completion (SPEC §5) and their JSON line (SPEC §7)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from itertools import count

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from pipeline.facts import ProjectFacts
from pipeline.rates import (
    GROUPINGS,
    GroupRates,
    MoneyRatio,
    Ratio,
    RateSubject,
    compute_rates,
    format_rates_table,
)

D = date(2024, 6, 15)
_serial = count(1)


def subject(
    *,
    county: str = "沙市区",
    lists: tuple[str, ...] = (),
    leader: str | None = None,
    industry: str | None = None,
    as_of: date = D,
    **facts: object,
) -> RateSubject:
    code = f"2024-421002-44-01-{next(_serial):06d}"
    return RateSubject(
        facts=ProjectFacts(code=code, as_of=as_of, **facts),  # type: ignore[arg-type]
        county=county,
        lists=lists,
        leader=leader,
        industry=industry,
    )


def city(*subjects: RateSubject, as_of: date = D) -> GroupRates:
    (only,) = compute_rates(subjects, as_of=as_of)
    assert only.group == "全市"
    return only


# --- 开工率 ---------------------------------------------------------------------------------


def test_start_rate_counts_planned_start_on_d_and_excludes_previous_year() -> None:
    rates = city(
        subject(planned_start=D, actual_start=D),  # due exactly on D, started on D
        subject(planned_start=date(2024, 1, 1)),  # due, not started
        subject(planned_start=date(2023, 12, 31), actual_start=date(2024, 1, 5)),  # last year
        subject(planned_start=D + timedelta(days=1)),  # this year, not yet due
        subject(planned_start=date(2024, 12, 31), actual_start=date(2024, 6, 1)),  # early starter
        subject(),  # no plan at all
    )
    assert rates.projects == 6
    assert rates.start_rate == Ratio(1, 2)
    # annual: all planned to start in 2024, numerator those of them started by D
    assert rates.start_rate_annual == Ratio(2, 4)


def test_start_after_d_is_not_started() -> None:
    # an actual_start later than D (a row that looks ahead) is not counted as started by D
    rates = city(subject(planned_start=date(2024, 3, 1), actual_start=D + timedelta(days=1)))
    assert rates.start_rate == Ratio(0, 1)
    assert rates.start_rate_annual == Ratio(0, 1)


def test_planned_start_next_year_is_outside_both_forms() -> None:
    rates = city(subject(planned_start=date(2025, 1, 1), actual_start=date(2024, 5, 1)))
    assert rates.start_rate == Ratio(0, 0)
    assert rates.start_rate_annual == Ratio(0, 0)


# --- 竣工率 ---------------------------------------------------------------------------------


def test_completion_rate_uses_planned_and_actual_completion() -> None:
    rates = city(
        subject(planned_completion=D, actual_start=date(2023, 1, 1), actual_completion=D),
        subject(planned_completion=date(2024, 2, 1), actual_start=date(2023, 1, 1)),
        subject(
            planned_completion=date(2023, 12, 31),
            actual_start=date(2022, 1, 1),
            actual_completion=date(2023, 12, 20),
        ),
        subject(planned_completion=date(2024, 11, 30), actual_start=date(2023, 1, 1)),
        subject(
            planned_completion=date(2024, 9, 30),
            actual_start=date(2023, 1, 1),
            actual_completion=date(2024, 5, 31),
        ),
    )
    assert rates.completion_rate == Ratio(1, 2)
    assert rates.completion_rate_annual == Ratio(2, 4)
    # the completion fields do not leak into the start rate
    assert rates.start_rate == Ratio(0, 0)


# --- 入统率 ---------------------------------------------------------------------------------


def test_stats_rate_boundaries_at_d_minus_30() -> None:
    rates = city(
        subject(actual_start=D - timedelta(days=30), stats_included_on=D),  # due, in on D
        subject(actual_start=D - timedelta(days=30)),  # due, not in
        subject(actual_start=D - timedelta(days=29), stats_included_on=D),  # not yet due
        subject(actual_start=date(2024, 1, 2), stats_included_on=D + timedelta(days=1)),  # later
    )
    assert rates.stats_rate == Ratio(1, 3)


def test_stats_rate_ignores_planned_dates() -> None:
    # a 续建 project started years ago counts; an unstarted one does not, whatever its plan
    rates = city(
        subject(actual_start=date(2021, 3, 1), stats_included_on=date(2021, 4, 1)),
        subject(planned_start=date(2024, 1, 1)),
    )
    assert rates.stats_rate == Ratio(1, 1)
    assert rates.stats_rate.display() == "100.0%"


# --- 投资完成率 -----------------------------------------------------------------------------


def test_investment_sums_with_missing_values_as_zero() -> None:
    rates = city(
        subject(annual_plan=Decimal("1000"), ytd_completed=Decimal("450.5")),
        subject(annual_plan=Decimal("600"), ytd_completed=None),
        subject(annual_plan=None, ytd_completed=Decimal("20")),
    )
    assert rates.investment == MoneyRatio(Decimal("470.5"), Decimal("1600"))
    assert rates.investment.value == Fraction(4705, 16000)
    assert rates.investment.display() == "29.4%"
    assert rates.to_json()["investment"] == [470.5, 1600]
    assert isinstance(rates.to_json()["investment"][1], int)


# --- empty denominators -----------------------------------------------------------------------


def test_empty_denominators_show_dash_and_zero_pairs() -> None:
    rates = city(subject(), as_of=D)  # nothing planned, nothing started, no money
    for ratio in (
        rates.start_rate,
        rates.start_rate_annual,
        rates.completion_rate,
        rates.completion_rate_annual,
        rates.stats_rate,
        rates.investment,
    ):
        assert ratio.value is None
        assert ratio.display() == "—"
    assert rates.to_json() == {
        "group": "全市",
        "start_rate": [0, 0],
        "start_rate_annual": [0, 0],
        "completion_rate": [0, 0],
        "completion_rate_annual": [0, 0],
        "stats_rate": [0, 0],
        "investment": [0, 0],
    }


def test_no_projects_still_gives_one_city_line() -> None:
    (only,) = compute_rates([], as_of=D)
    assert only.group == "全市" and only.projects == 0
    assert only.stats_rate.display() == "—"
    assert compute_rates([], as_of=D, by="county") == []


def test_zero_numerator_with_denominator_is_zero_percent() -> None:
    assert Ratio(0, 4).display() == "0.0%"
    assert Ratio(7, 8).display() == "87.5%"
    assert Ratio(2, 3).display() == "66.7%"
    assert Ratio(1, 3).display() == "33.3%"
    assert Ratio(1, 2000).display() == "0.1%"  # 0.05 % rounds half up
    assert Ratio(1, 2001).display() == "0.0%"
    assert MoneyRatio(Decimal("0"), Decimal("0")).display() == "—"
    assert MoneyRatio(Decimal("150"), Decimal("100")).display() == "150.0%"


# --- groupings --------------------------------------------------------------------------------


def test_project_on_several_lists_counts_in_each() -> None:
    both = subject(lists=("亿元以上项目", "省市重点项目"), planned_start=date(2024, 2, 1))
    one = subject(lists=("亿元以上项目",), planned_start=date(2024, 2, 1), actual_start=D)
    none = subject(planned_start=date(2024, 2, 1), actual_start=D)
    dup = subject(lists=("国债和专项债项目", "国债和专项债项目"), annual_plan=Decimal(10))
    groups = {g.group: g for g in compute_rates([both, one, none, dup], as_of=D, by="list")}
    assert list(groups) == ["亿元以上项目", "国债和专项债项目", "省市重点项目", "未指定"]
    assert groups["亿元以上项目"].projects == 2
    assert groups["亿元以上项目"].start_rate == Ratio(1, 2)
    assert groups["省市重点项目"].projects == 1
    assert groups["省市重点项目"].start_rate == Ratio(0, 1)
    assert groups["未指定"].start_rate == Ratio(1, 1)
    # the same list named twice on one project counts it once
    assert groups["国债和专项债项目"].projects == 1
    assert groups["国债和专项债项目"].investment.plan_sum == Decimal(10)


def test_leader_and_industry_default_to_unspecified() -> None:
    subjects = [
        subject(leader="张三", industry="工业", actual_start=date(2024, 1, 1)),
        subject(leader=None, industry="  ", actual_start=date(2024, 1, 1), stats_included_on=D),
        subject(leader="李四", industry=None),
    ]
    leaders = compute_rates(subjects, as_of=D, by="leader")
    assert [g.group for g in leaders] == sorted(["张三", "李四"]) + ["未指定"]
    by_leader = {g.group: g for g in leaders}
    assert by_leader["未指定"].stats_rate == Ratio(1, 1)
    assert by_leader["张三"].stats_rate == Ratio(0, 1)
    assert by_leader["李四"].stats_rate == Ratio(0, 0)
    industries = {g.group: g.projects for g in compute_rates(subjects, as_of=D, by="industry")}
    assert industries == {"工业": 1, "未指定": 2}


def test_county_groups_sorted_by_name_and_deterministic() -> None:
    subjects = [subject(county=c) for c in ("荆州区", "沙市区", "公安县", "沙市区")]
    first = compute_rates(subjects, as_of=D, by="county")
    again = compute_rates(list(reversed(subjects)), as_of=D, by="county")
    assert [g.group for g in first] == sorted({"荆州区", "沙市区", "公安县"})
    assert first == again
    assert {g.group: g.projects for g in first} == {"荆州区": 1, "沙市区": 2, "公安县": 1}


def test_groups_follow_the_configured_order_then_the_rest_by_name() -> None:
    subjects = [subject(county=c) for c in ("荆州区", "沙市区", "公安县", "外市", "沙市区")]
    subjects.append(subject(county=" "))
    order = ("沙市区", "荆州区", "公安县")  # as config/counties.yaml lists them
    groups = [g.group for g in compute_rates(subjects, as_of=D, by="county", order=order)]
    assert groups == ["沙市区", "荆州区", "公安县", "外市", "未指定"]
    assert [g.group for g in compute_rates(subjects, as_of=D, by="city", order=order)] == ["全市"]


def test_unknown_grouping_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown grouping"):
        compute_rates([], as_of=D, by="unit")


def test_row_after_d_or_same_project_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="after"):
        compute_rates([subject(as_of=D + timedelta(days=1))], as_of=D)
    twice = subject()
    with pytest.raises(ValueError, match="more than once"):
        compute_rates([twice, twice], as_of=D)


def test_compute_rates_accepts_a_one_shot_iterator() -> None:
    stream = iter([subject(planned_start=date(2024, 1, 1), actual_start=date(2024, 1, 1))])
    (only,) = compute_rates(stream, as_of=D)
    assert only.start_rate == Ratio(1, 1)


# --- JSON line --------------------------------------------------------------------------------


def test_to_json_shape_and_key_order() -> None:
    rates = city(
        subject(
            planned_start=date(2024, 3, 1),
            actual_start=date(2024, 3, 10),
            planned_completion=date(2024, 12, 31),
            stats_included_on=date(2024, 4, 1),
            annual_plan=Decimal("1200.00"),
            ytd_completed=Decimal("300.25"),
        ),
        subject(planned_start=date(2024, 5, 1)),
    )
    data = rates.to_json()
    assert list(data) == [
        "group",
        "start_rate",
        "start_rate_annual",
        "completion_rate",
        "completion_rate_annual",
        "stats_rate",
        "investment",
    ]
    assert data == {
        "group": "全市",
        "start_rate": [1, 2],
        "start_rate_annual": [1, 2],
        "completion_rate": [0, 0],
        "completion_rate_annual": [0, 1],
        "stats_rate": [1, 1],
        "investment": [300.25, 1200],
    }
    line = json.dumps(data, ensure_ascii=False)
    assert line.startswith('{"group": "全市", "start_rate": [1, 2]')
    assert json.loads(line) == data


# --- table ------------------------------------------------------------------------------------


def test_rates_table_has_chinese_headings_and_time_progress() -> None:
    groups = compute_rates(
        [
            subject(county="沙市区", planned_start=date(2024, 1, 1), actual_start=D),
            subject(county="荆州区", annual_plan=Decimal(100), ytd_completed=Decimal(50)),
        ],
        as_of=date(2024, 6, 30),
        by="county",
    )
    table = format_rates_table(groups, date(2024, 6, 30))
    assert [str(c.header) for c in table.columns] == [
        "分组",
        "项目数",
        "开工率",
        "开工率(全年)",
        "竣工率",
        "竣工率(全年)",
        "入统率",
        "投资完成率",
        "序时进度",
    ]
    console = Console(width=200, record=True, color_system=None)
    console.print(table)
    text = console.export_text()
    assert "沙市区" in text and "荆州区" in text
    assert "100.0% (1/1)" in text
    assert "50.0%" in text
    assert "—" in text
    assert "50.0%" in list(table.columns[-1].cells)  # f(30 June) is exactly 6/12


# --- properties -------------------------------------------------------------------------------

COUNTIES = ("沙市区", "荆州区", "公安县", "江陵县")
LISTS = ("亿元以上项目", "省市重点项目", "重大基础设施项目", "国债和专项债项目")
DAY = st.dates(min_value=date(2022, 1, 1), max_value=date(2025, 12, 31))
MONEY = st.none() | st.decimals(min_value=0, max_value=10**7, places=2, allow_nan=False)


@st.composite
def subjects(draw: st.DrawFn) -> list[RateSubject]:
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(COUNTIES),
                st.lists(st.sampled_from(LISTS), max_size=4).map(tuple),
                st.none() | st.sampled_from(("张三", "李四", "王五")),
                st.none() | DAY,
                st.none() | DAY,
                st.none() | DAY,
                st.none() | DAY,
                st.none() | DAY,
                MONEY,
                MONEY,
            ),
            max_size=40,
        )
    )
    return [
        RateSubject(
            facts=ProjectFacts(
                code=f"P{i:04d}",
                as_of=date(2022, 1, 1),
                planned_start=ps,
                planned_completion=pc,
                actual_start=ast,
                actual_completion=ac,
                stats_included_on=si,
                annual_plan=plan,
                ytd_completed=ytd,
            ),
            county=county,
            lists=lists,
            leader=leader,
        )
        for i, (county, lists, leader, ps, pc, ast, ac, si, plan, ytd) in enumerate(rows)
    ]


RATIO_FIELDS = (
    "start_rate",
    "start_rate_annual",
    "completion_rate",
    "completion_rate_annual",
    "stats_rate",
)


@settings(max_examples=300, deadline=None)
@given(subjects(), st.dates(min_value=date(2023, 1, 1), max_value=date(2025, 12, 31)))
def test_numerators_never_exceed_denominators_and_counties_sum_to_city(
    projects: list[RateSubject], as_of: date
) -> None:
    (total,) = compute_rates(projects, as_of=as_of)
    assert total.projects == len(projects)
    for by in GROUPINGS:
        for group in compute_rates(projects, as_of=as_of, by=by):
            for name in RATIO_FIELDS:
                ratio: Ratio = getattr(group, name)
                assert 0 <= ratio.numerator <= ratio.denominator <= group.projects
            # the due-by-D forms are subsets of the annual forms
            assert group.start_rate.denominator <= group.start_rate_annual.denominator
            assert group.start_rate.numerator <= group.start_rate_annual.numerator
            assert group.completion_rate.denominator <= group.completion_rate_annual.denominator

    for partition in ("county", "leader", "industry"):  # each project in exactly one group
        parts = compute_rates(projects, as_of=as_of, by=partition)
        assert sum(g.projects for g in parts) == total.projects
        for name in RATIO_FIELDS:
            assert sum(getattr(g, name).numerator for g in parts) == getattr(total, name).numerator
            assert (
                sum(getattr(g, name).denominator for g in parts)
                == getattr(total, name).denominator
            )
        assert sum(g.investment.ytd_sum for g in parts) == total.investment.ytd_sum
        assert sum(g.investment.plan_sum for g in parts) == total.investment.plan_sum

    # lists overlap, so their groups together hold at least every project once
    assert sum(g.projects for g in compute_rates(projects, as_of=as_of, by="list")) >= len(
        projects
    )
