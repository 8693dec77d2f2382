"""Properties: valid rows survive export → parse exactly, in every format; garbage in a number cell
never crashes the parser (each row comes back either as a row or as errors about that cell)."""

from __future__ import annotations

import math
import tempfile
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.ingest.export import write_template
from pipeline.ingest.template import NATURE_CONTINUING, NATURE_NEW, UpdateRow
from pipeline.ingest.values import canonical_money
from tests.ingest_helpers import TODAY, good_cells, parse, parse_json, reference, write_csv

REF = reference()
TOTAL = "总投资（万元）"

# Text a user could type: no control characters, surrogates or unassigned code points; stripped;
# not starting with "=" (that is a formula, refused by design).
_chars = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Cn", "Co", "Zl", "Zp"))


def text(max_size: int, *, required: bool = False) -> st.SearchStrategy[str | None]:
    value = st.text(_chars, min_size=1, max_size=max_size).map(str.strip).filter(
        lambda s: bool(s) and not s.startswith("=")
    )
    return value if required else st.none() | value


money = st.decimals(min_value=0, max_value=Decimal("9999999999.99"), places=2, allow_nan=False).map(canonical_money)
positive_money = money.filter(lambda d: d > 0)
day = st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 12, 31))


def maybe_between(draw: st.DrawFn, low: date | None, high: date | None) -> date | None:
    if low is None or high is None or low > high:
        return None
    return draw(st.none() | st.dates(min_value=low, max_value=high))


@st.composite
def valid_row(draw: st.DrawFn, serial: int) -> UpdateRow:
    as_of = draw(st.dates(min_value=date(1990, 1, 1), max_value=TODAY))  # a 报告期 is never in the future
    nature = draw(st.sampled_from((NATURE_NEW, NATURE_CONTINUING)))
    planned_start = draw(day if nature == NATURE_NEW else st.none() | day)
    planned_completion = draw(st.none() | st.dates(min_value=planned_start or date(1990, 1, 1), max_value=date(2100, 12, 31)))
    actual_start = maybe_between(draw, date(1990, 1, 1), as_of)
    actual_completion = maybe_between(draw, actual_start, as_of)
    stats = maybe_between(draw, actual_start, as_of)
    ytd = draw(st.none() | money)
    cumulative = draw(st.none() | money.filter(lambda c: ytd is None or c >= ytd))
    year = draw(st.integers(1990, 2100))
    region = draw(st.sampled_from(sorted(REF.region_codes)))
    lists = draw(st.lists(st.sampled_from(REF.lists), unique=True).map(tuple))
    return UpdateRow(
        code=f"{year}-{region}-{draw(st.integers(0, 99)):02d}-{draw(st.integers(0, 99)):02d}-{serial:06d}",
        name=draw(text(200, required=True)),
        county=draw(st.sampled_from(sorted(REF.county_names))),
        nature=nature,
        total_investment=draw(positive_money),
        as_of=as_of,
        industry=draw(text(50)),
        lists=lists,
        annual_plan=draw(st.none() | money),
        planned_start=planned_start,
        planned_completion=planned_completion,
        actual_start=actual_start,
        actual_completion=actual_completion,
        stats_included_on=stats,
        cumulative_completed=cumulative,
        ytd_completed=ytd,
        leader=draw(text(50)),
        unit=draw(text(200)),
        problems=draw(text(500)),
        needs_coordination=draw(st.booleans()),
        source_id=draw(st.none() | st.just(f"S{serial}")),
    )


@st.composite
def valid_rows(draw: st.DrawFn) -> list[UpdateRow]:
    count = draw(st.integers(1, 6))
    return [draw(valid_row(serial)) for serial in range(count)]


def round_trip(rows: list[UpdateRow], suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        parsed = parse(write_template(rows, Path(folder) / f"rows{suffix}"))
    assert [e.describe() for e in parsed.errors] == []
    assert parsed.rows == rows
    assert parsed.total_rows == len(rows)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_rows())
def test_xlsx_round_trip(rows: list[UpdateRow]) -> None:
    round_trip(rows, ".xlsx")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_rows())
def test_csv_round_trip(rows: list[UpdateRow]) -> None:
    round_trip(rows, ".csv")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_rows())
def test_jsonl_round_trip(rows: list[UpdateRow]) -> None:
    round_trip(rows, ".jsonl")


garbage = st.one_of(
    st.text(),
    st.text(alphabet="0123456789,.-+eE ，．－％%$¥inftyNa"),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.dates(),
)


def _outcome_is_a_row_or_errors_about_the_cell(rows: list[UpdateRow], errors: list, row_number: int) -> None:
    assert len(rows) + (1 if errors else 0) == 1
    for error in errors:
        assert error.row_number == row_number
        assert error.header == TOTAL
        assert error.message
    if rows:
        value = rows[0].total_investment
        assert value.is_finite() and value > 0 and value == canonical_money(value)


@settings(max_examples=400, deadline=None)
@given(garbage)
def test_garbage_in_a_number_field_of_a_record_never_crashes(value: Any) -> None:
    record = {"code": "2024-421003-44-01-000001", "name": "甲", "county": "沙市区", "nature": "续建",
              "as_of": "2024-03-31", "total_investment": value}
    parsed = parse_json([record])
    _outcome_is_a_row_or_errors_about_the_cell(parsed.rows, parsed.errors, 1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30))
def test_garbage_in_a_number_cell_of_a_csv_never_crashes(value: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        parsed = parse(write_csv(Path(folder) / "g.csv", [good_cells(1, **{TOTAL: value})]))
    _outcome_is_a_row_or_errors_about_the_cell(parsed.rows, parsed.errors, 2)


@settings(deadline=None)
@given(st.floats(min_value=1e-3, max_value=1e11, allow_nan=False))
def test_finite_positive_floats_are_read_rounded_to_cents(value: float) -> None:
    record = {"code": "2024-421003-44-01-000001", "name": "甲", "county": "沙市区", "nature": "续建",
              "as_of": "2024-03-31", "total_investment": value}
    parsed = parse_json([record])
    if parsed.rows:
        assert math.isclose(float(parsed.rows[0].total_investment), value, abs_tol=0.005 + 1e-9 * value)
    else:
        [error] = parsed.errors
        assert value < 0.005 or value >= 1e12
        assert error.header == TOTAL


def _nesting(value: Any) -> int:
    """How deep a parsed JSON value's arrays and objects nest."""
    if isinstance(value, dict):
        return 1 + max((_nesting(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_nesting(v) for v in value), default=0)
    return 0


_tricky = st.text(st.sampled_from('[]{}"\\/ab中\n\u2028'), max_size=12)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | _tricky,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_tricky, inner, max_size=4),
    max_leaves=30,
)


@given(value=_json_values, ascii_only=st.booleans(), indent=st.sampled_from([None, 1]))
def test_the_json_depth_counts_brackets_outside_strings_only(value: Any, ascii_only: bool, indent: int | None) -> None:
    """The depth checked before a JSON body is parsed is the depth of what it parses to, whatever
    brackets, quotes and backslashes its strings hold."""
    import json

    from pipeline.ingest.readers import json_depth

    data = json.dumps(value, ensure_ascii=ascii_only, indent=indent).encode()
    assert json_depth(data) == _nesting(value)
