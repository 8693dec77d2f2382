"""The set-based data path: applying is an order-independent merge, re-flags write each change
once, month flags follow the reports, a unit's master data wait for the office; on SQLite and on
the real PostgreSQL, with real concurrent transactions where it matters."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import func, select, text

from pipeline.db import session_scope
from pipeline.ingest.record import record_batch
from pipeline.models import (
    ChangeRequest,
    FlagChange,
    ImportBatch,
    Leader,
    MonthFlag,
    OutboxMessage,
    Project,
    ProjectFlag,
    StatusUpdate,
    Unit,
)
from pipeline.months import last_month_end
from pipeline.reflag import ReflagOutcome, evaluate_scope
from pipeline.runtime import Runtime, set_runtime
from pipeline.snapshot import Scope
from pipeline.tasks.dispatch import apply_inline
from tests.conftest import make_runtime
from tests.factories import code, row
from tests.test_worker_faults import workers  # noqa: F401  (the worker-process fixture)

D = date(2024, 12, 31)
MONTHS = (date(2024, 7, 31), date(2024, 8, 31), date(2024, 9, 30), date(2024, 10, 31), date(2024, 11, 30), D)
LEADER, ADDRESS = "王建国", "wangjianguo@jingzhou.gov.cn"


def report(n: int, month: date) -> Any:
    """Project n's report for a month: five kinds of project, so every rule fires somewhere."""
    kind = n % 5
    f = Decimal(month.month) / 12
    if kind == 0:  # a new start that slips: yellow, then red once 60 days late
        return row(n, as_of=month, nature="新开工", planned_start=date(2024, 8, 15), actual_start=None,
                   stats_included_on=None, cumulative_completed=Decimal(0), ytd_completed=Decimal(0))
    if kind == 1:  # behind pace by a margin that varies from month to month
        pace = Decimal("0.5") + Decimal((n + month.month) % 4) * Decimal("0.15")
        return row(n, as_of=month, ytd_completed=(Decimal(12000) * f * pace).quantize(Decimal("1")))
    if kind == 2 and month > date(2024, 9, 30):  # stops reporting after September: STALE grows
        return None
    if kind == 3:  # needs coordination in two months running: yellow twice, then ESCALATED
        return row(n, as_of=month, needs_coordination=month.month in (9, 10, 11), problems="征地拆迁未完成",
                   ytd_completed=(Decimal(12000) * f).quantize(Decimal("1")))
    if kind == 4 and month >= date(2024, 10, 31):  # completed in October, waiting for the statistics
        return row(n, as_of=month, actual_completion=date(2024, 10, 20), ytd_completed=Decimal(12000))
    return row(n, as_of=month, ytd_completed=(Decimal(12000) * f).quantize(Decimal("1")))


def backlog(projects: int = 40) -> list[list[Any]]:
    months = []
    for month in MONTHS:
        rows = [r for n in range(1, projects + 1) if (r := report(n, month)) is not None]
        months.append(rows)
    return months


def record(rt: Runtime, rows: list[Any], **extra: Any) -> int:
    with session_scope(rt.session_factory) as s:
        return record_batch(s, source="file", filename=None, content_sha256=None, total_rows=len(rows), rows=rows,
                            errors=[], clock=rt.clock, **extra).batch_id


STATE_QUERIES = {
    "projects": """SELECT p.code, p.name, p.county, p.nature, p.total_investment, l.name, u.name FROM projects p
                   LEFT JOIN leaders l ON l.id = p.leader_id LEFT JOIN units u ON u.id = p.unit_id ORDER BY 1""",
    "lists": "SELECT p.code, pl.list_name FROM project_lists pl JOIN projects p ON p.id = pl.project_id ORDER BY 1, 2",
    "states": """SELECT p.code, s.as_of, s.ytd_completed, s.needs_coordination, u.idempotency_key FROM project_states s
                 JOIN projects p ON p.id = s.project_id JOIN status_updates u ON u.id = s.update_id ORDER BY 1""",
    "flags": """SELECT p.code, f.computed_color, f.effective_color, f.base_color, f.reasons, f.as_of,
                       f.previous_base, u.idempotency_key
                FROM project_flags f JOIN projects p ON p.id = f.project_id
                LEFT JOIN status_updates u ON u.id = f.update_id ORDER BY 1""",
    "months": """SELECT p.code, m.month_end, m.computed_color, m.base_color, m.reasons, u.idempotency_key
                 FROM month_flags m JOIN projects p ON p.id = m.project_id
                 JOIN status_updates u ON u.id = m.update_id ORDER BY 1, 2""",
    "updates": "SELECT idempotency_key, status FROM status_updates ORDER BY 1",
}


def state(rt: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    """What the reserve holds, without ids, times or the history of how it got there."""
    import json

    def plain(v: Any) -> Any:
        if isinstance(v, (list, dict)):
            return json.dumps(v, sort_keys=True, ensure_ascii=False)
        if isinstance(v, str) and v[:1] in "[{":
            return json.dumps(json.loads(v), sort_keys=True, ensure_ascii=False)
        return None if v is None else str(v)

    with rt.engine.connect() as conn:
        return {k: [tuple(plain(v) for v in r) for r in conn.execute(text(q))] for k, q in STATE_QUERIES.items()}


def rows_read(s, *tables: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Rows each table has given this transaction so far, scanned or fetched through an index
    (PostgreSQL)."""
    return dict(s.execute(text(
        "SELECT relname, COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables "
        "WHERE relname = ANY(:tables)"), {"tables": list(tables)}).all())


@pytest.fixture
def runtimes(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[..., Runtime]:
    """Fresh runtimes on the backend under test (``sqlite`` or ``postgres``), disposed after."""
    made: list[Runtime] = []

    def make(backend: str, **settings: Any) -> Runtime:
        folder = tmp_path / f"rt{len(made)}"
        if backend == "postgres":
            settings["database_url"] = request.getfixturevalue("pg_factory")()
        settings.setdefault("as_of", D)
        rt = make_runtime(folder, **settings)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.dispose()
    set_runtime(None)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_batches_in_any_order_end_in_the_same_reserve(backend: str, runtimes) -> None:
    months = backlog()
    ends = []
    for order in ([0, 1, 2, 3, 4, 5], [5, 3, 1, 0, 4, 2], [2, 5, 0, 4, 1, 3]):
        rt = runtimes(backend)
        ids = [record(rt, months[i]) for i in order]
        for batch_id in ids:  # one delivery each, in this order
            rt.apply_delivered(batch_id)
        ends.append(state(rt))
    assert ends[0]["flags"] and ends[0]["months"]
    assert ends[1] == ends[0]
    assert ends[2] == ends[0]
    colours = {r[1] for r in ends[0]["flags"]}
    assert colours == {"red", "yellow", "green"}


def test_batches_applied_in_parallel_end_as_in_sequence(runtimes) -> None:
    """Two workers' transactions at once on PostgreSQL, on batches that share every project."""
    months = backlog()
    sequential = runtimes("postgres")
    for rows in months:
        sequential.apply_delivered(record(sequential, rows))
    expected = state(sequential)

    rt = runtimes("postgres")
    ids = [record(rt, rows) for rows in months]
    start = threading.Barrier(3)
    errors: list[BaseException] = []

    def worker(mine: list[int]) -> None:
        try:
            start.wait()
            for batch_id in mine:
                rt.apply_delivered(batch_id)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(ids[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    assert state(rt) == expected
    with session_scope(rt.session_factory) as s:
        assert s.scalars(select(ImportBatch.attempts)).all() == [1] * len(ids)


def test_month_flags_after_a_backlog_are_each_month_judged_from_its_own_reports(runtimes) -> None:
    rt = runtimes("sqlite")
    for rows in reversed(backlog()):  # newest month first: every month is re-judged as the old ones arrive
        rt.apply_delivered(record(rt, rows))
    with session_scope(rt.session_factory) as s:
        stored = {(r.project_id, r.month_end): (r.computed_color, r.reasons) for r in s.scalars(select(MonthFlag))}
        expected = {}
        for month in MONTHS:
            frame = evaluate_scope(s, Scope(), month, scheme=rt.scheme).filter(pl.col("as_of").is_not_null())
            for pid, color, reasons in frame.select("project_id", "color", "reasons").iter_rows():
                expected[(pid, month)] = (color, __import__("json").loads(reasons))
    assert stored == expected
    # The history reads as the year went: a slipping new start goes green in July, yellow in August
    # (16 days late), red in September (yellow twice running: ESCALATED), then red (over 60 days).
    with session_scope(rt.session_factory) as s:
        pid = s.scalar(select(Project.id).where(Project.code == code(5)))
        colours = [c for c, in s.execute(select(MonthFlag.computed_color).where(MonthFlag.project_id == pid)
                                          .order_by(MonthFlag.month_end))]
    assert colours == ["green", "yellow", "red", "red", "red", "red"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_full_run_agrees_with_the_month_flags_kept_by_the_batches(backend: str, runtimes) -> None:
    rt = runtimes(backend)
    for rows in backlog():
        rt.apply_delivered(record(rt, rows))
    kept = state(rt)
    with session_scope(rt.session_factory) as s:
        s.execute(text("DELETE FROM month_flags"))
    again = rt.reflag_reserve()
    assert again.changed == 0 and again.recoloured == 0
    assert state(rt) == kept


def test_two_whole_reserve_runs_at_once_record_each_change_once(runtimes, tmp_path: Path) -> None:
    import yaml

    config = tmp_path / "config"
    import shutil

    from pipeline.settings import REPO_ROOT

    shutil.copytree(REPO_ROOT / "config", config)
    (config / "recipients.yaml").write_text(yaml.safe_dump({"leaders": {LEADER: {"email": ADDRESS}}},
                                                           allow_unicode=True), encoding="utf-8")
    # Imported and judged as of September's end; the two runs re-judge as of December's.
    rt = runtimes("postgres", config_dir=config, reflag_chunk_size=100, as_of=date(2024, 9, 30))
    rows = [report(n, date(2024, 9, 30)) for n in range(1, 251)]
    rt.apply_delivered(record(rt, [r for r in rows if r is not None]))
    with session_scope(rt.session_factory) as s:
        history = s.scalar(select(func.count()).select_from(FlagChange))
        notices = s.scalar(select(func.count()).select_from(OutboxMessage))
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def nightly() -> None:
        try:
            start.wait()
            rt.reflag_reserve(as_of=D)  # three months later: overdue starts turn red, reports go stale
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=nightly) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    with session_scope(rt.session_factory) as s:
        per_project = s.execute(select(FlagChange.project_id, func.count()).where(FlagChange.as_of == D)
                                .group_by(FlagChange.project_id)).all()
        assert per_project and all(n == 1 for _, n in per_project)
        assert s.scalar(select(func.count()).select_from(FlagChange)) == history + len(per_project)
        red_now = s.scalar(select(func.count()).select_from(ProjectFlag).where(ProjectFlag.effective_color == "red"))
        keys = s.scalars(select(OutboxMessage.key).where(OutboxMessage.kind == "red_notice")).all()
    assert len(keys) == len(set(keys)) and len(keys) > notices
    assert len(keys) == red_now  # one notice per red episode, to the one leader with an address


def test_a_run_in_process_reads_each_chunk_ahead_and_a_failure_leaves_no_chunk_held(runtimes, monkeypatch) -> None:
    """On PostgreSQL the in-process run reads the next chunk (under its lock, in a transaction of
    its own) while it writes the one before: it ends as the same run chunk by chunk, and when a
    chunk fails the chunk read ahead is rolled back at once, its lock released, so the run's
    remaining chunks can be run again straight away."""
    import pipeline.runtime as runtime_module

    ends = []
    for ahead in (False, True):
        rt = runtimes("postgres", reflag_chunk_size=100)
        for rows in backlog(350):
            rt.apply_delivered(record(rt, rows))
        with session_scope(rt.session_factory) as s:
            s.execute(text("DELETE FROM month_flags"))
            s.execute(text("UPDATE project_flags SET as_of = DATE '2024-12-30'"))  # every red flag dated afresh
        if ahead:
            outcome = rt.reflag_reserve(as_of=D)
        else:
            with session_scope(rt.session_factory) as s:
                plan = runtime_module.plan_run(s, as_of=D, scheme=rt.scheme, cause="reflag", clock=rt.clock,
                                               chunk_size=100)
            assert len(plan.chunks) == 4
            outcome = sum((rt.run_reflag_chunk(plan.run_id, c) for c in plan.chunks), ReflagOutcome(D))
        assert outcome.changed > 0
        ends.append((state(rt), outcome.changed, outcome.recoloured))
    assert ends[1] == ends[0]

    finish = runtime_module.finish_chunk

    def failing(session, read, **kwargs):  # type: ignore[no-untyped-def]
        if read.chunk == 1:
            raise RuntimeError("chunk 1 fails")
        return finish(session, read, **kwargs)

    monkeypatch.setattr(runtime_module, "finish_chunk", failing)
    with session_scope(rt.session_factory) as s:
        s.execute(text("UPDATE project_flags SET as_of = DATE '2024-12-30'"))
    # The error is kept, with its traceback, as a caller that logs it keeps it: the chunk read
    # ahead must be let go of by the run itself, not by the collection of its frame.
    with pytest.raises(RuntimeError, match="chunk 1 fails") as failed:
        rt.reflag_reserve(as_of=D)
    with rt.engine.connect() as conn:
        open_work = conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state LIKE 'idle in transaction%'")).scalar()
        held = conn.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                 "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"))
    assert failed.traceback and open_work == 0 and held.scalar() == 0
    monkeypatch.setattr(runtime_module, "finish_chunk", finish)
    with session_scope(rt.session_factory) as s:
        run_id, done = s.execute(text("SELECT r.id, count(c.chunk) FROM reflag_runs r LEFT JOIN reflag_chunks c "
                                      "ON c.run_id = r.id GROUP BY r.id ORDER BY r.id DESC LIMIT 1")).one()
    assert done == 1  # chunk 0 written, chunk 1 failed, chunk 2 read ahead and rolled back
    for chunk in (1, 2, 3):
        assert rt.run_reflag_chunk(run_id, chunk) is not None
    with session_scope(rt.session_factory) as s:
        assert s.scalar(text("SELECT status FROM reflag_runs WHERE id = :id"), {"id": run_id}) == "done"


def test_neighbouring_chunks_share_no_lock() -> None:
    """Ids count from 1 in chunks and in lock spans alike: chunks of a multiple of the span never
    wait on each other's lock, and a project's lock is its chunk's."""
    from pipeline.reflag import LOCK_SPAN, _span, chunk_bounds, chunk_spans

    for size in (LOCK_SPAN, 20 * LOCK_SPAN):
        for chunk in range(3):
            assert not set(chunk_spans(chunk, size)) & set(chunk_spans(chunk + 1, size))
            lo, hi = chunk_bounds(chunk, size)
            assert {_span(lo), _span(hi - 1)} <= set(chunk_spans(chunk, size))


def test_a_chunk_planning_its_red_notices_does_not_hold_up_the_other_chunks(runtimes, tmp_path: Path) -> None:
    """Chunks of one run count themselves on the run's row; a chunk counts only after planning its
    notices, so a chunk still planning does not keep a parallel one waiting on that row."""
    import shutil

    import yaml

    from pipeline.nightly import plan_run
    from pipeline.settings import REPO_ROOT

    config = tmp_path / "config"
    shutil.copytree(REPO_ROOT / "config", config)
    (config / "recipients.yaml").write_text(yaml.safe_dump({"leaders": {LEADER: {"email": ADDRESS}}},
                                                           allow_unicode=True), encoding="utf-8")
    rt = runtimes("postgres", config_dir=config, reflag_chunk_size=1_000, as_of=date(2024, 9, 30))
    rt.apply_delivered(record(rt, [r for n in range(1, 1_101) if (r := report(n, date(2024, 9, 30))) is not None]))
    # A second process on the same database, whose statements give up after a second's wait.
    other = runtimes("sqlite", config_dir=config, reflag_chunk_size=1_000, database_url=rt.settings.database_url,
                     db_lock_timeout=1)
    with session_scope(rt.session_factory) as s:
        plan = plan_run(s, as_of=D, scheme=rt.scheme, cause="reflag", clock=rt.clock, chunk_size=1_000)
    assert plan.chunks == (0, 1)
    planning, release = threading.Event(), threading.Event()
    plan_notices = rt.plan_notices

    def slow_notices(session: Any, ids: Any) -> int:
        planning.set()
        assert release.wait(60)
        return plan_notices(session, ids)

    rt.plan_notices = slow_notices  # type: ignore[method-assign]
    first = threading.Thread(target=rt.run_reflag_chunk, args=(plan.run_id, 0))
    first.start()
    try:
        assert planning.wait(60)
        second = other.run_reflag_chunk(plan.run_id, 1)  # would time out waiting for the first chunk's commit
        assert second is not None and second.turned_red
    finally:
        release.set()
        first.join(60)
    with session_scope(rt.session_factory) as s:
        assert s.scalar(text("SELECT status FROM reflag_runs WHERE id = :id"), {"id": plan.run_id}) == "done"
        reds = s.scalar(select(func.count()).select_from(ProjectFlag).where(ProjectFlag.effective_color == "red"))
        notices = s.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind == "red_notice"))
    assert reds and notices == reds


def test_a_batch_of_100000_projects_applies_on_postgres(runtimes) -> None:
    rt = runtimes("postgres")
    base = row(1, as_of=date(2024, 11, 30))
    frame_rows = [base.__class__(**{**base.__dict__, "code": code(n)}) for n in range(1, 100_001)]
    batch = record(rt, frame_rows)
    applied = rt.apply_delivered(batch)
    assert applied is not None and applied.applied == 100_000
    with session_scope(rt.session_factory) as s:
        assert s.scalar(select(func.count()).select_from(Project)) == 100_000
        assert s.scalar(select(func.count()).select_from(ProjectFlag)) == 100_000
        # November's and December's month ends (the reserve is judged as of 2024-12-31)
        assert s.scalar(select(func.count()).select_from(MonthFlag)) == 200_000


def test_re_flagging_a_few_projects_reads_only_their_rows(runtimes) -> None:
    """After a small batch, its projects' month flags and flags are redone by reading their own rows
    through the keys, not by scanning the reserve (PostgreSQL; rows counted in the transaction)."""
    rt = runtimes("postgres")
    reserve = 20_000
    base = row(1, as_of=date(2024, 11, 30))
    rt.apply_delivered(record(rt, [base.__class__(**{**base.__dict__, "code": code(n)})
                                   for n in range(1, reserve + 1)]))
    with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    few = [reserve - 9 + i for i in range(10)]  # the last ids: a merge along the key reads all before them

    tables = ("projects", "project_states", "month_flags", "project_flags", "flag_history")
    with session_scope(rt.session_factory) as s:
        # Counted from the transaction's start: the server flushes a backend's counts at most once a
        # second, so those of its earlier transactions (the ANALYZE's) may still be pending here.
        before = rows_read(s, *tables)
        touched = pl.DataFrame({"project_id": few, "since": [date(2024, 11, 30)] * len(few)},
                               schema={"project_id": pl.Int64, "since": pl.Date})
        outcome = rt.after_apply(s, touched)
        assert outcome.evaluated == len(few)
        rt.plan_missing_red_notices(s, among=few)  # the catch-up after a batch
        read = {table: rows - before.get(table, 0) for table, rows in rows_read(s, *tables).items()}
    assert read and all(rows <= 20 * len(few) for rows in read.values()), read


def test_a_past_day_reads_one_report_per_project_asked_about(runtimes) -> None:
    """Each project's newest report on or before a past day (digests, pages as of a date) is found
    by probing that project's reports newest first, one row each, not by reading every report the
    projects have had (PostgreSQL; rows counted in the transaction)."""
    from pipeline.snapshot import newest_on_or_before

    rt = runtimes("postgres")
    reserve, asked = 3_000, 1_000
    months = (date(2024, 9, 30), date(2024, 10, 31), date(2024, 11, 30))
    base = row(1)
    rt.apply_delivered(record(rt, [base.__class__(**{**base.__dict__, "code": code(n), "as_of": month})
                                   for month in months for n in range(1, reserve + 1)]))
    with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    with session_scope(rt.session_factory) as s:
        before = rows_read(s, "status_updates")["status_updates"]
        found = newest_on_or_before(s, pl.Series(range(1, asked + 1)), date(2024, 11, 15))
        rows = rows_read(s, "status_updates")["status_updates"] - before
    assert found["project_id"].to_list() == list(range(1, asked + 1))
    assert found["as_of"].unique().to_list() == [date(2024, 10, 31)]
    assert rows <= 1.5 * asked, rows  # September's reports, on or before the day too, are never read


def test_catching_up_on_red_notices_probes_the_outbox_by_episode(runtimes) -> None:
    """Whether a red episode's notice is planned is asked of the outbox by episode, in one statement
    for any number of projects: the outbox keeps every message ever planned, and the catch-up after
    each batch must not read it all (PostgreSQL; rows counted in the transaction)."""
    from sqlalchemy import event

    from pipeline.alerts.planning import unnotified_red_projects

    rt = runtimes("postgres")
    reserve = 3_000
    late = row(1, as_of=date(2024, 11, 30), actual_start=None, stats_included_on=None)  # never started: red
    rt.apply_delivered(record(rt, [late.__class__(**{**late.__dict__, "code": code(n)})
                                   for n in range(1, reserve + 1)]))
    with session_scope(rt.session_factory) as s:
        assert s.scalar(text("SELECT count(*) FROM project_flags WHERE effective_color = 'red'")) == reserve
        # Every episode's notice planned but those of the first 700 projects (no addresses here:
        # the messages are written as the outbox keeps them).
        s.execute(text("""
            INSERT INTO outbox (key, kind, channel, recipient, subject, body_text, payload, status, attempts,
                                next_attempt_at, created_at, project_id, episode_change_id)
            SELECT 'red_notice:' || h.id, 'red_notice', 'folder', 'x', 's', 'b', '{}', 'sent', 1, now(), now(),
                   h.project_id, h.id
            FROM flag_history h WHERE h.new_effective = 'red' AND h.project_id > 700"""))
    with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    few = list(range(reserve - 9, reserve + 1))
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    with session_scope(rt.session_factory) as s:
        before = rows_read(s, "outbox")["outbox"]
        assert unnotified_red_projects(s, few) == []
        assert rows_read(s, "outbox")["outbox"] - before <= 2 * len(few)
        event.listen(rt.engine, "before_cursor_execute", count)
        try:
            missing = unnotified_red_projects(s, list(range(1, reserve + 1)))
        finally:
            event.remove(rt.engine, "before_cursor_execute", count)
    assert missing == list(range(1, 701))
    assert len(statements) == 1, statements


def test_re_writing_some_flags_probes_them_by_key(runtimes) -> None:
    """Changed flags already stored are updated through the key, not found by scanning every stored
    flag (the planner knows nothing of the staging table they come from; PostgreSQL, rows counted in
    the transaction around the write alone)."""
    from pipeline.reflag import evaluate_scope, lock_ids, write_flags
    from pipeline.snapshot import Scope

    rt = runtimes("postgres")
    reserve = 20_000
    base = row(1, as_of=date(2024, 11, 30))
    rt.apply_delivered(record(rt, [base.__class__(**{**base.__dict__, "code": code(n)})
                                   for n in range(1, reserve + 1)]))
    some = list(range(reserve - 299, reserve + 1))
    with session_scope(rt.session_factory) as s:
        s.execute(text("UPDATE project_flags SET update_id = NULL WHERE project_id >= :first"),
                  {"first": some[0]})  # stored flags the re-flag must write again (their report differs)
    with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))

    with session_scope(rt.session_factory) as s:
        lock_ids(s, some)
        evaluated = evaluate_scope(s, Scope.of_ids(s, some), D, scheme=rt.scheme, stored=True)
        before = rows_read(s, "project_flags")["project_flags"]
        outcome = write_flags(s, evaluated, as_of=D, scheme=rt.scheme, clock=rt.clock, cause="update")
        written = rows_read(s, "project_flags")["project_flags"] - before
    assert outcome.changed == len(some)
    assert written <= 2 * len(some), written  # each flag found once by its key, not 20,000 read


def test_postgres_sessions_compile_no_statement_and_wait_within_their_limits(runtimes) -> None:
    rt = runtimes("postgres", db_statement_timeout=600, db_lock_timeout=7)
    with rt.engine.connect() as conn:
        assert conn.scalar(text("SHOW jit")) == "off"  # compiling a chunk's statement costs more than it saves
        assert conn.scalar(text("SHOW lock_timeout")) == "7s"
        assert conn.scalar(text("SHOW statement_timeout")) == "10min"


def test_a_reserve_of_one_chunk_size_is_one_chunk(runtimes) -> None:
    """Ids count from 1: 100 projects in chunks of 100 are one chunk task, not a full one and one of
    a single project (each chunk costs its own reads, lock and bookkeeping)."""
    from pipeline.reflag import chunk_scope, reserve_chunks

    rt = runtimes("sqlite")
    apply_inline(rt, [record(rt, [row(n, as_of=D) for n in range(1, 101)])])
    with session_scope(rt.session_factory) as s:
        assert reserve_chunks(s, 100) == [0]
        scope = chunk_scope(0, 100)
        ids = s.scalars(select(Project.id).where(text(scope.where("projects.id")).bindparams(**scope.params))).all()
        assert len(ids) == 100
        assert reserve_chunks(s, 40) == [0, 1, 2]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_units_master_data_wait_for_the_office(backend: str, runtimes) -> None:
    rt = runtimes(backend)
    rt.apply_delivered(record(rt, [row(1, as_of=date(2024, 10, 31)), row(2, as_of=date(2024, 10, 31))]))
    with session_scope(rt.session_factory) as s:
        unit_id = s.scalar(select(Unit.id).where(Unit.name == "荆州区人民政府"))
    progress_only = [
        row(1, as_of=date(2024, 11, 30), ytd_completed=Decimal("11000"), leader="李四", name="改过的名字",
            total_investment=Decimal("60000")),
        row(2, as_of=date(2024, 11, 30), ytd_completed=Decimal("11000")),  # the same master data: nothing held
        row(9, as_of=date(2024, 11, 30)),  # not in the reserve: refused, with the reason
    ]
    result = rt.apply_delivered(record(rt, progress_only, unit_id=unit_id, submitted_by="荆州区人民政府"))
    assert result is not None and result.rejected == 1
    with session_scope(rt.session_factory) as s:
        project = s.scalar(select(Project).where(Project.code == code(1)))
        leader = s.scalar(select(Leader.name).where(Leader.id == project.leader_id))
        assert (project.name, project.total_investment, leader) == ("测试项目1", Decimal("50000"), "王建国")
        requests = {c.field: (c.current_value, c.proposed_value, c.status)
                    for c in s.scalars(select(ChangeRequest).where(ChangeRequest.project_id == project.id))}
        assert set(requests) == {"name", "leader", "total_investment"}
        assert requests["name"] == ("测试项目1", "改过的名字", "pending")
        assert requests["leader"] == ("王建国", "李四", "pending")
        assert Decimal(requests["total_investment"][1]) == Decimal("60000")
        assert s.scalar(select(func.count()).select_from(ChangeRequest)) == 3
        ytd = s.scalar(text("SELECT s.ytd_completed FROM project_states s JOIN projects p ON p.id = s.project_id "
                            "WHERE p.code = :c"), {"c": code(1)})
        assert Decimal(str(ytd)) == Decimal("11000")  # the progress applied
        refused = s.scalar(select(StatusUpdate).where(StatusUpdate.project_code == code(9)))
        assert refused.status == "rejected" and "项目库中没有" in refused.note
        assert s.scalar(select(func.count()).select_from(Project)) == 2


def test_a_second_delivery_of_a_batch_being_applied_is_left_to_the_first_and_counts_nothing(runtimes) -> None:
    rt = runtimes("postgres")
    batch = record(rt, [r for r in backlog(200)[0]])
    start = threading.Barrier(2)
    results: list[Any] = []

    def deliver() -> None:
        start.wait()
        results.append(rt.apply_delivered(batch))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert sorted(r is None for r in results) == [False, True]
    with session_scope(rt.session_factory) as s:
        assert s.scalar(select(ImportBatch.attempts).where(ImportBatch.id == batch)) == 1


def test_the_embedded_worker_applies_a_backlog_and_a_lost_batch(runtimes) -> None:
    rt = runtimes("sqlite")
    ids = [record(rt, rows) for rows in backlog(10)]
    apply_inline(rt, ids[-1:])  # only the last was handed on: the others are found waiting too
    with session_scope(rt.session_factory) as s:
        assert set(s.scalars(select(ImportBatch.status))) == {"applied"}
    assert last_month_end(D + timedelta(days=3)) == D


def two_workers(pools, rt: Runtime, redis_url: str, tmp_path: Path,  # type: ignore[no-untyped-def]
                **more: str) -> dict[str, str]:
    """Two real worker processes on ``rt``'s database, chunks of 100 ids, tasks from Redis, ``more``
    in their environment; that environment."""
    from tests.test_worker_faults import pipeline_env

    env = {**pipeline_env(rt.settings.effective_database_url, redis_url, tmp_path / "data"),
           "PIPELINE_REFLAG_CHUNK_SIZE": "100", "PIPELINE_AS_OF": D.isoformat(), **more}
    pool = pools(env)
    pool.start("w1")
    pool.start("w2")
    return env


def test_a_parallel_run_on_two_workers_ends_as_one_in_process(tmp_path: Path, runtimes, redis_url: str,
                                                              workers) -> None:
    """The nightly run split into chunk tasks that two real worker processes take from Redis ends
    exactly where the same run in one process ends (flags, month flags and history)."""
    import os
    import subprocess
    import sys
    import time

    later = date(2025, 1, 20)
    ends = []
    for parallel in (False, True):
        rt = runtimes("postgres", reflag_chunk_size=100, broker_url=redis_url if parallel else None)
        for rows in backlog(350):
            rt.apply_delivered(record(rt, rows))
        if not parallel:
            rt.reflag_reserve(as_of=later)
        else:
            env = two_workers(workers, rt, redis_url, tmp_path)
            started = subprocess.run([sys.executable, "-m", "pipeline", "reflag", "--parallel", "--as-of",
                                      later.isoformat()], env=env, capture_output=True, text=True, timeout=120)
            assert started.returncode == 0, started.stderr
            assert "已分为 4 块" in started.stdout
            deadline = time.monotonic() + 240
            while True:
                with rt.engine.connect() as conn:
                    status = conn.scalar(text("SELECT status FROM reflag_runs ORDER BY id DESC LIMIT 1"))
                    workers_seen = conn.scalar(text("SELECT count(*) FROM reflag_chunks"))
                if status == "done":
                    break
                assert time.monotonic() < deadline, f"run not done ({workers_seen} chunks written)"
                time.sleep(0.5)
            assert os.environ.get("PIPELINE_BROKER_URL") is None
        picture = state(rt)
        with rt.engine.connect() as conn:
            picture["history"] = [tuple(map(str, r)) for r in conn.execute(text(
                "SELECT p.code, h.old_effective, h.new_effective, h.as_of, h.cause FROM flag_history h "
                "JOIN projects p ON p.id = h.project_id ORDER BY p.code, h.id"))]
        ends.append(picture)
    assert ends[0]["history"] and any(h[3] == later.isoformat() for h in ends[0]["history"])
    assert ends[1] == ends[0]


def test_a_review_handed_to_two_workers_plans_what_one_process_plans(tmp_path: Path, runtimes, redis_url: str,
                                                                      workers) -> None:
    """At province scale (a broker, a reserve of more than one chunk) the scheduler's tick hands a
    due review's digests to the workers: two real worker processes gather its chunks from Redis,
    the one that completes the set divides the rendering, and the parts (the office's digest, the
    leaders') render on either worker exactly the messages that planning in one process gives;
    the next tick does not start the review again."""
    import time
    from dataclasses import replace
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from pipeline.alerts.planning import DigestPlanning, plan_review
    from pipeline.alerts.scheduler import ReviewScheduler
    from pipeline.models import DigestRun, OutboxAttachment

    review = date(2024, 12, 31)  # its digest goes on 2024-12-24, compared with 2024-10-24
    now = datetime(2024, 12, 24, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    planned = []
    for parallel in (False, True):
        rt = runtimes("postgres", reflag_chunk_size=100, broker_url=redis_url if parallel else None, now=now)
        for rows in backlog(350):  # three leaders, two of them with an address
            rt.apply_delivered(record(rt, [replace(r, leader=f"领导{int(r.code[-3:]) % 3}") for r in rows]))
        with session_scope(rt.session_factory) as s:
            s.execute(text("UPDATE leaders SET email = 'lead' || id || '@jingzhou.gov.cn' WHERE name <> '领导0'"))
        if not parallel:
            with session_scope(rt.session_factory) as s:
                assert plan_review(s, review=review, calendar=rt.review_calendar, current=D,
                                   ctx=rt.alert_context()) == 3  # the office's and two leaders'
        else:
            two_workers(workers, rt, redis_url, tmp_path, PIPELINE_NOW=now.isoformat())
            scheduler = ReviewScheduler(rt, hand_over=lambda: None)
            assert scheduler.tick().digests.started == (review,)
            deadline = time.monotonic() + 240
            while True:
                with session_scope(rt.session_factory) as s:
                    run = s.get(DigestRun, review)
                    if run.status == "done":
                        assert (run.chunks, run.done_chunks, run.done_parts) == (4, 4, 2)
                        break
                assert time.monotonic() < deadline, f"digests not planned ({run.done_chunks} of {run.chunks} chunks)"
                time.sleep(0.5)
            assert scheduler.tick().digests == DigestPlanning()  # nothing more to start or plan
        with session_scope(rt.session_factory) as s:
            messages = {}
            for message in s.scalars(select(OutboxMessage).where(OutboxMessage.review_date == review)
                                     .order_by(OutboxMessage.key)):  # the digests (the tick also plans red notices)
                attached = {a.filename: {k: v.rows() for k, v in pl.read_excel(a.content, sheet_id=0,
                                                                                 engine="calamine").items()}
                            for a in s.scalars(select(OutboxAttachment).where(OutboxAttachment.message_id == message.id))}
                messages[message.key] = (message.recipient, message.subject, message.body_text, message.body_html,
                                         attached)
            planned.append(messages)
    alone, on_workers = planned
    assert [k.split(":")[0] for k in alone] == ["leader_digest", "leader_digest", "office_digest"]
    assert all("红牌" in m[2] for m in alone.values()) and all(m[4] for m in alone.values())
    assert on_workers == alone


def test_a_failed_batch_is_retried_by_command_or_by_importing_its_file_again(runtimes) -> None:
    from pipeline.errors import ActionRefused
    from pipeline.ingest.batches import retry_batch

    rt = runtimes("sqlite")

    def record_file() -> int:
        with session_scope(rt.session_factory) as s:
            return record_batch(s, source="file", filename="12月.xlsx", content_sha256="f" * 64, total_rows=1,
                                rows=[row(1)], errors=[], clock=rt.clock).batch_id

    def fail_it(batch_id: int) -> None:
        with session_scope(rt.session_factory) as s:
            s.execute(text("UPDATE import_batches SET status = 'failed', attempts = 5, error = 'x' WHERE id = :b"),
                      {"b": batch_id})

    batch = record_file()
    fail_it(batch)
    assert rt.apply_delivered(batch) is None  # a failed batch is not applied by a stray delivery
    with session_scope(rt.session_factory) as s:
        retry_batch(s, batch)
    assert rt.apply_delivered(batch).applied == 1
    with session_scope(rt.session_factory) as s, pytest.raises(ActionRefused, match="只有处理失败的批次"):
        retry_batch(s, batch)

    fail_it(batch)
    assert record_file() == batch  # the same file again: its batch, waiting once more with a fresh count
    with session_scope(rt.session_factory) as s:
        assert (s.get(ImportBatch, batch).status, s.get(ImportBatch, batch).attempts) == ("received", 0)


def test_the_sweeper_leaves_a_batch_being_applied_alone(runtimes) -> None:
    from pipeline.ingest.sweep import APPLY_LOCK_CLASS, batches_to_requeue

    rt = runtimes("postgres")
    batch = record(rt, [row(1)])
    holder = rt.engine.connect()
    holder.execute(text("SELECT pg_advisory_lock(:c, :b)"), {"c": APPLY_LOCK_CLASS, "b": batch})
    holder.commit()
    try:
        with session_scope(rt.session_factory) as s:
            assert batches_to_requeue(s, older_than=timedelta(0), clock=rt.clock) == []
    finally:
        holder.execute(text("SELECT pg_advisory_unlock(:c, :b)"), {"c": APPLY_LOCK_CLASS, "b": batch})
        holder.commit()
        holder.close()
    with session_scope(rt.session_factory) as s:
        assert batches_to_requeue(s, older_than=timedelta(0), clock=rt.clock) == [batch]


def test_the_sweeper_is_not_misled_by_a_batch_applied_in_another_database(runtimes) -> None:
    """Advisory locks are the server's: a batch of the same number being applied in another
    database (another deployment, another test run) does not hold this one back."""
    from sqlalchemy import create_engine

    from pipeline.ingest.sweep import APPLY_LOCK_CLASS, batches_to_requeue

    rt = runtimes("postgres")
    batch = record(rt, [row(1)])
    elsewhere = create_engine(rt.engine.url.set(database="postgres"))
    try:
        with elsewhere.connect() as holder:
            holder.execute(text("SELECT pg_advisory_lock(:c, :b)"), {"c": APPLY_LOCK_CLASS, "b": batch})
            with session_scope(rt.session_factory) as s:
                assert batches_to_requeue(s, older_than=timedelta(0), clock=rt.clock) == [batch]
            holder.execute(text("SELECT pg_advisory_unlock(:c, :b)"), {"c": APPLY_LOCK_CLASS, "b": batch})
    finally:
        elsewhere.dispose()
