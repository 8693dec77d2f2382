"""``evaluate_rows``: each project's rows from files, in 报告期 order, judged as of D (SPEC §7)."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pipeline.ingest.template import UpdateRow
from pipeline.rules import Scheme, evaluate_rows, load_scheme

CONFIG = Path(__file__).resolve().parent.parent / "config"
A = "2024-421003-44-01-000001"
B = "2024-421003-44-01-000002"
C = "2024-421022-44-01-000003"


@pytest.fixture(scope="module")
def jingzhou() -> Scheme:
    return load_scheme("jingzhou-2024", config_dir=CONFIG)


@pytest.fixture(scope="module")
def yinchuan() -> Scheme:
    return load_scheme("yinchuan-2025", config_dir=CONFIG)


def update(code: str, as_of: date, **fields: Any) -> UpdateRow:
    base: dict[str, Any] = {
        "code": code, "name": f"项目{code[-1]}", "county": "荆州区", "nature": "续建",
        "total_investment": Decimal(50000), "as_of": as_of,
        "actual_start": date(2024, 1, 5), "stats_included_on": date(2024, 1, 31),
    }
    base.update(fields)
    return UpdateRow(**base)


def test_one_object_per_project_sorted_by_code(jingzhou: Scheme) -> None:
    rows = [
        update(C, date(2025, 1, 10)),
        update(A, date(2024, 12, 31), needs_coordination=True, problems="用地"),
        update(B, date(2024, 12, 31)),
        update(A, date(2025, 1, 10), needs_coordination=True, problems="用地"),
    ]
    result = evaluate_rows(rows, as_of=date(2025, 1, 15), scheme=jingzhou)
    assert [r["code"] for r in result] == [A, B, C]
    assert all(r["as_of"] == "2025-01-15" for r in result)
    assert set(result[0]) == {"code", "as_of", "flag", "reasons"}
    # A: yellow at 2024-12-31 (needs coordination) and yellow now → escalated, seen from the file's history
    assert result[0]["flag"] == "red"
    assert [r["code"] for r in result[0]["reasons"]] == ["ESCALATED", "NEEDS_COORDINATION"]
    assert result[1] == {"code": B, "as_of": "2025-01-15", "flag": "green", "reasons": []}
    json.dumps(result, ensure_ascii=False)


def test_rows_are_ordered_by_report_date_not_input_order(jingzhou: Scheme) -> None:
    rows = [
        update(A, date(2025, 2, 28)),  # the newest, resolved
        update(A, date(2025, 1, 31), needs_coordination=True),
        update(A, date(2024, 12, 31), needs_coordination=True),
    ]
    result = evaluate_rows(rows, as_of=date(2025, 3, 5), scheme=jingzhou)
    assert result[0]["flag"] == "green"
    # as of 2025-02-10 the newest row is January's (yellow) and December's was yellow too
    result = evaluate_rows(rows, as_of=date(2025, 2, 10), scheme=jingzhou)
    assert result[0]["flag"] == "red"
    assert result[0]["reasons"][0]["code"] == "ESCALATED"
    assert result[0]["reasons"][0]["values"]["previous_month_end"] == "2025-01-31"


def test_rows_after_d_are_ignored(jingzhou: Scheme) -> None:
    rows = [
        update(A, date(2025, 2, 5), needs_coordination=True, problems="资金"),
        update(A, date(2025, 3, 31)),  # after D: ignored
        update(B, date(2025, 3, 31)),  # B has no row on or before D: omitted
    ]
    result = evaluate_rows(rows, as_of=date(2025, 2, 15), scheme=jingzhou)
    assert [r["code"] for r in result] == [A]
    assert result[0]["flag"] == "yellow"
    assert result[0]["reasons"][0]["code"] == "NEEDS_COORDINATION"


def test_same_report_date_later_input_wins(jingzhou: Scheme) -> None:
    first = update(A, date(2025, 1, 31), needs_coordination=True)
    correction = update(A, date(2025, 1, 31))
    assert evaluate_rows([first, correction], as_of=date(2025, 1, 31), scheme=jingzhou)[0]["flag"] == "green"
    assert evaluate_rows([correction, first], as_of=date(2025, 1, 31), scheme=jingzhou)[0]["flag"] == "yellow"
    # the tie is broken the same way for the previous month's end: both yellow → escalated
    assert evaluate_rows([correction, first], as_of=date(2025, 2, 3), scheme=jingzhou)[0]["flag"] == "red"
    assert evaluate_rows([first, correction], as_of=date(2025, 2, 3), scheme=jingzhou)[0]["flag"] == "green"


def test_stale_from_the_newest_row(jingzhou: Scheme) -> None:
    rows = [update(A, date(2024, 9, 30)), update(A, date(2024, 10, 31))]
    result = evaluate_rows(rows, as_of=date(2025, 1, 31), scheme=jingzhou)
    stale = result[0]["reasons"][0]
    assert (stale["code"], stale["color"]) == ("STALE", "red")
    assert stale["values"] == {"report_date": "2024-10-31", "days_since_report": 92, "as_of": "2025-01-31"}


def test_yinchuan_over_rows(yinchuan: Scheme) -> None:
    rows = [
        update(A, date(2025, 1, 31), actual_start=None, stats_included_on=None, planned_start=date(2025, 1, 31)),
        update(A, date(2025, 2, 28), actual_start=None, stats_included_on=None, planned_start=date(2025, 1, 31)),
        update(B, date(2025, 2, 28), annual_plan=Decimal(1200), ytd_completed=Decimal(0)),
    ]
    result = evaluate_rows(rows, as_of=date(2025, 3, 1), scheme=yinchuan)
    assert [(r["code"], r["flag"]) for r in result] == [(A, "red"), (B, "yellow")]
    assert result[0]["reasons"][0]["values"]["delay_month"] == 3
    assert result[1]["reasons"][0]["code"] == "BEHIND_PACE"  # gap of 16.67 points on 2025-03-01


def test_no_rows_no_output(jingzhou: Scheme) -> None:
    assert evaluate_rows([], as_of=date(2025, 1, 1), scheme=jingzhou) == []
