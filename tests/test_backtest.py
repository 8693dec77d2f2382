"""The backtest (方案试算, SPEC §10) against an oracle: at every month end, each scheme's counts and
the projects that change equal what `pipeline evaluate` (``evaluate_rows``) says on the same rows;
the scheme in force against itself changes nothing; nothing is written."""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from pipeline.backtest import backtest, month_ends
from pipeline.db import session_scope
from pipeline.rules import evaluate_rows, load_scheme
from pipeline.runtime import Runtime
from tests.test_data_path import backlog, record, state

RANGE = month_ends(date(2024, 6, 1), date(2024, 12, 31))  # June: before the first report (July)


def loaded(rt: Runtime) -> list:
    rows = []
    for month in backlog(40):
        rt.apply_delivered(record(rt, month))
        rows.extend(month)
    return rows


def test_month_ends() -> None:
    assert month_ends(date(2024, 11, 15), date(2025, 2, 1)) == [
        date(2024, 11, 30), date(2024, 12, 31), date(2025, 1, 31), date(2025, 2, 28)]
    assert month_ends(date(2024, 3, 1), date(2024, 2, 1)) == []


def test_yinchuan_against_jingzhou_matches_evaluate_month_by_month(any_runtime: Runtime) -> None:
    rt = any_runtime
    rows = loaded(rt)
    jingzhou, yinchuan = rt.scheme, load_scheme("yinchuan-2025", config_dir=rt.settings.config_dir)
    before = state(rt)
    with session_scope(rt.session_factory) as s:
        months = backtest(s, current=jingzhou, candidate=yinchuan, months=RANGE, with_projects=True, chunk_size=100)
    assert state(rt) == before  # nothing written
    assert [m.month for m in months] == ["2024-06", "2024-07", "2024-08", "2024-09", "2024-10", "2024-11", "2024-12"]
    changed_somewhere = 0
    for m in months:
        now = {r["code"]: r for r in evaluate_rows(rows, as_of=m.month_end, scheme=jingzhou)}
        then = {r["code"]: r for r in evaluate_rows(rows, as_of=m.month_end, scheme=yinchuan)}
        expected = {c: 0 for c in ("red", "yellow", "green")}
        assert m.current == expected | Counter(r["flag"] for r in now.values())
        assert m.candidate == expected | Counter(r["flag"] for r in then.values())
        differ = sorted(c for c in now if now[c]["flag"] != then[c]["flag"])
        assert m.changed == len(differ)
        assert [p.code for p in m.projects] == differ
        for p in m.projects:
            assert (p.current_flag, p.current_reasons) == (now[p.code]["flag"], now[p.code]["reasons"])
            assert (p.candidate_flag, p.candidate_reasons) == (then[p.code]["flag"], then[p.code]["reasons"])
        assert m.to_json(with_projects=True)["projects"] == [p.to_json() for p in m.projects]
        changed_somewhere += m.changed
    assert months[0].to_json() == {"month": "2024-06", "as_of": "2024-06-30", "current": {"red": 0, "yellow": 0,
                                   "green": 0}, "candidate": {"red": 0, "yellow": 0, "green": 0}, "changed": 0}
    assert changed_somewhere > 0  # the schemes do differ on this reserve
    # Every colour shows up under the scheme in force (the ESCALATED chain included).
    assert all(months[-1].current[c] for c in ("red", "yellow", "green"))


@pytest.mark.parametrize("scheme", ["jingzhou-2024", "yinchuan-2025"])
def test_a_scheme_against_itself_changes_nothing(sqlite_runtime: Runtime, scheme: str) -> None:
    rt = sqlite_runtime
    loaded(rt)
    chosen = load_scheme(scheme, config_dir=rt.settings.config_dir)
    with session_scope(rt.session_factory) as s:
        months = backtest(s, current=chosen, candidate=chosen, months=RANGE, with_projects=True, chunk_size=7)
    assert [m.changed for m in months] == [0] * len(RANGE)
    assert all(m.current == m.candidate and not m.projects for m in months)
    assert sum(months[-1].current.values()) == 40


def test_chunks_add_up(sqlite_runtime: Runtime, tmp_path: Path) -> None:
    rt = sqlite_runtime
    loaded(rt)
    yinchuan = load_scheme("yinchuan-2025", config_dir=rt.settings.config_dir)
    with session_scope(rt.session_factory) as s:
        whole = backtest(s, current=rt.scheme, candidate=yinchuan, months=RANGE, with_projects=True, chunk_size=10_000)
        parts = backtest(s, current=rt.scheme, candidate=yinchuan, months=RANGE, with_projects=True, chunk_size=3)
    assert [m.to_json(with_projects=True) for m in parts] == [m.to_json(with_projects=True) for m in whole]
