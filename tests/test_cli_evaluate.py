"""`pipeline evaluate` as SPEC §7 fixes it: JSON lines sorted by code, bad rows on stderr, exit 0/2."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

from pipeline.ingest.export import write_template
from tests.cli_helpers import clean_env, pipeline
from tests.factories import code, row

D = "2024-12-31"


def reserve_file(folder: Path, suffix: str = ".csv") -> Path:
    rows = [
        # Never started, planned 2024-06-01: 213 days overdue → red START_OVERDUE.
        row(3, nature="新开工", planned_start=date(2024, 6, 1), planned_completion=date(2026, 6, 1),
            actual_start=None, stats_included_on=None, cumulative_completed=Decimal(0), ytd_completed=Decimal(0),
            as_of=date(2024, 12, 31)),
        # On pace, reporting: green.
        row(1, as_of=date(2024, 12, 31), ytd_completed=Decimal("12000")),
        # Yellow at the end of November and now (pace 0.7): ESCALATED red.
        row(2, as_of=date(2024, 11, 30), ytd_completed=Decimal("7700")),
        row(2, as_of=date(2024, 12, 31), ytd_completed=Decimal("8400")),
    ]
    path = write_template(rows, folder / f"reserve{suffix}")
    if suffix == ".csv":
        with path.open("a", encoding="utf-8") as fh:
            fh.write(f"{code(9)},坏行,火星区,,,续建,100,,,,,,,,,,,,,{D}\n")
    return path


def lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_evaluate_prints_one_sorted_json_line_per_project(tmp_path: Path) -> None:
    path = reserve_file(tmp_path)
    env = clean_env(tmp_path / "data")
    done = pipeline(env, "evaluate", "--as-of", D, str(path))
    assert done.returncode == 0, done.stderr
    results = lines(done.stdout)
    assert [r["code"] for r in results] == [code(1), code(2), code(3)]
    for r in results:
        assert list(r) == ["code", "as_of", "flag", "reasons"] and r["as_of"] == D
        for reason in r["reasons"]:
            assert list(reason) == ["code", "color", "message", "values"]
    by_code = {r["code"]: r for r in results}
    assert by_code[code(1)]["flag"] == "green" and by_code[code(1)]["reasons"] == []
    assert by_code[code(2)]["flag"] == "red"
    assert {x["code"] for x in by_code[code(2)]["reasons"]} == {"BEHIND_PACE", "ESCALATED"}
    start = by_code[code(3)]["reasons"][0]
    assert (start["code"], start["color"], start["values"]["overdue_days"]) == ("START_OVERDUE", "red", 213)
    assert "213" in start["message"]
    # The bad row goes to stderr with its row number; no database was created.
    assert "第6行" in done.stderr and "县市区" in done.stderr
    assert not (tmp_path / "data" / "pipeline.sqlite3").exists()


def test_evaluate_under_the_yinchuan_scheme_and_a_scheme_path(tmp_path: Path) -> None:
    path = reserve_file(tmp_path, ".jsonl")
    env = clean_env(tmp_path / "data")
    by_name = pipeline(env, "evaluate", "--as-of", D, "--scheme", "yinchuan-2025", str(path))
    scheme_file = Path(__file__).resolve().parent.parent / "config" / "schemes" / "yinchuan-2025.yaml"
    by_path = pipeline(env, "evaluate", "--as-of", D, "--scheme", str(scheme_file), str(path))
    assert by_name.returncode == by_path.returncode == 0
    assert by_name.stdout == by_path.stdout
    flags = {r["code"]: r for r in lines(by_name.stdout)}
    # 2024-06 planned start, December is its 7th month of delay: red; no STALE/ESCALATED rules here.
    assert flags[code(3)]["reasons"][0]["values"]["delay_month"] == 7
    assert flags[code(3)]["flag"] == "red"
    assert all(x["code"] in {"START_OVERDUE", "BEHIND_PACE", "NOT_IN_STATS"} for r in flags.values() for x in r["reasons"])


def test_evaluate_exits_2_when_nothing_could_be_evaluated(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("项目代码,项目名称\nx,y\n", encoding="utf-8")
    done = pipeline(clean_env(tmp_path / "data"), "evaluate", "--as-of", D, str(bad))
    assert done.returncode == 2
    assert done.stdout == ""
    assert "表头" in done.stderr or "缺少" in done.stderr


def test_evaluate_rows_after_the_date_are_ignored(tmp_path: Path) -> None:
    path = reserve_file(tmp_path)
    done = pipeline(clean_env(tmp_path / "data"), "evaluate", "--as-of", "2024-12-15", str(path))
    codes = [r["code"] for r in lines(done.stdout)]
    assert codes == [code(2)]  # only project 2 has a row on or before 2024-12-15


def test_evaluate_unknown_scheme_is_refused_clearly(tmp_path: Path) -> None:
    path = reserve_file(tmp_path)
    done = pipeline(clean_env(tmp_path / "data"), "evaluate", "--as-of", D, "--scheme", "wuhan-2030", str(path))
    assert done.returncode == 2
    assert "wuhan-2030" in done.stderr and "jingzhou-2024" in done.stderr
