"""The reserve as of a past date (SPEC §9): `flags --as-of D --json` from the stored updates equals
`pipeline evaluate --as-of D` on the same files, at several dates and under both schemes; `rates
--as-of D` counts each project with its newest row on or before D, as the files say."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date
from pathlib import Path

import pytest

from pipeline.demo import generate_demo
from pipeline.ingest.export import write_template
from pipeline.ingest.template import UpdateRow
from pipeline.rates import RateSubject, compute_rates
from pipeline.reference import load_reference
from tests.cli_helpers import clean_env, pipeline

CONFIG = Path(__file__).resolve().parents[1] / "config"
PROJECTS = 150  # a slice of the demo reserve: every scenario it has, at a test's speed
DATES = ("2024-01-31", "2024-02-15", "2024-03-31", "2024-06-28", "2024-09-01", "2024-12-31")


def backlog(folder: Path) -> list[Path]:
    """Twelve monthly template files of the first PROJECTS demo projects."""
    return [write_template(rows, folder / f"{rows[0].as_of:%Y-%m}.csv") for rows in backlog_rows()]


def backlog_rows() -> list[list[UpdateRow]]:
    """The first PROJECTS demo projects' twelve monthly reports."""
    reserve = generate_demo(seed=2024, reference=load_reference(CONFIG))
    codes = sorted({r.code for r in reserve.reports[-1]})[:PROJECTS]
    kept = set(codes)
    return [[r for r in report if r.code in kept] for report in reserve.reports]


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def rates_from_files(rows: list[UpdateRow], day: date, by: str) -> list[dict]:
    """The rates of the files' rows: each project's newest row on or before D, its groups as given."""
    newest: dict[str, UpdateRow] = {}
    for r in sorted((r for r in rows if r.as_of <= day), key=lambda r: r.as_of):
        newest[r.code] = r
    subjects = [RateSubject(facts=r.facts(), county=r.county or "", lists=tuple(sorted(r.lists)), leader=r.leader,
                            industry=r.industry) for r in newest.values()]
    return sorted((g.to_json() for g in compute_rates(subjects, as_of=day, by=by)), key=lambda g: g["group"])


@pytest.mark.parametrize("scheme", ["jingzhou-2024", "yinchuan-2025"])
def test_flags_as_of_equal_evaluate_on_the_same_files(tmp_path: Path, scheme: str) -> None:
    files = backlog(tmp_path)
    env = clean_env(tmp_path / "data", PIPELINE_AS_OF="2024-12-31", PIPELINE_SCHEME=scheme)
    assert pipeline(env, "init").returncode == 0
    loaded = pipeline(env, "import", *map(str, files))
    assert loaded.returncode == 0, loaded.stderr
    if scheme == "jingzhou-2024":  # months closed by the nightly run: ESCALATED reads the month flags
        closed = pipeline(env, "reflag")
        assert closed.returncode == 0, closed.stderr
    seen_colours: set[str] = set()
    for day in DATES:
        stored = pipeline(env, "flags", "--as-of", day, "--json")
        assert stored.returncode == 0, stored.stderr
        from_files = pipeline(env, "evaluate", "--as-of", day, "--scheme", scheme, *map(str, files))
        assert from_files.returncode == 0, from_files.stderr
        got, want = json_lines(stored.stdout), json_lines(from_files.stdout)
        assert len(want) == PROJECTS
        assert got == want, day
        assert all(list(line) == ["code", "as_of", "flag", "reasons"] and line["as_of"] == day for line in got)
        seen_colours |= {line["flag"] for line in got}
    assert seen_colours == {"red", "yellow", "green"}
    if scheme == "jingzhou-2024":  # the history matters: ESCALATED fires somewhere, from the month before
        late = json_lines(pipeline(env, "flags", "--as-of", "2024-12-31", "--json").stdout)
        assert any(x["code"] == "ESCALATED" for line in late for x in line["reasons"])


def test_flags_as_of_before_any_report_is_empty_and_refuses_table_filters(tmp_path: Path) -> None:
    files = backlog(tmp_path)
    env = clean_env(tmp_path / "data", PIPELINE_AS_OF="2024-12-31")
    assert pipeline(env, "import", str(files[0])).returncode == 0
    before = pipeline(env, "flags", "--as-of", "2023-12-31", "--json")
    assert before.returncode == 0 and before.stdout == ""
    mixed = pipeline(env, "flags", "--as-of", "2024-01-31", "--color", "red")
    assert mixed.returncode == 2 and "--as-of" in mixed.stderr
    bad = pipeline(env, "flags", "--as-of", "2024-13-01", "--json")
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr


def test_rates_as_of_count_the_newest_row_on_or_before_the_date(tmp_path: Path) -> None:
    files = backlog(tmp_path)
    env = clean_env(tmp_path / "data", PIPELINE_AS_OF="2024-12-31")
    assert pipeline(env, "import", *map(str, files)).returncode == 0
    rows = [r for report in backlog_rows() for r in report]
    per_code: dict[str, int] = defaultdict(int)
    for r in rows:
        per_code[r.code] += 1
    assert len(per_code) == PROJECTS
    for day in ("2024-03-31", "2024-06-28", "2024-12-31"):
        for by in ("city", "county"):
            done = pipeline(env, "rates", "--as-of", day, "--by", by, "--json")
            assert done.returncode == 0, done.stderr
            got = sorted(json_lines(done.stdout), key=lambda g: g["group"])
            assert got == rates_from_files(rows, date.fromisoformat(day), by), (day, by)
