"""`pipeline forecast` as SPEC §10 fixes it: JSON lines sorted by code, only the projects that get
worse by the review, on both schemes; a table without --json; a review not after D refused."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from pipeline.ingest.export import write_template
from tests.cli_helpers import clean_env, pipeline
from tests.factories import code, row

D = date(2024, 5, 31)
R = date(2024, 6, 28)  # the next review: the last working day of June 2024
NOT_STARTED = {"nature": "新开工", "actual_start": None, "stats_included_on": None,
               "cumulative_completed": Decimal(0), "ytd_completed": Decimal(0)}


def loaded(tmp_path: Path, **env: str) -> dict[str, str]:
    environment = clean_env(tmp_path / "data", PIPELINE_AS_OF=D.isoformat(), PIPELINE_NOW="2024-06-01T10:00:00+08:00",
                            **env)
    rows = [
        # Sorted by code in the output although loaded out of order.
        row(4, as_of=D, planned_start=R - timedelta(days=61), **NOT_STARTED),  # yellow now, 61 days on R: red
        row(3, as_of=D, ytd_completed=Decimal(6000)),  # green, stays green
        # Completed, 30 days after its start now (green), 58 on R: yellow (NOT_IN_STATS only).
        row(2, as_of=D, actual_start=date(2024, 5, 1), actual_completion=date(2024, 5, 20), stats_included_on=None,
            ytd_completed=Decimal(0)),
        # Month of delay 2 now, 3 on R (yinchuan: red); 32 days late now, 60 on R (jingzhou: yellow,
        # red by ESCALATED since yellow at the end of May as well).
        row(1, as_of=D, planned_start=date(2024, 4, 29), **NOT_STARTED),
    ]
    path = write_template(rows, tmp_path / "2024-05.xlsx")
    done = pipeline(environment, "import", str(path))
    assert done.returncode == 0, done.stderr
    return environment


def lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_forecast_json_lines_jingzhou(tmp_path: Path) -> None:
    env = loaded(tmp_path)
    out = pipeline(env, "forecast", "--json")
    assert out.returncode == 0, out.stderr
    found = lines(out.stdout)
    assert [(x["code"], x["as_of"], x["review"], x["flag_now"], x["flag_at_review"]) for x in found] == [
        (code(1), "2024-05-31", "2024-06-28", "yellow", "red"),
        (code(2), "2024-05-31", "2024-06-28", "green", "yellow"),
        (code(4), "2024-05-31", "2024-06-28", "yellow", "red"),
    ]
    assert list(found[0]) == ["code", "as_of", "review", "flag_now", "flag_at_review", "reasons"]
    assert [(r["code"], r["color"], r["message"]) for r in found[0]["reasons"]] == [
        ("ESCALATED", "red", "上月末（2024-05-31）与截至2024-06-28均为黄牌，连续黄牌升级为红牌"),
        ("START_OVERDUE", "yellow", "计划2024-04-29开工，截至2024-06-28已逾期60天未开工"),
    ]
    assert [r["code"] for r in found[1]["reasons"]] == ["NOT_IN_STATS"]
    # As of 2024-05-15 nothing was reported yet: nothing to forecast.
    earlier = lines(pipeline(env, "forecast", "--as-of", "2024-05-15", "--review", "2024-06-28", "--json").stdout)
    assert earlier == []


def test_forecast_json_lines_yinchuan_and_the_table(tmp_path: Path) -> None:
    env = loaded(tmp_path, PIPELINE_SCHEME="yinchuan-2025")
    found = lines(pipeline(env, "forecast", "--as-of", "2024-05-31", "--json").stdout)
    assert [(x["code"], x["flag_now"], x["flag_at_review"]) for x in found] == [
        (code(1), "yellow", "red"), (code(2), "green", "yellow"), (code(4), "yellow", "red"),
    ]
    assert found[0]["reasons"][0]["message"] == "计划2024-04-29开工，截至2024-06-28仍未开工，已进入延期第3个月（逾期60天）"
    table = pipeline(env, "forecast")
    assert table.returncode == 0, table.stderr
    assert "2024-06-28 述职时将转黄或转红的项目：3 个" in table.stdout
    assert "测试项目4" in table.stdout and "未按期开工" in table.stdout
    mine = lines(pipeline(env, "forecast", "--leader", "王建国", "--json").stdout)
    assert [x["code"] for x in mine] == [code(1), code(2), code(4)]
    unknown = pipeline(env, "forecast", "--leader", "无此人")
    assert unknown.returncode == 2 and "包保领导不存在：无此人" in unknown.stderr
    refused = pipeline(env, "forecast", "--review", "2024-05-31")
    assert refused.returncode == 2 and "述职日期 2024-05-31 应晚于截至日期 2024-05-31" in refused.stderr
