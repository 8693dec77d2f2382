"""Benchmark (not a test): the web workspace over 100,000 projects in PostgreSQL.

    .venv/bin/python bench/web.py [--projects 100000] [--requests 200]

Loads a scratch PostgreSQL database (bench/reserve.py: the demo reserve repeated to N projects, its
last three monthly reports, with leaders, units, lists and current states), flags every project
with the product's re-flag, starts the app under uvicorn on 127.0.0.1 and times, over real HTTP:

- the filtered, paginated project list (API and page; random colour × county × sort × page);
- the overview page (projects by colour, the three rates by county, latest changes, next review);
- a project's HTML page and its API record, for codes sampled across the whole table;
- the xlsx export of a filtered list (one county's red projects) and of one page;

and prints each p50/p95 beside the floor: the plain ``SELECT count(*) FROM projects`` over the same
table, timed the same way. Target (issue 9): p95 ≤ 100 ms for the list and the overview.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx
from sqlalchemy import insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reserve import engine_for, load, reports, scratch_databases  # noqa: E402

from pipeline.accounts import add_user, create_token  # noqa: E402
from pipeline.audit import Actor  # noqa: E402
from pipeline.db import session_scope  # noqa: E402
from pipeline.models import ImportBatch  # noqa: E402
from pipeline.runtime import Runtime  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402

AS_OF = date(2024, 12, 31)
ACTOR = Actor("bench", "cli")
TARGET_S = 0.1


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def show(label: str, samples: list[float], floor: float | None = None, target: float | None = TARGET_S) -> None:
    p50, p95 = statistics.median(samples) * 1000, percentile(samples, 95) * 1000
    line = f"{label:<58} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms"
    if floor is not None:
        line += f"   ({p95 / (floor * 1000):5.1f}× the COUNT floor)"
    if target is not None:
        line += "   ok" if p95 <= target * 1000 else f"   OVER the {target * 1000:.0f} ms target"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per measurement")
    args = parser.parse_args()

    with scratch_databases() as make, TemporaryDirectory() as tmp:
        url = make()
        start = time.perf_counter()
        engine = engine_for(url)
        load(engine, reports(args.projects, (10, 11, 12)))
        engine.dispose()
        print(f"loaded {args.projects:,} projects × 3 reports in {time.perf_counter() - start:.1f} s", flush=True)
        rt = Runtime(load_settings(data_dir=Path(tmp), database_url=url, as_of=AS_OF))
        try:
            start = time.perf_counter()
            outcome = rt.reflag_reserve(as_of=AS_OF)
            print(f"flagged {outcome.evaluated:,} projects in {time.perf_counter() - start:.1f} s", flush=True)
            with session_scope(rt.session_factory) as s:
                add_user(s, username="office", role="office", password="Bench-Reserve-9271", clock=rt.clock,
                         actor=ACTOR)
                token = create_token(s, username="office", clock=rt.clock, actor=ACTOR)
            with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
            run_requests(rt, token, args.requests)
        finally:
            rt.dispose()


def run_requests(rt: Runtime, token: str, n: int) -> None:
    from pipeline.web import create_app
    from tests.web_support import serve

    rng = random.Random(4)
    counties = [c.name for c in rt.reference.counties]
    sorts = ["code", "flag", "investment", "name", "ytd"]

    def count_floor() -> float:
        with rt.engine.connect() as conn:
            t = time.perf_counter()
            conn.execute(text("SELECT count(*) FROM projects")).scalar_one()
            return time.perf_counter() - t

    floors = [count_floor() for _ in range(n)]
    floor_p95 = percentile(floors, 95)
    show("floor: SELECT count(*) FROM projects (SQL only)", floors, target=None)

    with serve(create_app(rt)) as base, httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"},
                                                      timeout=60) as http:
        def timed(path: str, params: dict[str, object] | None = None) -> float:
            t = time.perf_counter()
            answer = http.get(path, params=params)
            took = time.perf_counter() - t
            assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
            return took

        def list_params() -> dict[str, object]:
            return {"color": rng.choice(["red", "yellow", "green", None]), "county": rng.choice(counties + [None]),
                    "sort": rng.choice(sorts), "desc": rng.random() < 0.5, "page": rng.randint(1, 5), "per_page": 50}

        for _ in range(5):
            timed("/api/projects", list_params())  # warm the pool
        show("GET /api/projects (filtered, sorted, page of 50)", [timed("/api/projects", list_params()) for _ in range(n)],
             floor_p95)
        show("GET /projects page (filtered, sorted, page of 50)", [timed("/projects", list_params()) for _ in range(n)],
             floor_p95)
        show("GET /api/projects?q=… (name contains, unfiltered)",
             [timed("/api/projects", {"q": rng.choice(["泵站", "产业园", "学校", "道路"])}) for _ in range(n // 4)],
             floor_p95)
        deep = [timed("/api/projects", {"page": rng.randint(1000, 1999), "per_page": 50}) for _ in range(n // 4)]
        show("GET /api/projects deep pages (offset 50,000–100,000)", deep, floor_p95)
        cold = timed("/")
        print(f"{'GET / overview, cold (first request of the process)':<58} {cold * 1000:7.1f} ms", flush=True)
        show("GET / overview (rates cached until the next import)", [timed("/") for _ in range(n)], floor_p95)
        show("GET /api/rates?by=county (cached)", [timed("/api/rates", {"by": "county"}) for _ in range(n // 4)],
             floor_p95)
        with rt.engine.begin() as conn:  # an import lands: the rates' version moves on
            now = rt.clock.now()
            conn.execute(insert(ImportBatch).values(source="bench", status="applied", received_at=now, applied_at=now))
        after = timed("/")
        start = time.perf_counter()
        while "正在重新计算" in http.get("/").text:
            time.sleep(0.05)
        print(f"{'GET / overview right after an import (previous figures)':<58} {after * 1000:7.1f} ms; "
              f"fresh figures {time.perf_counter() - start:.1f} s later", flush=True)
        codes = _codes(rt, rng, n // 4)
        show("GET /api/projects/{code} (codes across the table)", [timed(f"/api/projects/{c}") for c in codes],
             floor_p95)
        show("GET /projects/{code} HTML page (codes across the table)", [timed(f"/projects/{c}") for c in codes],
             floor_p95)
        show("GET /projects/export.xlsx (one county's red projects)",
             [timed("/projects/export.xlsx", {"color": "red", "county": rng.choice(counties)}) for _ in range(n // 10)],
             floor_p95, target=None)


def _codes(rt: Runtime, rng: random.Random, k: int) -> list[str]:
    """``k`` codes drawn uniformly from the whole projects table (not its first rows)."""
    with rt.engine.connect() as conn:
        top = conn.execute(text("SELECT max(id) FROM projects")).scalar_one()
        ids = [rng.randint(1, top) for _ in range(k)]
        found = dict(conn.execute(text("SELECT id, code FROM projects WHERE id = ANY(:ids)"), {"ids": ids}).all())
    return [found[i] for i in ids if i in found]


if __name__ == "__main__":
    main()
