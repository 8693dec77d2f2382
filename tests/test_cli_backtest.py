"""`pipeline backtest` as SPEC §10 fixes it: one JSON line per month whose counts are those of
`pipeline evaluate` on the same files as of that month end, for both schemes; --projects names the
projects that change with both flags and reasons; a faulty scheme file is refused with the message
it gets at start-up; nothing is written."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from pipeline.ingest.export import write_template
from tests.cli_helpers import clean_env, pipeline
from tests.test_data_path import MONTHS, backlog

ENV = {"PIPELINE_AS_OF": "2024-12-31", "PIPELINE_NOW": "2024-12-31T10:00:00+08:00"}


def lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def loaded(tmp_path: Path) -> tuple[dict[str, str], list[Path]]:
    env = clean_env(tmp_path / "data", **ENV)
    files = [write_template(rows, tmp_path / f"{month:%Y-%m}.xlsx") for month, rows in zip(MONTHS, backlog(30))]
    done = pipeline(env, "import", *map(str, files))
    assert done.returncode == 0, done.stderr
    return env, files


def test_backtest_counts_match_evaluate_each_month(tmp_path: Path) -> None:
    env, files = loaded(tmp_path)
    flags_before = pipeline(env, "flags", "--json").stdout
    out = pipeline(env, "backtest", "--scheme", "yinchuan-2025", "--from", "2024-07", "--to", "2024-12", "--json",
                   "--projects")
    assert out.returncode == 0, out.stderr
    months = lines(out.stdout)
    assert [(m["month"], m["as_of"]) for m in months] == [(f"{d:%Y-%m}", d.isoformat()) for d in MONTHS]
    for m in months:
        now, then = ({r["code"]: r for r in lines(pipeline(env, "evaluate", "--as-of", m["as_of"], "--scheme", name,
                                                           *map(str, files)).stdout)}
                     for name in ("jingzhou-2024", "yinchuan-2025"))
        zero = {"red": 0, "yellow": 0, "green": 0}
        assert m["current"] == zero | Counter(r["flag"] for r in now.values())
        assert m["candidate"] == zero | Counter(r["flag"] for r in then.values())
        differ = sorted(c for c in now if now[c]["flag"] != then[c]["flag"])
        assert m["changed"] == len(differ) and [p["code"] for p in m["projects"]] == differ
        for p in m["projects"]:
            assert p["current"] == {"flag": now[p["code"]]["flag"], "reasons": now[p["code"]]["reasons"]}
            assert p["candidate"] == {"flag": then[p["code"]]["flag"], "reasons": then[p["code"]]["reasons"]}
    assert sum(m["changed"] for m in months) > 0
    assert pipeline(env, "flags", "--json").stdout == flags_before  # nothing written

    # The default range: the twelve months to the evaluation date's month end; without --projects
    # no project list; the scheme in force against itself changes nothing.
    same = lines(pipeline(env, "backtest", "--scheme", "jingzhou-2024", "--json").stdout)
    assert [m["month"] for m in same] == [f"2024-{n:02d}" for n in range(1, 13)]
    assert [m["changed"] for m in same] == [0] * 12 and all("projects" not in m for m in same)
    assert [m["current"] for m in same[6:]] == [m["current"] for m in months]

    table = pipeline(env, "backtest", "--scheme", "yinchuan-2025", "--from", "2024-11", "--to", "2024-12", "--projects")
    assert table.returncode == 0, table.stderr
    assert "2024-11" in table.stdout and "现行：" in table.stdout and "试算：" in table.stdout
    backwards = pipeline(env, "backtest", "--scheme", "yinchuan-2025", "--from", "2024-12", "--to", "2024-11")
    assert backwards.returncode == 2 and "起始月份 2024-12 晚于截止月份 2024-11" in backwards.stderr
    month = pipeline(env, "backtest", "--scheme", "yinchuan-2025", "--to", "2024-13")
    assert month.returncode == 2 and "--to 的月份格式应为 YYYY-MM：2024-13" in month.stderr


def test_a_faulty_scheme_is_refused_as_at_start_up(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "data", **ENV)
    bad = tmp_path / "bad.yaml"
    shipped = (Path(__file__).resolve().parents[1] / "config" / "schemes" / "jingzhou-2024.yaml").read_text("utf-8")
    bad.write_text(shipped.replace("red: {above: 60}\n    message: \"计划", "red: {above: 50}\n    message: \"计划", 1),
                   encoding="utf-8")
    refused = pipeline(env, "backtest", "--scheme", str(bad), "--json")
    assert refused.returncode == 2 and refused.stdout == ""
    message = refused.stderr.split("错误：", 1)[1].strip()
    assert "START_OVERDUE" in message and "重叠" in message
    at_start_up = pipeline({**env, "PIPELINE_SCHEME": str(bad)}, "flags")
    assert at_start_up.returncode == 3 and " ".join(message.split()) in " ".join(at_start_up.stderr.split())
    missing = pipeline(env, "backtest", "--scheme", "no-such-scheme")
    assert missing.returncode == 2 and "找不到方案「no-such-scheme」" in missing.stderr
