"""`pipeline bulletin` as a user runs it: JSON lines that agree with `pipeline rates`, a table that
fits 80 columns, an xlsx whose numbers are numbers, and Chinese refusals of a bad or open month."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from rich.cells import cell_len

from pipeline.ingest.export import write_template
from pipeline.reference import load_reference
from pipeline.settings import REPO_ROOT
from tests.cli_helpers import clean_env, pipeline
from tests.factories import row
from tests.test_cli_screen import ANSI, modules_after

FEB, MAR = date(2024, 2, 29), date(2024, 3, 31)
COUNTIES = [c.name for c in load_reference(REPO_ROOT / "config").counties]
MEASURE_KEYS = ("value", "rank", "previous_value", "previous_rank", "change", "rank_change")


def reports(month: date) -> list:
    """Four projects in three counties: 荆州区 starts one of its two in March, 监利市 never starts
    (red), 沙市区 has started all along."""
    new = {"nature": "新开工", "actual_start": None, "stats_included_on": None, "cumulative_completed": Decimal(0),
           "ytd_completed": Decimal(0), "as_of": month}
    on_pace = {"ytd_completed": Decimal(1000 * month.month), "cumulative_completed": Decimal(1000 * month.month)}
    return [
        row(1, **{**new, **on_pace, "planned_start": date(2024, 2, 1), "actual_start": date(2024, 2, 5)}),
        row(2, **{**new, "planned_start": date(2024, 2, 10),
                  **({"actual_start": date(2024, 3, 2), **on_pace} if month == MAR else {})}),
        row(3, **{**new, "planned_start": date(2023, 11, 1), "county": "监利市",
                  "code": "2024-421088-44-01-000003"}),
        row(4, as_of=month, county="沙市区", code="2024-421002-44-01-000004", ytd_completed=Decimal(1000 * month.month)),
    ]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("bulletin-cli")
    env = clean_env(folder / "data", PIPELINE_AS_OF=MAR.isoformat())
    for month in (FEB, MAR):
        done = pipeline(env, "import", str(write_template(reports(month), folder / f"{month}.xlsx")))
        assert done.returncode == 0, done.stderr
    return env


def test_json_lines_one_per_configured_county_agree_with_the_rates(env: dict[str, str]) -> None:
    done = pipeline(env, "bulletin", "--month", "2024-03", "--json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    assert [x["county"] for x in lines] == COUNTIES
    for x in lines:
        assert (x["month"], x["as_of"], x["previous"]) == ("2024-03", "2024-03-31", "2024-02-29")
        for measure in ("start_rate", "completion_rate", "stats_rate", "red_share"):
            assert tuple(x[measure]) == MEASURE_KEYS
    rates = {}
    for as_of in ("2024-03-31", "2024-02-29"):
        out = pipeline(env, "rates", "--as-of", as_of, "--by", "county", "--json").stdout.splitlines()
        rates[as_of] = {g["group"]: g for g in map(json.loads, out)}
    by_county = {x["county"]: x for x in lines}
    for county, x in by_county.items():
        for measure in ("start_rate", "completion_rate", "stats_rate"):
            assert x[measure]["value"] == rates["2024-03-31"].get(county, {}).get(measure, [0, 0])
            assert x[measure]["previous_value"] == rates["2024-02-29"].get(county, {}).get(measure, [0, 0])
    jz, jl, ss = by_county["荆州区"], by_county["监利市"], by_county["沙市区"]
    assert jz["start_rate"] == {"value": [2, 2], "rank": 1, "previous_value": [1, 2], "previous_rank": 1,
                                "change": [1, 2], "rank_change": 0}  # 监利市's start was due in 2023
    assert ss["start_rate"]["value"] == [0, 0] and ss["start_rate"]["rank"] == 2  # empty: after 荆州区
    assert jl["red_share"]["value"] == [1, 1] and jl["red_share"]["rank"] == 3  # 荆州区 and 沙市区 have none red
    assert (jz["red_share"]["rank"], ss["red_share"]["rank"], by_county["公安县"]["red_share"]["rank"]) == (1, 1, 4)


def test_the_table_fits_80_columns(env: dict[str, str]) -> None:
    done = pipeline({**env, "COLUMNS": "80"}, "bulletin", "--month", "2024-03")
    assert done.returncode == 0, done.stderr
    lines = [ANSI.sub("", line) for line in done.stdout.splitlines()]
    assert max(cell_len(line) for line in lines) <= 80, done.stdout
    assert "…" not in done.stdout
    for heading in ("开工率排名", "竣工率排名", "入统率排名", "红牌占比排名", "2024年3月"):
        assert heading in done.stdout


def test_the_xlsx_opens_with_numbers_as_numbers(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "通报.xlsx"
    done = pipeline(env, "bulletin", "--month", "2024-03", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"已导出：{out}" in done.stdout
    book = openpyxl.load_workbook(out)
    assert book.sheetnames == ["开工率排名", "竣工率排名", "入统率排名", "红牌占比排名"]
    sheet = book["开工率排名"]
    assert "2024年3月" in sheet["A1"].value and "截至2024-03-31" in sheet["A1"].value
    header = [c.value for c in sheet[2]]
    assert header[:5] == ["名次", "县市区", "开工率", "已开工", "应开工"]
    assert sheet.freeze_panes == "A3" and sheet.auto_filter.ref == f"A2:I{len(COUNTIES) + 2}"
    assert sheet.column_dimensions["B"].width >= 12
    first = [c for c in sheet[3]]
    assert [first[0].value, first[1].value, first[2].value, first[3].value, first[4].value] == [1, "荆州区", 1.0, 2, 2]
    assert first[2].number_format == "0.0%" and first[7].value == 0.5 and first[7].number_format == "0.0%"
    assert first[8].value == 50 and first[8].number_format == "+0.0;-0.0;0.0"  # percentage points, a number
    empty = [c.value for c in sheet[4]]
    assert empty[1] == "沙市区" and empty[0] == 2 and empty[2] is None  # empty denominator: blank, ranked after
    red = book["红牌占比排名"]
    last = [c.value for c in red[len(COUNTIES) + 2]]
    assert last[0] == 4 and last[2] is None  # the eight counties without a project share the last rank


def test_a_bad_or_unfinished_month_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    bad = pipeline(env, "bulletin", "--month", "2024-3-31")
    assert bad.returncode == 2 and "月份格式应为 YYYY-MM" in bad.stderr
    future = pipeline(env, "bulletin", "--month", "2024-04")
    assert future.returncode == 2 and "尚未结束" in future.stderr
    csv = pipeline(env, "bulletin", "--month", "2024-03", "--out", str(tmp_path / "x.csv"))
    assert csv.returncode == 2 and ".xlsx" in csv.stderr


def test_help_loads_no_heavy_module() -> None:
    assert modules_after("bulletin", "--help") == []
