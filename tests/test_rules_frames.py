"""The facts frame contract of the columnar engine: columns in and out, dtypes, casts, refusals."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from decimal import Decimal

import polars as pl
import pytest
import yaml

from pipeline.facts import ProjectFacts
from pipeline.rules import FACT_DTYPES, compile_scheme, evaluate, facts_frame, previous_month_end
from pipeline.rules import reason_text
from pipeline.rules.scheme import _ExactLoader, parse_scheme
from tests.rules_oracle import oracle_base_color, oracle_evaluate
from tests.rules_strategies import SHIPPED

D = date(2024, 6, 30)
JINGZHOU = SHIPPED["jingzhou-2024"]


def pace_row(code: str, ytd: str, plan: str = "1200") -> ProjectFacts:
    return ProjectFacts(code=code, as_of=D, actual_start=date(2024, 1, 2), stats_included_on=date(2024, 1, 5),
                        annual_plan=Decimal(plan), ytd_completed=Decimal(ytd))


def test_the_builder_gives_the_one_schema() -> None:
    frame = facts_frame([pace_row("A", "1"), None], extra={"project_id": [7, 8]})
    assert frame.columns == ["code", "project_id", *FACT_DTYPES]
    assert {name: frame.schema[name] for name in FACT_DTYPES} == FACT_DTYPES
    assert frame["as_of"].to_list() == [D, None]
    assert frame["prev_base"].to_list() == [None, None]


def test_output_is_the_input_plus_three_columns_untouched() -> None:
    frame = facts_frame([pace_row("A", "100"), None, pace_row("C", "600")], extra={"county": ["沙市区", None, "荆州区"]})
    frame = frame.select(pl.lit(1).alias("first"), pl.all(), pl.lit("x").alias("last"))
    result = compile_scheme(JINGZHOU).evaluate(frame, D)
    assert result.columns == [*frame.columns, "color", "base_color", "reasons"]
    assert result.select(frame.columns).equals(frame)
    assert result.schema["color"] == pl.String and result.schema["reasons"] == pl.String
    assert result["color"].to_list() == ["red", "green", "green"]  # r = 100/600 < 0.6; no row; r = 1
    assert result["reasons"][1] == "[]" and result["reasons"][2] == "[]"
    assert [r["code"] for r in json.loads(result["reasons"][0])] == ["BEHIND_PACE"]


def test_money_may_come_as_float_or_int_columns() -> None:
    """Int64 is whole 万元; Float64 is its shortest decimal text rounded half to even to cents."""
    rows = [pace_row("A", "350.5", "1000"), pace_row("B", "2.68", "3"), pace_row("C", "1.00", "1.25")]
    exact = compile_scheme(JINGZHOU).evaluate(facts_frame(rows), D)
    floats = facts_frame(rows).with_columns(
        pl.Series("ytd_completed", [350.5, 2.675, 1.005], dtype=pl.Float64),
        pl.Series("annual_plan", [1000.0, 3.0, 1.25], dtype=pl.Float64),
    )
    as_floats = compile_scheme(JINGZHOU).evaluate(floats, D)
    assert as_floats["reasons"].to_list() == exact["reasons"].to_list()
    ints = facts_frame(rows[:1]).with_columns(pl.Series("annual_plan", [1000], dtype=pl.Int64),
                                               pl.Series("ytd_completed", [350], dtype=pl.Int64))
    reason = json.loads(compile_scheme(JINGZHOU).evaluate(ints, D)["reasons"][0])[0]
    assert (reason["values"]["ytd_completed"], reason["values"]["annual_plan"]) == (350, 1000)


def test_a_row_after_d_is_refused_naming_the_project() -> None:
    compiled = compile_scheme(JINGZHOU)
    late = pace_row("2024-421003-44-01-000123", "1")
    with pytest.raises(ValueError, match="项目 2024-421003-44-01-000123 的报告期 2024-06-30 晚于评价日期 2024-06-29"):
        compiled.evaluate(facts_frame([None, late]), date(2024, 6, 29))
    numbered = facts_frame([late]).drop("code").with_columns(pl.lit(42).alias("project_id"))
    with pytest.raises(ValueError, match="项目 42 的报告期"):
        compiled.base_ranks(numbered, date(2024, 6, 1))
    with pytest.raises(ValueError, match="项目 第2行 的报告期"):
        compiled.base_ranks(facts_frame([None, late]).drop("code"), date(2024, 6, 1))
    before = facts_frame([pace_row("B", "1")])
    with pytest.raises(ValueError, match="项目 B 的上月末行报告期 2024-06-30 晚于 2024-05-31"):
        compiled.evaluate_with_previous(facts_frame([None]), before, D.replace(day=15))


def test_missing_columns_and_mismatched_frames_are_refused() -> None:
    compiled = compile_scheme(JINGZHOU)
    with pytest.raises(ValueError, match="事实表缺少列：prev_base"):
        compiled.evaluate(facts_frame([pace_row("A", "1")]).drop("prev_base"), D)
    assert compiled.base_ranks(facts_frame([pace_row("A", "1")]).drop("prev_base"), D).to_list() == [2]
    with pytest.raises(ValueError, match="事实表缺少列：problems、prev_base"):
        compiled.evaluate(facts_frame([pace_row("A", "1")]).drop("problems", "prev_base"), D)
    with pytest.raises(ValueError, match="行数不同"):
        compiled.evaluate_with_previous(facts_frame([None, None]), facts_frame([None]), D)


def test_evaluate_with_previous_is_the_previous_month_ends_base() -> None:
    yellow = ProjectFacts(code="A", as_of=D, actual_start=date(2024, 1, 2), stats_included_on=date(2024, 1, 5),
                          needs_coordination=True, problems="用地")
    before = ProjectFacts(code="A", as_of=date(2024, 5, 31), actual_start=date(2024, 1, 2),
                          stats_included_on=date(2024, 1, 5), needs_coordination=True)
    compiled = compile_scheme(JINGZHOU)
    month_end = previous_month_end(D)
    assert compiled.base_ranks(facts_frame([before]), month_end).to_list() == [1]
    result = compiled.evaluate_with_previous(facts_frame([yellow]), facts_frame([before]), D)
    assert result["color"][0] == "red" and result["base_color"][0] == "yellow"
    assert json.loads(result["reasons"][0]) == [r.to_json() for r in oracle_evaluate(JINGZHOU, yellow, D, before).reasons]


def test_a_message_is_written_only_for_the_rows_where_its_rule_fires(monkeypatch: pytest.MonkeyPatch) -> None:
    """A message with a format spec is written by Python, row by row: only the firing rows."""
    document = yaml.load(
        "name: t\nversion: 1\ntitle: 测试\nrules:\n"
        "  - {code: LATE, name: 逾期, metric: start_overdue_days, red: {min: 1}, message: '逾期{overdue_days:>5}天'}\n"
        "  - {code: OLD, name: 旧, metric: days_since_report, yellow: {min: 1}, message: '旧'}\n",
        Loader=_ExactLoader,
    )
    scheme = parse_scheme(document)
    calls: list[object] = []
    real = reason_text.show
    monkeypatch.setattr(reason_text, "show", lambda v: calls.append(v) or real(v))
    rows = [ProjectFacts(code=str(i), as_of=D, planned_start=date(2024, 6, 30 - i)) for i in range(10)]
    rows.append(ProjectFacts(code="old", as_of=date(2024, 6, 1)))  # flagged by OLD only
    result = compile_scheme(scheme).evaluate(facts_frame(rows), D)
    assert sorted(calls) == list(range(1, 10))  # nine rows fire (in any order); not the one due today nor "old"
    assert result["reasons"].to_list() == [
        json.dumps([r.to_json() for r in evaluate(scheme, row, D, None).reasons], ensure_ascii=False, separators=(",", ":"))
        for row in rows
    ]
    assert json.loads(result["reasons"][3])[0]["message"] == "逾期    3天"


@pytest.mark.parametrize("column", [c for c in FACT_DTYPES if c != "prev_base"])
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_null_in_any_column_reads_as_the_missing_value(name: str, column: str) -> None:
    """Null money/dates/text as None, null needs_coordination as 否, null as_of as no row at all."""
    scheme = SHIPPED[name]
    busy = ProjectFacts(
        code="A", as_of=date(2024, 5, 1), nature="新开工", annual_plan=Decimal("1200"), ytd_completed=Decimal("100"),
        cumulative_completed=Decimal("900"), planned_start=date(2024, 2, 1), planned_completion=date(2024, 3, 1),
        actual_start=date(2024, 2, 20), actual_completion=None, stats_included_on=None, needs_coordination=True,
        problems="资金",
    )
    frame = facts_frame([busy], prev_base=[1 if name == "jingzhou-2024" else 0]).with_columns(pl.lit(None, dtype=FACT_DTYPES[column]).alias(column))
    result = compile_scheme(scheme).evaluate(frame, D)
    missing = None if column == "as_of" else dataclasses.replace(
        busy, **{column: False if column == "needs_coordination" else None}
    )
    before = ProjectFacts(code="A", as_of=date(2024, 5, 31), actual_start=date(2024, 2, 20),
                          stats_included_on=date(2024, 2, 25), needs_coordination=True)  # yellow then: prev_base 1
    assert oracle_base_color(scheme, before, date(2024, 5, 31)).rank == (1 if name == "jingzhou-2024" else 0)
    flag = oracle_evaluate(scheme, missing, D, before)
    assert (result["color"][0], result["base_color"][0]) == (flag.color.value, flag.base_color.value)
    assert result["reasons"][0] == json.dumps([r.to_json() for r in flag.reasons], ensure_ascii=False,
                                              separators=(",", ":"))
