"""Large reserves for the benchmarks, loaded fast and outside every clock.

The demo reserve (1,463 projects, Jingzhou 2024) is repeated with new codes to N projects: each
copy keeps the demo project's data and region and takes a department-type pair of its own
(``YYYY-RRRRRR-II-TT-NNNNNN``, II-TT = the copy number), so every copy is a distinct, valid code.
Its monthly reports become one polars frame, written with COPY into ``status_updates`` as applied;
projects, leaders, units, lists and current states follow in a few INSERT … SELECT statements.
Scratch PostgreSQL databases are created here and dropped after.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
from sqlalchemy import Engine, create_engine, text

from pipeline import bulk
from pipeline.db import make_engine, make_session_factory, session_scope
from pipeline.demo.generate import generate_demo
from pipeline.ingest.frame import rows_to_frame
from pipeline.migrate import upgrade
from pipeline.reference import load_reference
from pipeline.settings import REPO_ROOT

ADMIN_URL = os.environ.get("PIPELINE_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
CONFIG = REPO_ROOT / "config"
TZ = ZoneInfo("Asia/Shanghai")
MASTER = ("name", "county", "industry", "nature", "total_investment", "leader", "unit")
PROGRESS = ("as_of", "annual_plan", "planned_start", "planned_completion", "actual_start", "actual_completion",
            "stats_included_on", "cumulative_completed", "ytd_completed", "needs_coordination", "problems")


@lru_cache(maxsize=1)
def demo_frame() -> pl.DataFrame:
    """The demo's twelve monthly reports as one update frame, with a ``month`` column."""
    demo = generate_demo(seed=2024, reference=load_reference(CONFIG))
    frames = [rows_to_frame(report).with_columns(pl.lit(i + 1).alias("month")) for i, report in enumerate(demo.reports)]
    return pl.concat(frames)


def reports(n: int, months: Sequence[int]) -> pl.DataFrame:
    """The given months' reports of a reserve of ``n`` projects made from the demo."""
    base = demo_frame().filter(pl.col("month").is_in(list(months)))
    codes = base.select(pl.col("code").unique().sort()).to_series()
    copies = -(-n // codes.len())
    chosen = pl.DataFrame({"copy": pl.int_range(0, copies, eager=True)}).join(
        pl.DataFrame({"code": codes}), how="cross").head(n)
    renumbered = base.join(chosen, on="code").with_columns(
        (pl.col("code").str.slice(0, 12) + (pl.col("copy") // 100).cast(pl.Utf8).str.zfill(2) + "-"
         + (pl.col("copy") % 100).cast(pl.Utf8).str.zfill(2) + pl.col("code").str.slice(17)).alias("code"),
        pl.concat_str(pl.col("name"), pl.lit("·"), pl.col("copy").cast(pl.Utf8)).alias("name"),
    )
    assert renumbered.select(pl.col("code").n_unique()).item() == min(n, codes.len() * copies)
    return renumbered.with_columns(
        (pl.col("code") + ":" + pl.col("as_of").cast(pl.Utf8)).alias("idempotency_key"),
    ).drop("copy")


def load(engine: Engine, updates: pl.DataFrame) -> None:
    """Write the reports as applied updates, then the projects, people, lists and current states."""
    upgrade(engine)
    now = datetime.now(TZ)
    lists = updates["lists"].list.join("\x1f")
    mapping = {k: json.dumps([] if k == "" else k.split("\x1f"), ensure_ascii=False) for k in lists.unique().to_list()}
    frame = updates.select(
        "idempotency_key", "row_number", pl.col("code").alias("project_code"), *MASTER,
        pl.col("lists").list.join("\x1f").replace_strict(mapping, return_dtype=pl.Utf8).alias("lists"), *PROGRESS,
    )
    factory = make_session_factory(engine)
    with session_scope(factory) as s:
        batch = s.execute(bulk.sql("INSERT INTO import_batches (source, status, total_rows, accepted_rows, "
                                   "duplicate_rows, rejected_rows, applied_rows, superseded_rows, attempts, "
                                   "received_at) VALUES ('bench', 'applied', 0, 0, 0, 0, 0, 0, 0, :now) RETURNING id"),
                          {"now": now}).scalar_one()
        staged = frame.with_columns(pl.lit(batch).alias("batch_id"), pl.lit("applied").alias("status"),
                                    pl.lit(now).alias("received_at"))
        if bulk.is_postgres(s):
            bulk.write_frame(s, "status_updates", staged)
        else:
            bulk.write_frame(s, "status_updates", staged.with_columns(pl.col("received_at").dt.strftime(
                "%Y-%m-%d %H:%M:%S.%f")))
    newest = ("(SELECT u.*, ROW_NUMBER() OVER (PARTITION BY u.project_code ORDER BY u.as_of DESC, u.id DESC) "
              "AS rn FROM status_updates u) n WHERE n.rn = 1")
    with session_scope(factory) as s:
        for table, column in (("leaders", "leader"), ("units", "unit")):
            s.execute(text(f"INSERT INTO {table} (name) SELECT DISTINCT {column} FROM status_updates "
                           f"WHERE {column} IS NOT NULL"))
        s.execute(bulk.sql(f"""
            INSERT INTO projects (code, name, county, industry, nature, total_investment, leader_id, unit_id,
                                  created_at, updated_at)
            SELECT n.project_code, n.name, n.county, n.industry, n.nature, n.total_investment, l.id, un.id, :now, :now
            FROM {newest.replace(' n WHERE', ' n LEFT JOIN leaders l ON l.name = n.leader LEFT JOIN units un '
                                               'ON un.name = n.unit WHERE')} ORDER BY n.project_code"""), {"now": now})
        elements = ("jsonb_array_elements_text(n.lists) AS e(value)" if bulk.is_postgres(s)
                    else "json_each(n.lists) AS e")
        s.execute(text(f"""INSERT INTO project_lists (project_id, list_name)
            SELECT DISTINCT p.id, e.value FROM {newest.replace(' n WHERE', f' n JOIN projects p ON p.code = '
                                                                            f'n.project_code CROSS JOIN {elements} WHERE')}"""))
        facts = ", ".join(PROGRESS)
        s.execute(text(f"""INSERT INTO project_states (project_id, update_id, {facts})
            SELECT p.id, n.id, {", ".join("n." + f for f in PROGRESS)}
            FROM {newest.replace(' n WHERE', ' n JOIN projects p ON p.code = n.project_code WHERE')}"""))
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))


@lru_cache(maxsize=1)
def _scratch_root() -> Path:
    """This process's folder of scratch folders, made when first wanted, removed when it exits."""
    root = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def scratch_dir(prefix: str) -> str:
    """A folder for one piece of a bench run (a child's data, CSV files, a Redis); all of this
    process's are removed when it exits, so runs leave nothing behind."""
    return tempfile.mkdtemp(prefix=prefix, dir=_scratch_root())


@contextmanager
def scratch_databases() -> Iterator[callable]:  # type: ignore[valid-type]
    """``make()`` creates a fresh PostgreSQL database (a copy of ``template`` when given) and returns
    its URL; every one is dropped at the end."""
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def make(template: str | None = None) -> str:
        name = f"pipeline_bench_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            if template:
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n "
                                  "AND pid <> pg_backend_pid()"), {"n": template})
            conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
        made.append(name)
        return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    try:
        yield make
    finally:
        with admin.connect() as conn:
            for name in made:
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n "
                                  "AND pid <> pg_backend_pid()"), {"n": name})
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@contextmanager
def scratch_sqlite() -> Iterator[callable]:  # type: ignore[valid-type]
    """``scratch_databases`` on SQLite: ``make()`` creates a fresh database file (a copy of the
    file ``template`` names, when given) and returns its URL; the files go with the scratch folder."""
    folder = Path(scratch_dir("sqlite-"))

    def make(template: str | None = None) -> str:
        path = folder / f"pipeline_bench_{uuid.uuid4().hex[:10]}.db"
        if template:
            shutil.copyfile(folder / template, path)
        return f"sqlite:///{path}"

    yield make


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def engine_for(url: str) -> Engine:
    return make_engine(url)


def write_reports_csv(updates: pl.DataFrame, folder: Path, files: int) -> list[Path]:
    """The reports as ``files`` template CSV files of about equal size (the import benchmarks)."""
    from pipeline.ingest.export import write_template
    from pipeline.ingest.frame import frame_to_rows

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    per = -(-updates.height // files)
    for i in range(files):
        part = updates.slice(i * per, per)
        paths.append(write_template(frame_to_rows(part.drop("month", strict=False)), folder / f"report-{i + 1:02d}.csv"))
    return paths


__all__ = ["demo_frame", "load", "reports", "scratch_databases", "scratch_sqlite", "write_reports_csv"]


if __name__ == "__main__":  # a quick look: python bench/reserve.py N
    import sys
    import time

    size = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    started = time.perf_counter()
    frame = reports(size, (11, 12))
    print(f"{frame.height} reports for {size} projects built in {time.perf_counter() - started:.2f} s; "
          f"as_of {frame['as_of'].min()}..{frame['as_of'].max()}; first code {frame['code'][0]}")
