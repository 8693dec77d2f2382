"""Generated files: good rows mixed with bad values of every kind, in csv, xlsx and jsonl. The import
never fails, refuses each bad row with its row number, and every good row comes through — and, on
SQLite and PostgreSQL, lands in the database."""

from __future__ import annotations

import itertools
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from pipeline.db import session_scope
from pipeline.ingest.parse import ImportLimits
from pipeline.ingest.submit import receive_file
from tests.factories import ACTOR
from pipeline.ingest.template import TEMPLATE_FIELDS
from pipeline.models import RejectedRow, StatusUpdate
from pipeline.runtime import Runtime
from tests.ingest_helpers import good_cells, parse, write_csv, write_xlsx

HEADER = {f.alias: f.header for f in TEMPLATE_FIELDS}
H = HEADER.__getitem__
HUGE = "7" * 5000
HUGE_INT = "<a JSON integer of 5,000 digits>"
_serials = itertools.count(1)
_chars = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Cn", "Co", "Zl", "Zp"))
_name = st.text(_chars, min_size=1, max_size=80).map(str.strip).filter(lambda s: bool(s) and not s.startswith("="))

# (format it can be written in, header, bad value): each is refused by the template's rules.
BAD: list[tuple[str, str, Any]] = [
    ("any", H("total_investment"), "五万"), ("any", H("total_investment"), HUGE), ("any", H("total_investment"), "1e400"),
    ("any", H("total_investment"), "-5"), ("any", H("total_investment"), "NaN"), ("any", H("annual_plan"), "1,23,4"),
    ("any", H("as_of"), "2099-06-30"), ("any", H("as_of"), "2024-02-30"), ("any", H("as_of"), "三月底"),
    ("any", H("county"), "火星区"), ("any", H("nature"), "在建"), ("any", H("lists"), "不存在的清单"),
    ("any", H("code"), "2024-01"), ("any", H("needs_coordination"), "可能"), ("any", H("name"), "长" * 201),
    ("any", H("ytd_completed"), "30000"), ("any", H("actual_start"), "2024-06-01"), ("any", H("stats_included_on"), "2024-04-01"),
    ("any", H("name"), ""), ("any", H("total_investment"), "=SUM(1,2)"),
    ("text", H("name"), "甲\x00乙"), ("text", H("problems"), "问题\x00"),
    ("xlsx", H("total_investment"), True), ("xlsx", H("as_of"), 12),
    ("jsonl", H("total_investment"), True), ("jsonl", H("name"), ["甲", "乙"]), ("jsonl", H("name"), {"a": 1}),
    ("jsonl", H("name"), "\ud800"), ("jsonl", H("total_investment"), HUGE_INT), ("jsonl", H("lists"), [1, [2]]),
    ("jsonl", H("as_of"), float("inf")),
]


def _usable(kind: str, fmt: str) -> bool:
    return kind == "any" or kind == fmt or (kind == "text" and fmt in ("csv", "jsonl"))


@st.composite
def files(draw: st.DrawFn, fmt: str) -> tuple[list[dict[str, Any]], list[bool]]:
    """Rows of cells by header, and which of them are good."""
    usable = [b for b in BAD if _usable(b[0], fmt)]
    rows, good = [], []
    for _ in range(draw(st.integers(1, 8))):
        serial = next(_serials)
        if draw(st.booleans()):
            rows.append(good_cells(serial, **{H("name"): draw(_name)}))
            good.append(True)
        else:
            _, header, value = draw(st.sampled_from(usable))
            rows.append(good_cells(serial, **{header: value}))
            good.append(False)
    return rows, good


def _write(rows: list[dict[str, Any]], folder: Path, fmt: str) -> Path:
    if fmt == "csv":
        return write_csv(folder / "f.csv", rows)
    if fmt == "xlsx":
        return write_xlsx(folder / "f.xlsx", rows)
    alias_of = {f.header: f.alias for f in TEMPLATE_FIELDS}
    path = folder / "f.jsonl"
    lines = [json.dumps({alias_of[h]: v for h, v in r.items() if v not in ("", None)}, ensure_ascii=True)
             .replace(json.dumps(HUGE_INT), HUGE) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _check(parsed_rows: list[Any], errors: list[Any], rows: list[dict[str, Any]], good: list[bool], first: int) -> None:
    numbers = [first + i for i in range(len(rows))]
    assert [r.row_number for r in parsed_rows] == [n for n, ok in zip(numbers, good, strict=True) if ok]
    assert [r.code for r in parsed_rows] == [r[H("code")] for r, ok in zip(rows, good, strict=True) if ok]
    assert {e.row_number for e in errors} == {n for n, ok in zip(numbers, good, strict=True) if not ok}
    assert all(e.message and e.header in (*HEADER.values(), None) for e in errors)


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "jsonl"])
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_files_lose_no_good_row(fmt: str, data: st.DataObject) -> None:
    rows, good = data.draw(files(fmt))
    with tempfile.TemporaryDirectory() as folder:
        parsed = parse(_write(rows, Path(folder), fmt))
    assert parsed.total_rows == len(rows)
    _check(parsed.rows, parsed.errors, rows, good, 1 if fmt == "jsonl" else 2)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data())
def test_generated_files_land_their_good_rows_in_the_database(any_runtime: Runtime, fmt: str,
                                                              data: st.DataObject) -> None:
    rt = any_runtime
    rows, good = data.draw(files(fmt))
    with tempfile.TemporaryDirectory() as folder:
        path = _write(rows, Path(folder), fmt)
        with session_scope(rt.session_factory) as session:
            sub = receive_file(session, path, reference=rt.reference, max_bytes=10**7, clock=rt.clock, actor=ACTOR,
                               limits=ImportLimits())
    assert sub.file_error is None and sub.accepted == sum(good)
    with session_scope(rt.session_factory) as session:
        assert session.scalar(select(func.count()).where(StatusUpdate.batch_id == sub.batch_id)) == sum(good)
        refused = session.scalars(select(RejectedRow.row_number).where(RejectedRow.batch_id == sub.batch_id)).all()
    first = 1 if fmt == "jsonl" else 2
    assert set(refused) == {first + i for i, ok in enumerate(good) if not ok}
