"""The update frame: its columns and dtypes, its UpdateRow views, and idempotency keys equal to the
ones already stored (keys.idempotency_key), computed over the whole frame at once."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.ingest.frame import UPDATE_DTYPES, frame_to_rows, idempotency_keys, rows_to_frame
from pipeline.ingest.keys import idempotency_key
from pipeline.ingest.template import TEMPLATE_FIELDS, UpdateRow
from pipeline.ingest.values import canonical_money
from tests.factories import row
from tests.ingest_helpers import TODAY, parse_json


def test_the_frame_has_the_template_columns_in_order_and_the_bookkeeping_before_them() -> None:
    assert list(UPDATE_DTYPES) == ["row_number", "source_id", "idempotency_key", *(f.alias for f in TEMPLATE_FIELDS)]
    assert UPDATE_DTYPES["total_investment"] == pl.Decimal(16, 2) and UPDATE_DTYPES["lists"] == pl.List(pl.Utf8)
    assert UPDATE_DTYPES["as_of"] == pl.Date and UPDATE_DTYPES["needs_coordination"] == pl.Boolean
    parsed = parse_json([{"code": "2024-421003-44-01-000001", "name": "甲", "county": "沙市区", "nature": "续建",
                          "total_investment": "1,234.5", "as_of": "2024/3/31"}])
    assert parsed.updates.schema == pl.Schema(UPDATE_DTYPES)
    assert parsed.updates["total_investment"].to_list() == [Decimal("1234.50")]


def test_rows_survive_the_frame_both_ways() -> None:
    rows = [row(1), row(2, lists=(), annual_plan=None, source_id="S-2", needs_coordination=True),
            row(3, total_investment=Decimal("0.05"), ytd_completed=Decimal("1234.5"), cumulative_completed=None)]
    frame = rows_to_frame(rows)
    assert frame.schema == pl.Schema(UPDATE_DTYPES)
    assert frame_to_rows(frame) == rows
    assert frame["idempotency_key"].to_list() == [idempotency_key(r) for r in rows]


_text = st.text(
    st.characters(exclude_categories=("Cs",)) | st.sampled_from('"\\\n\t\r\b\f\x01\x1f\x7f中😀\u2028'), max_size=40
)
_money = st.decimals(min_value=Decimal("-99999999999.99"), max_value=Decimal("999999999999.99"), places=2,
                     allow_nan=False).map(canonical_money) | st.integers(0, 10**11).map(Decimal)
_day = st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 12, 31))


@st.composite
def any_row(draw: st.DrawFn) -> UpdateRow:
    """Rows as the demo, tests and benchmarks build them, and as a unit's progress-only row leaves them."""
    maybe = lambda s: st.none() | s  # noqa: E731
    return UpdateRow(
        code=draw(_text), name=draw(maybe(_text)), county=draw(maybe(_text)), nature=draw(maybe(_text)),
        total_investment=draw(maybe(_money)), as_of=draw(_day), industry=draw(maybe(_text)),
        lists=tuple(draw(st.lists(_text, max_size=3))), annual_plan=draw(maybe(_money)),
        planned_start=draw(maybe(_day)), planned_completion=draw(maybe(_day)), actual_start=draw(maybe(_day)),
        actual_completion=draw(maybe(_day)), stats_included_on=draw(maybe(_day)),
        cumulative_completed=draw(maybe(_money)), ytd_completed=draw(maybe(_money)), leader=draw(maybe(_text)),
        unit=draw(maybe(_text)), problems=draw(maybe(_text)), needs_coordination=draw(st.booleans()),
        source_id=draw(st.none() | st.just("") | _text.filter(bool)), row_number=draw(st.integers(1, 10**6)),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_row(), min_size=1, max_size=8))
def test_the_frames_keys_are_the_keys_already_stored(rows: list[UpdateRow]) -> None:
    """Quotes, backslashes, control characters, Chinese, emoji; amounts with and without cents; empty lists."""
    frame = rows_to_frame(rows)
    assert idempotency_keys(frame).to_list() == [idempotency_key(r) for r in rows]
    assert frame_to_rows(frame) == rows


def test_a_parsed_frames_keys_match_its_rows() -> None:
    records = [{"code": f"2024-421003-44-01-00000{n}", "name": 'A"\\b', "county": "沙市区", "nature": "续建",
                "total_investment": 50000 + n / 10, "as_of": str(TODAY), "lists": []} for n in range(1, 5)]
    parsed = parse_json(records + [{**records[0], "code": "2024-421003-44-01-000009", "id": "SRC-9"}])
    assert parsed.updates["idempotency_key"].to_list() == [idempotency_key(r) for r in parsed.rows]
    assert parsed.updates["idempotency_key"][-1] == "src:SRC-9"
