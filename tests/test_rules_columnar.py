"""The columnar engine agrees exactly with the per-row oracle (tests/rules_oracle.py).

Exactly: the same colour and base colour, and the same reasons text byte for byte, i.e. the same
codes in the same order, identical messages, and ``values`` with the same keys, values and JSON
types (an int stays an int, a float a float). Projects are aimed at every band edge (days on,
before and after each threshold, pace amounts on an edge and a cent either side), with nulls in
every column, completed projects, every base colour a month before, at month ends, mid-month,
29 February and January; for both shipped schemes and for random schemes loaded from YAML text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.demo.generate import generate_demo
from pipeline.facts import ProjectFacts
from pipeline.reference import load_reference
from pipeline.rules import Color, Flag, Scheme, compile_scheme, evaluate_many, facts_frame, previous_month_end
from tests.rules_oracle import oracle_base_color, oracle_evaluate_many
from tests.rules_strategies import (
    CONFIG, SHIPPED, evaluation_dates, month_end, pace_edges, project, random_scheme, scheme_extras,
)

RANK = {Color.GREEN: 0, Color.YELLOW: 1, Color.RED: 2}
Items = list[tuple[ProjectFacts | None, ProjectFacts | None]]
def heavy(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def reasons_text(flag: Flag) -> str:
    return json.dumps([r.to_json() for r in flag.reasons], ensure_ascii=False, separators=(",", ":"))


def expected(flags: Sequence[Flag]) -> list[tuple[str, str, str]]:
    return [(f.color.value, f.base_color.value, reasons_text(f)) for f in flags]


def produced(frame: pl.DataFrame) -> list[tuple[str, str, str]]:
    return list(zip(frame["color"], frame["base_color"], frame["reasons"]))


@st.composite
def batches(
    draw: st.DrawFn, schemes: st.SearchStrategy[Scheme], *, scale: bool = False, size: int = 30,
) -> tuple[Scheme, date, Items, Fraction | None]:
    scheme = draw(schemes)
    d = draw(evaluation_dates)
    ytd_scale = draw(st.sampled_from([Fraction(12, 11), Fraction(3, 2), Fraction(0), Fraction(1, 3), Fraction(1),
                                      Fraction(7, 10**9)]) | st.fractions(0, 5, max_denominator=400)) if scale else None
    days, months = scheme_extras(scheme)
    month_before = previous_month_end(d)
    edges = pace_edges(scheme, d, Fraction(1) if ytd_scale is None else ytd_scale)
    edges_before = pace_edges(scheme, month_before, Fraction(1))
    n = draw(st.integers(1, size))
    items: Items = []
    for i in range(n):
        code = f"2024-421003-44-01-{i:06d}"
        row = draw(project(d, edges, extra_days=days, month_edges=months, code=code))
        previous = draw(project(month_before, edges_before, extra_days=days, month_edges=months, code=code))
        items.append((row, previous))
    return scheme, d, items, ytd_scale


def frames(items: Items) -> tuple[pl.DataFrame, pl.DataFrame]:
    return facts_frame([r for r, _ in items]), facts_frame([p for _, p in items])


shipped = st.sampled_from(sorted(SHIPPED)).map(SHIPPED.__getitem__)


@heavy(270)
@given(batches(shipped | random_scheme()))
def test_schemes_agree_with_the_oracle(case: tuple[Scheme, date, Items, Fraction | None]) -> None:
    """Both shipped schemes and random ones (thresholds, operators, applicability, messages)."""
    scheme, d, items, _ = case
    current, previous = frames(items)
    result = compile_scheme(scheme).evaluate_with_previous(current, previous, d)
    assert produced(result) == expected(oracle_evaluate_many(scheme, items, d))


@heavy(100)
@given(batches(shipped | random_scheme(), scale=True))
def test_a_scaled_ytd_agrees_with_the_oracle(case: tuple[Scheme, date, Items, Fraction | None]) -> None:
    scheme, d, items, ytd_scale = case
    current, previous = frames(items)
    compiled = compile_scheme(scheme)
    prev = compiled.base_ranks(previous, previous_month_end(d)).alias("prev_base")
    result = compiled.evaluate(current.with_columns(prev), d, ytd_scale=ytd_scale)
    assert produced(result) == expected(oracle_evaluate_many(scheme, items, d, ytd_scale=ytd_scale))


@heavy(60)
@given(batches(shipped | random_scheme()))
def test_base_ranks_agree_with_the_oracle(case: tuple[Scheme, date, Items, Fraction | None]) -> None:
    scheme, d, items, _ = case
    ranks = compile_scheme(scheme).base_ranks(facts_frame([r for r, _ in items]), d)
    assert ranks.dtype == pl.UInt8
    assert ranks.to_list() == [RANK[oracle_base_color(scheme, row, d)] for row, _ in items]


@heavy(60)
@given(batches(shipped | random_scheme()), st.data())
def test_reasons_only_where_wanted(case: tuple[Scheme, date, Items, Fraction | None], data: st.DataObject) -> None:
    """``reasons_where`` (a re-flag wants only the flags it writes): the same colours everywhere, the
    oracle's reasons on the wanted rows, null on the others."""
    scheme, d, items, _ = case
    current, previous = frames(items)
    compiled = compile_scheme(scheme)
    prev = compiled.base_ranks(previous, previous_month_end(d)).alias("prev_base")
    wanted = data.draw(st.lists(st.booleans(), min_size=len(items), max_size=len(items)))
    seen: list[list[str]] = []

    def where(judged: pl.DataFrame) -> pl.Series:
        seen.append(judged.columns)
        return pl.Series(wanted, dtype=pl.Boolean)

    result = compiled.evaluate(current.with_columns(prev), d, reasons_where=where)
    assert "color" in seen[0] and "base_color" in seen[0]
    oracle = expected(oracle_evaluate_many(scheme, items, d))
    assert list(zip(result["color"], result["base_color"])) == [(c, b) for c, b, _ in oracle]
    assert result["reasons"].to_list() == [r if w else None for (_, _, r), w in zip(oracle, wanted)]


@heavy(50)
@given(batches(shipped | random_scheme()), st.data())
def test_prev_base_given_directly_is_the_previous_rows_base(
    case: tuple[Scheme, date, Items, Fraction | None], data: st.DataObject
) -> None:
    """ESCALATED with every prev_base (null, 0, 1, 2): as if the previous row had that base colour."""
    scheme, d, items, _ = case
    month_before = previous_month_end(d)
    bases = [RANK[oracle_base_color(scheme, previous, month_before)] for _, previous in items]
    given_ranks = [None if b == 0 and data.draw(st.booleans()) else b for b in bases]  # null means green
    frame = facts_frame([r for r, _ in items], prev_base=given_ranks)
    result = compile_scheme(scheme).evaluate(frame, d)
    assert produced(result) == expected(oracle_evaluate_many(scheme, items, d))


@heavy(40)
@given(batches(shipped | random_scheme(), size=12))
def test_the_object_adapter_is_the_oracle(case: tuple[Scheme, date, Items, Fraction | None]) -> None:
    """``evaluate_many`` (Flag objects) equals the oracle's flags, value types included."""
    scheme, d, items, _ = case
    flags = evaluate_many(scheme, items, d)
    oracle = oracle_evaluate_many(scheme, items, d)
    assert flags == oracle
    assert expected(flags) == expected(oracle)


@pytest.mark.parametrize("prev_base", [None, 0, 1, 2])
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_escalation_needs_yellow_now_and_before(name: str, prev_base: int | None) -> None:
    scheme = SHIPPED[name]
    d = date(2024, 6, 30)
    row = ProjectFacts(code="A", as_of=d, actual_start=date(2024, 1, 2), stats_included_on=date(2024, 1, 5),
                       planned_completion=d - timedelta(days=10))  # COMPLETION_OVERDUE yellow in jingzhou
    frame = facts_frame([row], prev_base=[prev_base])
    result = compile_scheme(scheme).evaluate(frame, d)
    codes = [r["code"] for r in json.loads(result["reasons"][0])]
    escalated = name == "jingzhou-2024" and prev_base == 1
    assert ("ESCALATED" in codes) is escalated
    assert result["color"][0] == ("red" if escalated else "yellow" if name == "jingzhou-2024" else "green")


# --- the realistic reserve -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_reports() -> list[list[ProjectFacts]]:
    demo = generate_demo(seed=2024, reference=load_reference(CONFIG))
    return [[r.facts() for r in report] for report in demo.reports]


def newest_by(reports: list[list[ProjectFacts]], day: date) -> dict[str, ProjectFacts]:
    found: dict[str, ProjectFacts] = {}
    for report in reports:
        for row in report:
            if row.as_of <= day:
                found[row.code] = row
    return found


DEMO_DAYS = [month_end(2024, m) for m in range(1, 13)] + [date(2024, 2, 29), date(2024, 3, 15), date(2024, 7, 1),
                                                          date(2025, 1, 10), date(2025, 2, 28)]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_demo_reserve_agrees_with_the_oracle_at_every_month_end(demo_reports: list[list[ProjectFacts]], name: str) -> None:
    scheme = SHIPPED[name]
    compiled = compile_scheme(scheme)
    codes = sorted({r.code for report in demo_reports for r in report})
    flagged = 0
    for d in DEMO_DAYS:
        now, before = newest_by(demo_reports, d), newest_by(demo_reports, previous_month_end(d))
        items: Items = [(now.get(c), before.get(c)) for c in codes]
        current, previous = frames(items)
        result = compiled.evaluate_with_previous(current, previous, d)
        assert produced(result) == expected(oracle_evaluate_many(scheme, items, d))
        flagged += sum(1 for color in result["color"] if color != "green")
    assert flagged > 0


def test_demo_reserve_at_year_end_is_about_a_quarter_flagged(demo_reports: list[list[ProjectFacts]]) -> None:
    """The data the benchmark uses: realistic, with every jingzhou rule firing somewhere."""
    d = date(2024, 12, 31)
    codes = sorted({r.code for report in demo_reports for r in report})
    now, before = newest_by(demo_reports, d), newest_by(demo_reports, previous_month_end(d))
    current, previous = frames([(now.get(c), before.get(c)) for c in codes])
    result = compile_scheme(SHIPPED["jingzhou-2024"]).evaluate_with_previous(current, previous, d)
    share = sum(1 for c in result["color"] if c != "green") / result.height
    assert 0.15 < share < 0.35
    fired = {r["code"] for text in result["reasons"] for r in json.loads(text)}
    assert fired == {rule.code for rule in SHIPPED["jingzhou-2024"].rules}


def test_extreme_amounts_take_the_exact_python_path() -> None:
    """Amounts whose products leave Int128, and values past 15 significant digits, stay exact."""
    scheme = SHIPPED["jingzhou-2024"]
    d = date(2024, 6, 30)
    huge = Decimal(10**33) + Decimal("0.01")
    items: Items = [
        (ProjectFacts(code=f"A{i}", as_of=d, actual_start=date(2024, 1, 1), stats_included_on=date(2024, 1, 2),
                      annual_plan=plan, ytd_completed=ytd), None)
        for i, (plan, ytd) in enumerate([
            (huge, Decimal("1.00")), (Decimal("0.01"), Decimal(10**20)), (Decimal("123456789012345.67"), Decimal("1.23")),
            (Decimal(3), Decimal(1)), (huge, huge / 3),
        ])
    ]
    result = compile_scheme(scheme).evaluate_with_previous(*frames(items), d)
    assert produced(result) == expected(oracle_evaluate_many(scheme, items, d))
    for scale in (Fraction(10**30, 7), Fraction(1, 10**30)):
        prev = pl.Series("prev_base", [0] * len(items), dtype=pl.UInt8)
        scaled = compile_scheme(scheme).evaluate(frames(items)[0].with_columns(prev), d, ytd_scale=scale)
        assert produced(scaled) == expected(oracle_evaluate_many(scheme, items, d, ytd_scale=scale))


def test_a_pace_edge_at_zero_with_an_amount_past_int64() -> None:
    """A band edge of 0 makes the product plan·0 small while the plan itself is past Int64: the
    comparison must still be made in a type the plan fits in (found by the property test)."""
    from pipeline.rules.scheme import Band, Rule

    scheme = Scheme(name="edge-zero", version=1, title="边界", rules=(
        Rule(code="R0", name="规则0", metric="pace_ratio", bands=(Band(color=Color.YELLOW, min=0),), message="提示"),
    ))
    d = date(2024, 2, 29)
    items: Items = [
        (ProjectFacts(code=f"A{i}", as_of=d, actual_start=date(2024, 1, 1), annual_plan=plan, ytd_completed=ytd), None)
        for i, (plan, ytd) in enumerate([(Decimal(10**22) + Decimal("0.01"), None), (Decimal(10**22), Decimal(5))])
    ]
    prev = pl.Series("prev_base", [0] * len(items), dtype=pl.UInt8)
    result = compile_scheme(scheme).evaluate(frames(items)[0].with_columns(prev), d)
    assert produced(result) == expected(oracle_evaluate_many(scheme, items, d))
