"""Bulk reads and staging on PostgreSQL. A large result read a piece at a time (the pieces parsed
while the rest of the rows are coming) makes exactly the frame one parse of the whole would. A
staging table is made once per connection and is empty at every use."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import polars as pl
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from pipeline import bulk
from pipeline.db import make_engine

ROWS = 3_000
SQL = """SELECT g, 'line ' || g || E'\\n"quoted", 逗号,' || repeat('长', g % 5), g % 3 = 0,
                CASE WHEN g % 7 = 0 THEN NULL ELSE (g * 1.25)::numeric(14, 2) END,
                DATE '2024-01-01' + g
         FROM generate_series(1, :rows) AS g ORDER BY g"""
SCHEMA = {"n": pl.Int64, "text": pl.Utf8, "flag": pl.Boolean, "money": pl.Decimal(14, 2), "day": pl.Date}


def expected(rows: int) -> pl.DataFrame:
    return pl.DataFrame({
        "n": list(range(1, rows + 1)),
        "text": [f'line {g}\n"quoted", 逗号,' + "长" * (g % 5) for g in range(1, rows + 1)],
        "flag": [g % 3 == 0 for g in range(1, rows + 1)],
        "money": [None if g % 7 == 0 else Decimal(g) * Decimal("1.25") for g in range(1, rows + 1)],
        "day": [date(2024, 1, 1) + timedelta(days=g) for g in range(1, rows + 1)],
    }, schema=SCHEMA)


@pytest.fixture
def session(pg_url: str):  # type: ignore[no-untyped-def]
    engine = make_engine(pg_url)
    with Session(engine) as s:
        yield s
    engine.dispose()


def test_a_result_read_in_many_pieces_is_the_whole_result(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[int] = []
    parse = bulk._parse_csv

    def counting(source, names, schema):  # type: ignore[no-untyped-def]
        frame = parse(source, names, schema)
        parsed.append(frame.height)
        return frame

    monkeypatch.setattr(bulk, "_parse_csv", counting)
    monkeypatch.setattr(bulk, "PIECE_BYTES", 4_096)
    frame = bulk.read_frame(session, SQL, {"rows": ROWS}, SCHEMA)
    assert len(parsed) > 10 and sum(parsed) == ROWS  # many pieces, every row in one of them
    assert frame.equals(expected(ROWS))
    assert frame.schema == pl.Schema(SCHEMA)


def test_an_empty_result_is_an_empty_frame_of_the_schema(session: Session) -> None:
    frame = bulk.read_frame(session, SQL, {"rows": 0}, SCHEMA)
    assert frame.height == 0 and frame.schema == pl.Schema(SCHEMA)


def test_a_bad_value_in_a_piece_parsed_aside_is_raised(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "PIECE_BYTES", 4_096)
    bad = SQL.replace("SELECT g,", "SELECT CASE WHEN g = 100 THEN 'x' ELSE g::text END,")  # early: not the last piece
    with pytest.raises(pl.exceptions.ComputeError):
        bulk.read_frame(session, bad, {"rows": ROWS}, SCHEMA)


def test_a_staging_table_is_made_once_per_connection_and_empty_at_each_use(session: Session) -> None:
    def stage(values: list[int]) -> tuple[int, list[int]]:
        bulk.temp_table(session, "tmp_test_stage", "n INTEGER")
        session.execute(text("INSERT INTO tmp_test_stage SELECT unnest(CAST(:v AS integer[]))"), {"v": values})
        oid = session.execute(text("SELECT 'tmp_test_stage'::regclass::oid")).scalar_one()
        return oid, session.scalars(text("SELECT n FROM tmp_test_stage ORDER BY n")).all()

    first, rows = stage([1, 2])
    session.commit()
    again, rows_again = stage([3])
    session.rollback()
    after_rollback, rows_after = stage([4])
    session.commit()
    assert (rows, rows_again, rows_after) == ([1, 2], [3], [4])  # nothing left from an earlier use
    assert first == again == after_rollback  # the same table: no catalogue rows written per transaction


def test_a_staging_table_has_one_definition(session: Session) -> None:
    bulk.temp_table(session, "tmp_test_defined", "n INTEGER")
    with pytest.raises(ValueError, match="tmp_test_defined"):
        bulk.temp_table(session, "tmp_test_defined", "n INTEGER, m INTEGER")
