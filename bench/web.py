"""Benchmark (not a test): the web workspace over 100,000 projects in PostgreSQL.

    .venv/bin/python bench/web.py [--projects 100000] [--reports 3] [--requests 200]

Loads a fresh PostgreSQL database (created and dropped here) with N projects made from the demo
reserve (its last ``--reports`` monthly reports, codes renumbered), their leaders, lists, units and
flags (the bulk re-flag), starts the app under uvicorn on 127.0.0.1 and times, over real HTTP:

- the filtered, paginated project list (API and page; random colour × county × sort × page);
- the overview page (projects by colour, the three rates by county, latest changes, next review);

and prints each p50/p95 beside the floor: the plain ``SELECT count(*) FROM projects`` over the same
table, timed the same way. Target: p95 ≤ 200 ms for the list and the overview. The overview's
rates are cached per evaluation date and per applied batch; the first, cold computation (once per
process) and the page right after an import (previous figures shown while a background thread
recomputes) are printed separately.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from dataclasses import replace
from datetime import date
from pathlib import Path

import httpx
from sqlalchemy import create_engine, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.accounts import add_user, create_token  # noqa: E402
from pipeline.clock import Clock  # noqa: E402
from pipeline.db import make_engine, session_scope  # noqa: E402
from pipeline.demo.generate import generate_demo  # noqa: E402
from pipeline.ingest.keys import idempotency_key, update_payload  # noqa: E402
from pipeline.ingest.template import UpdateRow  # noqa: E402
from pipeline.migrate import upgrade  # noqa: E402
from pipeline.models import (  # noqa: E402
    ImportBatch, Leader, Project, ProjectList, ProjectState, StatusUpdate, Unit,
)
from pipeline.reflag import reflag  # noqa: E402
from pipeline.runtime import Runtime  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402

ADMIN_URL = os.environ.get("PIPELINE_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
AS_OF = date(2024, 12, 31)
CHUNK = 10_000


def renumbered(row: UpdateRow, copy: int) -> UpdateRow:
    """The demo row as project number ``copy`` of its code: same region and type, a new serial."""
    if copy == 0:
        return row
    serial = (copy * 1_000_003 + int(row.code[18:])) % 1_000_000
    return replace(row, code=f"{row.code[:18]}{serial:06d}", name=f"{row.name}（{copy}）")


def reserve(n_projects: int, n_reports: int) -> tuple[list[list[UpdateRow]], list]:
    demo = generate_demo(seed=2024, reference=load_settings_reference())
    reports = demo.reports[-n_reports:]
    base_codes = sorted({r.code for rep in reports for r in rep})
    copies = -(-n_projects // len(base_codes))
    chosen: dict[tuple[str, int], None] = {}
    for copy in range(copies):
        for c in base_codes:
            if len(chosen) < n_projects:
                chosen[(c, copy)] = None
    out = []
    for rep in reports:
        by_code = {r.code: r for r in rep}
        out.append([renumbered(by_code[c], copy) for (c, copy) in chosen if c in by_code])
    return out, demo.leaders


def load_settings_reference():  # type: ignore[no-untyped-def]
    from pipeline.reference import load_reference
    from pipeline.settings import REPO_ROOT

    return load_reference(REPO_ROOT / "config")


def load(url: str, reports: list[list[UpdateRow]], leaders: list) -> None:  # type: ignore[type-arg]
    engine = make_engine(url)
    upgrade(engine)
    now = Clock(load_settings().tz).now()
    newest: dict[str, UpdateRow] = {}
    for rep in reports:
        for r in rep:
            newest[r.code] = r
    with engine.begin() as conn:
        conn.execute(insert(Leader), [{"name": l.name, "title": l.title, "email": l.email} for l in leaders])
        units = sorted({r.unit for r in newest.values() if r.unit})
        conn.execute(insert(Unit), [{"name": u} for u in units])
        leader_ids = dict(conn.execute(select(Leader.name, Leader.id)).tuples().all())
        unit_ids = dict(conn.execute(select(Unit.name, Unit.id)).tuples().all())
        batch_id = conn.execute(insert(ImportBatch).values(source="bench", status="applied", received_at=now,
                                                           applied_at=now).returning(ImportBatch.id)).scalar_one()
        rows = [{"code": c, "name": r.name, "county": r.county, "industry": r.industry, "nature": r.nature,
                 "total_investment": r.total_investment, "leader_id": leader_ids.get(r.leader or ""),
                 "unit_id": unit_ids.get(r.unit or ""), "created_at": now, "updated_at": now}
                for c, r in newest.items()]
        for i in range(0, len(rows), CHUNK):
            conn.execute(insert(Project), rows[i:i + CHUNK])
        ids = dict(conn.execute(select(Project.code, Project.id)).tuples().all())
        lists = [{"project_id": ids[c], "list_name": name} for c, r in newest.items() for name in r.lists]
        for i in range(0, len(lists), CHUNK):
            conn.execute(insert(ProjectList), lists[i:i + CHUNK])
        updates = [
            {"idempotency_key": idempotency_key(r), "batch_id": batch_id, "project_code": r.code, "status": "applied",
             "payload": update_payload(r), "received_at": now, "applied_at": now, "as_of": r.as_of,
             "annual_plan": r.annual_plan, "planned_start": r.planned_start,
             "planned_completion": r.planned_completion, "actual_start": r.actual_start,
             "actual_completion": r.actual_completion, "stats_included_on": r.stats_included_on,
             "cumulative_completed": r.cumulative_completed, "ytd_completed": r.ytd_completed,
             "needs_coordination": r.needs_coordination, "problems": r.problems}
            for rep in reports for r in rep
        ]
        for i in range(0, len(updates), CHUNK):
            conn.execute(insert(StatusUpdate), updates[i:i + CHUNK])
        upd = dict(conn.execute(select(StatusUpdate.idempotency_key, StatusUpdate.id)).tuples().all())
        states = [{"project_id": ids[c], "update_id": upd[idempotency_key(r)], "as_of": r.as_of,
                   "annual_plan": r.annual_plan, "planned_start": r.planned_start,
                   "planned_completion": r.planned_completion, "actual_start": r.actual_start,
                   "actual_completion": r.actual_completion, "stats_included_on": r.stats_included_on,
                   "cumulative_completed": r.cumulative_completed, "ytd_completed": r.ytd_completed,
                   "needs_coordination": r.needs_coordination, "problems": r.problems}
                  for c, r in newest.items()]
        for i in range(0, len(states), CHUNK):
            conn.execute(insert(ProjectState), states[i:i + CHUNK])
        conn.execute(text("ANALYZE"))
    engine.dispose()


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def show(label: str, samples: list[float], floor: float | None = None, target: float | None = 0.2) -> None:
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
    parser.add_argument("--reports", type=int, default=3, help="monthly reports per project (the demo's last N)")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per measurement")
    args = parser.parse_args()

    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"pipeline_bench_web_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / name
    try:
        start = time.perf_counter()
        reports, leaders = reserve(args.projects, args.reports)
        load(url, reports, leaders)
        print(f"loaded {args.projects:,} projects × {args.reports} reports in {time.perf_counter() - start:.1f} s",
              flush=True)
        rt = Runtime(load_settings(data_dir=tmp, database_url=url, as_of=AS_OF))
        start = time.perf_counter()
        with session_scope(rt.session_factory) as s:
            outcome = reflag(s, scheme=rt.scheme, clock=rt.clock, as_of=AS_OF)
            add_user(s, username="office", role="office", password="bench-password", clock=rt.clock)
            token = create_token(s, username="office", clock=rt.clock)
        print(f"flagged {outcome.evaluated:,} projects in {time.perf_counter() - start:.1f} s: {outcome.by_color}",
              flush=True)
        with rt.engine.connect() as conn:
            conn.execute(text("ANALYZE"))
        run_requests(rt, token, args.requests)
    finally:
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


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
        show("GET /api/projects/{code}", [timed(f"/api/projects/{c}") for c in _codes(rt, rng, n // 4)], floor_p95)


def _codes(rt: Runtime, rng: random.Random, k: int) -> list[str]:
    with rt.engine.connect() as conn:
        codes = list(conn.execute(select(Project.code).order_by(Project.id).limit(5000)).scalars())
    return [rng.choice(codes) for _ in range(k)]


if __name__ == "__main__":
    main()
