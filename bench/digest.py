"""Digest planning for one review on a large reserve (issue 9.5/9.6: 100,000 projects and 30
leaders ≤ 10 s on PostgreSQL).

The reserve: N projects made from the demo with their September to December reports (the demo's
30 leaders, each answering for N/30 projects), month ends closed and flags written (setup, not
timed). The timed run plans the review of 2024-12-31 in a process of its own, warmed up as a
long-lived scheduler is: every leader's digest and the office digest, as of the digest day
(2024-12-24) against the previous review's (2024-10-24), rendered (text, HTML, markdown, xlsx) and
written to the outbox; then rolled back, so each run plans the same. The floor is the raw read of
the same data: a COPY out of every project with its unit, leader and every applied report dated on
or before each of the two days.

Then the same review as chunk tasks (``bench_digest_parallel``: chunks of 20,000 project ids, the
scheduler's way at province scale) on one and on two worker processes taking tasks from a private
Redis, timed from the run's start until the last of the rendering's parts (the office's digest,
the leaders' in ranges) has planned its messages: the same 31 messages.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

import reserve
from pipeline.db import make_engine

AS_OF = date(2024, 12, 31)
REVIEW = date(2024, 12, 31)
MONTHS = (9, 10, 11, 12)
SIZE = 100_000
TARGET_S = 10.0

FLOOR_SQL = """
    SELECT p.id, p.code, p.name, p.county, un.name, l.name, u.as_of, u.annual_plan, u.planned_start,
           u.planned_completion, u.actual_start, u.actual_completion, u.stats_included_on, u.cumulative_completed,
           u.ytd_completed, u.needs_coordination, u.problems
    FROM projects p LEFT JOIN units un ON un.id = p.unit_id LEFT JOIN leaders l ON l.id = p.leader_id
    JOIN status_updates u ON u.project_code = p.code
    WHERE u.status = 'applied' AND u.as_of <= DATE '{day}'"""


def digest_reserve(make: Callable[..., str], n: int) -> str:
    from run import child

    url = make()
    engine = make_engine(url)
    reserve.load(engine, reserve.reports(n, MONTHS))
    engine.dispose()
    child("reflag", url, AS_OF.isoformat())  # closes the month ends, writes the flags: setup, not timed
    return url


def _digest_child(url: str, review: str) -> None:
    from sqlalchemy import func, select

    from pipeline.alerts.planning import plan_review
    from pipeline.alerts.recipients import Contact, RecipientsConfig
    from pipeline.models import Leader, OutboxAttachment, Project
    from pipeline.runtime import Runtime
    from pipeline.settings import load_settings
    from figures import peak_rss_mb
    from run import warm_up

    rt = Runtime(load_settings(database_url=url, as_of=AS_OF))
    warm_up(rt, AS_OF)
    calendar = rt.review_calendar
    session = rt.session_factory()
    leaders = session.scalars(select(Leader.name).order_by(Leader.id)).all()
    projects = session.scalar(select(func.count()).select_from(Project))
    ctx = replace(rt.alert_context(), recipients=RecipientsConfig(
        office=Contact(name="投资科", email="office@bench.example"),
        leaders={name: Contact(email=f"leader{i}@bench.example") for i, name in enumerate(leaders)}))
    session.rollback()
    started = time.perf_counter()
    messages = plan_review(session, review=date.fromisoformat(review), calendar=calendar, current=AS_OF, ctx=ctx)
    took = time.perf_counter() - started
    attached = session.scalar(select(func.sum(func.length(OutboxAttachment.content))))
    session.rollback()
    session.close()
    rt.dispose()
    print(json.dumps({"seconds": took, "messages": messages, "leaders": len(leaders), "projects": projects,
                      "attachment_bytes": attached, "rss_mb": peak_rss_mb()}))


def read_floor(url: str, days: tuple[date, ...]) -> float:
    from run import _psycopg

    with _psycopg(url) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        for day in days:
            with cur.copy(f"COPY ({FLOOR_SQL.format(day=day.isoformat())}) TO STDOUT WITH (FORMAT csv)") as copy:
                for _ in copy:
                    pass
        return time.perf_counter() - started


def bench_digest(make: Callable[..., str], out: dict, n: int = SIZE, runs: int = 2, parallel: bool = True) -> None:
    from pipeline.alerts.review_data import digest_dates
    from pipeline.runtime import Runtime
    from pipeline.settings import load_settings
    from run import child, load_average

    url = digest_reserve(make, n)
    load = load_average()
    results = [child("digest", url, REVIEW.isoformat()) for _ in range(runs)]
    rt = Runtime(load_settings(database_url=url))
    dates = digest_dates(rt.review_calendar, REVIEW)
    rt.dispose()
    floor = statistics.median(read_floor(url, (dates.day, dates.previous_day)) for _ in range(runs))
    took = statistics.median(r["seconds"] for r in results)
    first = results[0]
    key = "digest_plan_100k" if n == SIZE else f"digest_plan_{n}"
    out[f"{key}_s"], out[f"{key}_floor_s"] = round(took, 3), round(floor, 3)
    out[f"{key}_rss_mb"] = round(max(r["rss_mb"] for r in results), 1)
    print(f"digest planning, review {REVIEW} (as of {dates.day} against {dates.previous_day}), {first['projects']:,} "
          f"projects, {first['leaders']} leaders → {first['messages']} messages, "
          f"{(first['attachment_bytes'] or 0) / 1e6:.1f} MB of xlsx: {took:.2f} s (target ≤ {TARGET_S:.0f} s); "
          f"raw read floor {floor:.2f} s (×{took / floor:.1f}); peak RSS {out[f'{key}_rss_mb']:.0f} MB; "
          f"load average {load:.2f}", flush=True)
    if parallel:
        bench_digest_parallel(url, out)


# When the parallel runs are started: the digest day's send time has passed, the review is ahead.
NOW = datetime(2024, 12, 24, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def _config_naming_every_leader(url: str) -> Path:
    """A copy of config/ whose recipients name the office and every leader of the reserve, as the
    single-process figure's planning does (so the workers render the same 31 messages)."""
    from sqlalchemy import select

    from pipeline.models import Leader

    folder = Path(reserve.scratch_dir("config-")) / "config"
    shutil.copytree(Path(__file__).resolve().parent.parent / "config", folder)
    engine = make_engine(url)
    with engine.connect() as conn:
        leaders = conn.scalars(select(Leader.name).order_by(Leader.id)).all()
    engine.dispose()
    (folder / "recipients.yaml").write_text(yaml.safe_dump({
        "office": {"name": "投资科", "email": "office@bench.example"},
        "leaders": {name: {"email": f"leader{i}@bench.example"} for i, name in enumerate(leaders)}, "units": {},
    }, allow_unicode=True), encoding="utf-8")
    return folder


def _digest_run(url: str, env: dict[str, str]) -> float:
    """Start the review's digest run as the scheduler does (a run row, a task per chunk) and wait
    until the last part of its rendering has planned its messages."""
    from figures import count_of, wait_until
    from pipeline.alerts.digest_runs import start_digest_run
    from pipeline.db import session_scope
    from pipeline.runtime import Runtime
    from pipeline.settings import load_settings
    from pipeline.tasks.dispatch import enqueue_digest_chunks

    engine = make_engine(url)
    with engine.begin() as conn:
        for table in ("outbox_attachments", "outbox", "review_runs", "digest_runs"):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    engine.dispose()
    rt = Runtime(load_settings(database_url=url, broker_url=env["PIPELINE_BROKER_URL"], now=NOW, as_of=AS_OF,
                               config_dir=Path(env["PIPELINE_CONFIG_DIR"])))
    started = time.perf_counter()
    with session_scope(rt.session_factory) as session:
        chunks = start_digest_run(session, review=REVIEW, current=AS_OF, send_at=rt.review_calendar.digest_send_at(
            REVIEW), chunk_size=rt.settings.reflag_chunk_size, clock=rt.clock)
    enqueue_digest_chunks(rt, REVIEW, chunks)
    wait_until(url, "SELECT count(*) FROM digest_runs WHERE status = 'done'")
    took = time.perf_counter() - started
    rt.dispose()
    assert count_of(url, "SELECT count(*) FROM outbox") == 31
    return took


def bench_digest_parallel(url: str, out: dict) -> None:
    """The same review's digests as chunk tasks (chunks of 20,000 project ids) on one and on two
    worker processes, each warmed up by one run first; from the run's start to the messages planned."""
    from figures import peak_rss_mb, pipeline_env, private_redis, workers

    config = _config_naming_every_leader(url)
    results = {}
    with private_redis() as broker:
        for count in (1, 2):
            env = pipeline_env(url, broker, PIPELINE_NOW=NOW.isoformat(), PIPELINE_CONFIG_DIR=str(config))
            with workers(env, count) as procs:
                _digest_run(url, env)
                results[count] = _digest_run(url, env)
                rss = max(peak_rss_mb(p.pid) for p in procs)
            out[f"digest_parallel_{count}w_s"] = round(results[count], 3)
            out[f"digest_worker_rss_mb_{count}w"] = round(rss, 1)
    print(f"digest planning as chunk tasks, workers warmed up: 1 worker {results[1]:.2f} s, 2 workers "
          f"{results[2]:.2f} s (×{results[1] / results[2]:.2f}); worker peak RSS {out['digest_worker_rss_mb_2w']:.0f} MB",
          flush=True)


__all__ = ["bench_digest", "bench_digest_parallel"]


if __name__ == "__main__":  # python bench/digest.py [N]: this figure alone
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
    figures: dict = {}
    with reserve.scratch_databases() as make:
        bench_digest(make, figures, int(sys.argv[1]) if len(sys.argv) > 1 else SIZE)
    print(json.dumps(figures, ensure_ascii=False))
