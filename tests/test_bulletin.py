"""The monthly bulletin 通报 (SPEC §10): counties ranked by the three rates and by red share, with
the change since the month before; ranks checked against the rates computed county by county."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from pipeline.bulletin import (
    MEASURES,
    Bulletin,
    CountyFigures,
    build_bulletin,
    bulletin_month,
    gather_bulletin,
    month_end_of_text,
    rank,
)
from pipeline.db import session_scope
from pipeline.ingest.record import record_batch
from pipeline.models import MonthFlag, Project
from pipeline.rates import Ratio, compute_rates
from pipeline.runtime import Runtime, set_runtime
from tests.conftest import make_runtime
from tests.factories import row
from tests.rates_oracle import subjects_as_of

D = date(2024, 3, 31)
MONTH_ENDS = (date(2024, 1, 31), date(2024, 2, 29), D)
# Nine of the eleven configured counties get projects; 荆州高新区 and 纪南文旅区 stay empty.
COUNTIES = (("沙市区", "421002"), ("荆州区", "421003"), ("公安县", "421022"), ("江陵县", "421024"),
            ("石首市", "421081"), ("洪湖市", "421083"), ("松滋市", "421087"), ("监利市", "421088"),
            ("荆州开发区", "421000"))
PROJECTS = 54


# --- pure ranking --------------------------------------------------------------------------------


def test_equal_values_share_a_rank_and_an_empty_denominator_ranks_last() -> None:
    values = {"甲": Ratio(1, 2), "乙": Ratio(2, 4), "丙": Ratio(3, 4), "丁": Ratio(0, 0), "戊": Ratio(0, 3)}
    assert rank(values, higher_is_better=True) == {"丙": 1, "甲": 2, "乙": 2, "戊": 4, "丁": 5}
    assert rank(values, higher_is_better=False) == {"戊": 1, "甲": 2, "乙": 2, "丙": 4, "丁": 5}
    assert rank({"甲": Ratio(0, 0), "乙": Ratio(0, 0)}, higher_is_better=True) == {"甲": 1, "乙": 1}
    assert rank({}, higher_is_better=True) == {}


def test_a_bulletin_puts_each_rank_beside_last_months() -> None:
    now = {"甲": CountyFigures(4, start_rate=Ratio(3, 4), red_share=Ratio(1, 4)),
           "乙": CountyFigures(2, start_rate=Ratio(1, 2), red_share=Ratio(0, 2)),
           "丙": CountyFigures(2, start_rate=Ratio(2, 4), red_share=Ratio(1, 4))}
    before = {"甲": CountyFigures(4, start_rate=Ratio(1, 4), red_share=Ratio(2, 4)),
              "乙": CountyFigures(2, start_rate=Ratio(1, 1), red_share=Ratio(0, 2))}
    b = build_bulletin(D, date(2024, 2, 29), now, before, order=("乙", "甲", "丙", "丁"))
    assert [line.county for line in b.lines] == ["乙", "甲", "丙", "丁"]  # every configured county
    start = {line.county: line["start_rate"] for line in b.lines}
    assert (start["甲"].rank, start["甲"].previous_rank, start["甲"].rank_change) == (1, 2, 1)
    assert start["甲"].change == Fraction(1, 2) and start["甲"].change_display() == "+50.0"
    assert (start["乙"].rank, start["丙"].rank) == (2, 2)  # 1/2 and 2/4 tie
    assert start["乙"].change_display() == "-50.0" and start["乙"].rank_change_display() == "↓1"
    assert start["丙"].previous == Ratio(0, 0) and start["丙"].change is None and start["丙"].change_display() == "—"
    assert start["丙"].rank_change is None and start["丙"].rank_change_display() == "—"  # no move from nowhere
    assert (start["丙"].previous_rank, start["丁"].rank, start["丁"].value.display()) == (3, 4, "—")
    red = {line.county: line["red_share"] for line in b.lines}
    assert (red["乙"].rank, red["甲"].rank, red["丙"].rank, red["丁"].rank) == (1, 2, 2, 4)  # fewest red first
    assert red["乙"].rank_change_display() == "持平"
    assert [line.county for line in b.ranking("red_share")] == ["乙", "甲", "丙", "丁"]
    assert [line.county for line in b.ranking("start_rate")] == ["甲", "乙", "丙", "丁"]
    first = b.to_json()[1]
    assert first["county"] == "甲" and first["month"] == "2024-03" and first["previous"] == "2024-02-29"
    assert first["start_rate"] == {"value": [3, 4], "rank": 1, "previous_value": [1, 4], "previous_rank": 2,
                                   "change": [1, 2], "rank_change": 1}


@pytest.mark.parametrize("text_, expected", [("2024-02", date(2024, 2, 29)), ("2023-12", date(2023, 12, 31)),
                                             (" 2024-4 ", date(2024, 4, 30))])
def test_a_month_is_read_as_its_last_day(text_: str, expected: date) -> None:
    assert month_end_of_text(text_) == expected


@pytest.mark.parametrize("bad", ["2024-13", "2024-00", "2024/03", "2024-03-31", "", "三月", "9999-12", "0001-01"])
def test_a_bad_month_is_refused_in_chinese(bad: str) -> None:
    with pytest.raises(ValueError, match="月份格式应为 YYYY-MM"):
        month_end_of_text(bad)


# --- a fixed reserve over two month ends ---------------------------------------------------------


def report(n: int, month: date) -> Any:
    """Project n's report at a month end: six kinds of project, spread over nine counties."""
    county, region = COUNTIES[(n * 7) % len(COUNTIES)]
    base = {"county": county, "code": f"2024-{region}-44-01-{n:06d}", "as_of": month,
            "ytd_completed": Decimal(1000 * month.month)}
    new_start = {"nature": "新开工", "actual_start": None, "stats_included_on": None,
                 "cumulative_completed": Decimal(0), "ytd_completed": Decimal(0)}
    kind = n % 6
    if kind == 0:  # starts in February, enters the statistics in March
        started = month >= date(2024, 2, 29)
        return row(n, **{**base, **new_start, "planned_start": date(2024, 1, 15),
                         "actual_start": date(2024, 2, 10) if started else None,
                         "stats_included_on": date(2024, 3, 20) if month == D else None})
    if kind == 1:  # due in February, starts in March
        return row(n, **{**base, **new_start, "planned_start": date(2024, 2, 20),
                         "actual_start": date(2024, 3, 10) if month == D else None})
    if kind == 2:  # never starts: red once 60 days late
        return row(n, **{**base, **new_start, "planned_start": date(2023, 12, 1)})
    if kind == 3:  # due to complete in March; every other one does
        done = month == D and n % 12 == 3
        return row(n, **base, planned_completion=date(2024, 3, 15), actual_completion=date(2024, 3, 12) if done else None)
    if kind == 5 and n % 4 == 1:  # behind pace: red
        return row(n, **{**base, "ytd_completed": Decimal(100)})
    return row(n, **base)


def load_reserve(rt: Runtime) -> None:
    """Record and apply the month-end reports of January, February and March, one batch a month."""
    for month in MONTH_ENDS:
        rows = [report(n, month) for n in range(1, PROJECTS + 1)]
        with session_scope(rt.session_factory) as s:
            batch = record_batch(s, source="file", filename=None, content_sha256=None, total_rows=len(rows),
                                 rows=rows, errors=[], clock=rt.clock).batch_id
        rt.apply_delivered(batch)


@pytest.fixture(params=["sqlite", "postgres"])
def reserve(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    """The reserve of PROJECTS projects reported at the ends of January, February and March 2024,
    judged as of March's end with every month closed."""
    settings: dict[str, Any] = {"as_of": D, "reflag_chunk_size": 100}
    if request.param == "postgres":
        settings["database_url"] = request.getfixturevalue("pg_url")
    rt = make_runtime(tmp_path, **settings)
    load_reserve(rt)
    rt.reflag_reserve()
    yield rt
    rt.dispose()
    set_runtime(None)


def independent_rank(values: dict[str, Ratio], higher_is_better: bool) -> dict[str, int]:
    """1 + the counties strictly better; empty denominators after every known value."""
    known = {c: v.value for c, v in values.items() if v.denominator}
    out = {}
    for county, value in known.items():
        better = [v for v in known.values() if (v > value if higher_is_better else v < value)]
        out[county] = 1 + len(better)
    return {**out, **{c: len(known) + 1 for c in values if c not in known}}


def expected_figures(rt: Runtime, month_end: date) -> dict[str, dict[str, Ratio]]:
    """Each county's rates computed on its own projects alone, and its red share counted from the month flags."""
    with session_scope(rt.session_factory) as s:
        subjects = subjects_as_of(s, month_end)
        flags = s.execute(select(Project.county, MonthFlag.computed_color).join(
            MonthFlag, MonthFlag.project_id == Project.id).where(MonthFlag.month_end == month_end)).all()
    out: dict[str, dict[str, Ratio]] = {}
    for county in rt.reference.order_for("county"):
        mine = [x for x in subjects if x.county == county]
        (city,) = compute_rates(mine, as_of=month_end, by="city")
        colours = [c for k, c in flags if k == county]
        out[county] = {"start_rate": city.start_rate, "completion_rate": city.completion_rate,
                       "stats_rate": city.stats_rate, "red_share": Ratio(colours.count("red"), len(colours))}
    return out


def gather(rt: Runtime, month_end: date) -> Bulletin:
    with session_scope(rt.session_factory) as s:
        return gather_bulletin(s, month_end, scheme=rt.scheme, compiled=rt.compiled,
                               order=rt.reference.order_for("county"), chunk_size=rt.settings.reflag_chunk_size)


def check(b: Bulletin, now: dict[str, dict[str, Ratio]], before: dict[str, dict[str, Ratio]]) -> None:
    assert [line.county for line in b.lines] == list(now)
    for measure in MEASURES:
        higher = measure != "red_share"
        ranks = independent_rank({c: f[measure] for c, f in now.items()}, higher)
        previous_ranks = independent_rank({c: f[measure] for c, f in before.items()}, higher)
        for line in b.lines:
            s = line[measure]
            assert (s.value, s.rank) == (now[line.county][measure], ranks[line.county]), (measure, line.county)
            assert (s.previous, s.previous_rank) == (before[line.county][measure], previous_ranks[line.county])


def test_the_ranking_matches_the_rates_of_each_county_at_two_month_ends(reserve: Runtime) -> None:
    figures = {m: expected_figures(reserve, m) for m in MONTH_ENDS}
    february, march = gather(reserve, MONTH_ENDS[1]), gather(reserve, D)
    check(february, figures[MONTH_ENDS[1]], figures[MONTH_ENDS[0]])
    check(march, figures[D], figures[MONTH_ENDS[1]])
    # The reserve exercises what the ranking must handle: ties, empty counties, moves, red projects.
    lines = {line.county: line for line in march.lines}
    assert lines["纪南文旅区"]["start_rate"].value == Ratio(0, 0)
    known = sum(1 for line in march.lines if line["start_rate"].value.denominator)
    assert lines["纪南文旅区"]["start_rate"].rank == lines["荆州高新区"]["start_rate"].rank == known + 1
    assert any(line["red_share"].value.numerator for line in march.lines)
    for measure in MEASURES:
        ranks = [line[measure].rank for line in march.lines if line[measure].value.denominator]
        assert len(set(ranks)) < len(ranks), measure  # at least one tie
    assert any(line["start_rate"].rank_change for line in march.lines)  # some move
    assert march.lines[0].projects == sum(1 for n in range(1, PROJECTS + 1) if (n * 7) % len(COUNTIES) == 0)


def test_a_month_not_closed_is_evaluated_as_of_its_end_with_the_same_result(reserve: Runtime) -> None:
    closed = gather(reserve, D)
    with session_scope(reserve.session_factory) as s:
        s.execute(text("DELETE FROM month_closes"))
    assert gather(reserve, D) == closed


def test_the_month_defaults_to_the_last_month_end_and_an_open_month_is_refused() -> None:
    assert bulletin_month(None, evaluated=date(2024, 12, 31)) == date(2024, 12, 31)
    assert bulletin_month("", evaluated=date(2024, 12, 30)) == date(2024, 11, 30)
    assert bulletin_month("2024-11", evaluated=date(2024, 11, 30)) == date(2024, 11, 30)
    with pytest.raises(ValueError, match="2024-12 月尚未结束（评估日期 2024-12-30）"):
        bulletin_month("2024-12", evaluated=date(2024, 12, 30))
