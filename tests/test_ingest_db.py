"""Recording and applying updates: exactly once, whatever order or how many times they arrive."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import func, select

from pipeline.db import session_scope
from pipeline.ingest.apply import apply_batch
from pipeline.ingest.record import record_batch
from pipeline.ingest.template import RowError
from pipeline.models import (
    FlagChange,
    ImportBatch,
    Leader,
    Project,
    ProjectFlag,
    ProjectList,
    ProjectState,
    RejectedRow,
    StatusUpdate,
)
from pipeline.runtime import Runtime
from tests.factories import code, row


def record(rt: Runtime, rows, *, sha: str | None = None, errors=()) -> int:
    with session_scope(rt.session_factory) as s:
        return record_batch(
            s, source="file", filename="t.xlsx", content_sha256=sha, total_rows=len(rows) + len(errors),
            rows=rows, errors=list(errors), clock=rt.clock,
        ).batch_id


def apply(rt: Runtime, batch_id: int):
    with session_scope(rt.session_factory) as s:
        return apply_batch(s, batch_id, clock=rt.clock, touched=rt.after_apply)


def count(rt: Runtime, model) -> int:
    with session_scope(rt.session_factory) as s:
        return s.scalar(select(func.count()).select_from(model))


def state_of(rt: Runtime, n: int):
    with session_scope(rt.session_factory) as s:
        return s.execute(
            select(ProjectState).join(Project, Project.id == ProjectState.project_id).where(Project.code == code(n))
        ).scalar_one()


def flag_of(rt: Runtime, n: int) -> ProjectFlag:
    with session_scope(rt.session_factory) as s:
        return s.execute(
            select(ProjectFlag).join(Project, Project.id == ProjectFlag.project_id).where(Project.code == code(n))
        ).scalar_one()


def test_a_batch_lands_with_projects_state_lists_leaders_and_flags(any_runtime: Runtime) -> None:
    rt = any_runtime
    bid = record(rt, [row(1), row(2, lists=("亿元以上项目", "省市重点项目"), leader="李明")])
    result = apply(rt, bid)
    assert (result.applied, result.superseded) == (2, 0)
    assert count(rt, Project) == 2 and count(rt, ProjectState) == 2 and count(rt, ProjectFlag) == 2
    assert count(rt, ProjectList) == 3
    with session_scope(rt.session_factory) as s:
        assert sorted(s.scalars(select(Leader.name))) == sorted(["王建国", "李明"])
        batch = s.get(ImportBatch, bid)
        assert batch.status == "applied" and batch.applied_rows == 2
    # Evaluated as of 2024-12-31 from a March report: 275 days without an update → red STALE.
    flag = flag_of(rt, 1)
    assert flag.effective_color == "red"
    assert "STALE" in [r["code"] for r in flag.reasons]
    assert flag.scheme == "jingzhou-2024" and flag.scheme_version >= 1


def test_applying_twice_changes_nothing(any_runtime: Runtime) -> None:
    rt = any_runtime
    bid = record(rt, [row(1), row(2)])
    apply(rt, bid)
    again = apply(rt, bid)
    assert again.already_done
    assert count(rt, StatusUpdate) == 2 and count(rt, FlagChange) == 2


def test_the_same_file_twice_is_one_batch(any_runtime: Runtime) -> None:
    rt = any_runtime
    first = record(rt, [row(1)], sha="a" * 64)
    second = record(rt, [row(1)], sha="a" * 64)
    assert first == second
    assert count(rt, ImportBatch) == 1 and count(rt, StatusUpdate) == 1


def test_the_same_rows_in_another_file_land_once(any_runtime: Runtime) -> None:
    rt = any_runtime
    apply(rt, record(rt, [row(1), row(2)], sha="a" * 64))
    bid = record(rt, [row(1), row(2), row(3)], sha="b" * 64)
    with session_scope(rt.session_factory) as s:
        batch = s.get(ImportBatch, bid)
        assert (batch.accepted_rows, batch.duplicate_rows) == (1, 2)
    apply(rt, bid)
    assert count(rt, StatusUpdate) == 3 and count(rt, Project) == 3


def test_the_newest_report_s_lists_replace_the_project_s_and_a_repeat_rewrites_nothing(any_runtime: Runtime) -> None:
    rt = any_runtime

    def project_row() -> tuple[list[str], object]:
        with session_scope(rt.session_factory) as s:
            project = s.scalar(select(Project).where(Project.code == code(1)))
            return sorted(s.scalars(select(ProjectList.list_name).where(ProjectList.project_id == project.id))), \
                project.updated_at

    apply(rt, record(rt, [row(1, as_of=date(2024, 10, 31), lists=("亿元以上项目", "省市重点项目"))]))
    apply(rt, record(rt, [row(1, as_of=date(2024, 11, 30), lists=("省市重点项目", "重大基础设施项目"),
                             name="测试项目1（二期）")]))
    lists, changed_at = project_row()
    assert lists == ["省市重点项目", "重大基础设施项目"]
    # December repeats November's master data and lists: the project's row is left as it was.
    apply(rt, record(rt, [row(1, as_of=date(2024, 12, 31), lists=("重大基础设施项目", "省市重点项目"),
                             name="测试项目1（二期）", ytd_completed=Decimal("9000"))]))
    assert project_row() == (lists, changed_at)
    assert state_of(rt, 1).ytd_completed == Decimal("9000")
    apply(rt, record(rt, [row(1, as_of=date(2024, 12, 31), lists=(), name="测试项目1（二期）",
                             ytd_completed=Decimal("9500"))]))  # the same 报告期 recorded later wins
    assert project_row()[0] == []


def test_an_older_update_is_kept_but_does_not_overwrite(any_runtime: Runtime) -> None:
    rt = any_runtime
    apply(rt, record(rt, [row(1, as_of=date(2024, 6, 30), ytd_completed=Decimal("6000"), name="新名称")]))
    result = apply(rt, record(rt, [row(1, as_of=date(2024, 5, 31), ytd_completed=Decimal("5000"))]))
    assert (result.applied, result.superseded) == (1, 1)  # merged into the history; not the current state
    state = state_of(rt, 1)
    assert state.as_of == date(2024, 6, 30) and state.ytd_completed == Decimal("6000")
    with session_scope(rt.session_factory) as s:
        assert s.scalar(select(Project.name)) == "新名称"
        statuses = sorted(s.scalars(select(StatusUpdate.status)))
    # Both are applied (kept in the history); which one is the current state is the state's choice.
    assert statuses == ["applied", "applied"]


def test_order_of_arrival_does_not_change_the_end_state(tmp_path) -> None:
    from tests.conftest import make_runtime

    reports = [row(1, as_of=date(2024, m, 28), ytd_completed=Decimal(m * 1000)) for m in (9, 10, 11, 12)]
    ends = []
    for i, order in enumerate(([0, 1, 2, 3], [3, 1, 0, 2])):
        rt = make_runtime(tmp_path / str(i), as_of=date(2024, 12, 31))
        for k in order:
            apply(rt, record(rt, [reports[k]]))
        state, flag = state_of(rt, 1), flag_of(rt, 1)
        ends.append((state.as_of, state.ytd_completed, flag.computed_color, flag.reasons))
        rt.dispose()
    assert ends[0] == ends[1]


def test_any_delivery_applies_its_own_batch_and_a_repeat_counts_nothing(any_runtime: Runtime) -> None:
    rt = any_runtime
    first = record(rt, [row(1, as_of=date(2024, 10, 31))])
    second = record(rt, [row(1, as_of=date(2024, 11, 30))])
    # The task for the second batch arrives first: it applies its own batch; the newest report wins.
    assert rt.apply_delivered(second).batch_id == second
    assert state_of(rt, 1).as_of == date(2024, 11, 30)
    assert rt.apply_delivered(first).batch_id == first
    assert state_of(rt, 1).as_of == date(2024, 11, 30)
    assert rt.apply_delivered(first) is None  # delivered again: nothing to do, nothing counted
    with session_scope(rt.session_factory) as s:
        assert [b.attempts for b in s.scalars(select(ImportBatch).order_by(ImportBatch.id))] == [1, 1]


def test_rejected_rows_are_kept_with_row_header_and_message(any_runtime: Runtime) -> None:
    rt = any_runtime
    err = RowError(row_number=3, header="总投资（万元）", raw_value="-5", message="总投资必须大于0")
    bid = record(rt, [row(1)], errors=[err])
    apply(rt, bid)
    with session_scope(rt.session_factory) as s:
        rejected = s.scalars(select(RejectedRow)).one()
        assert (rejected.row_number, rejected.header, rejected.raw_value) == (3, "总投资（万元）", "-5")
        assert s.get(ImportBatch, bid).rejected_rows == 1
    assert count(rt, Project) == 1


def test_reflag_writes_only_what_changed(any_runtime: Runtime) -> None:
    rt = any_runtime
    apply(rt, record(rt, [row(n, as_of=date(2024, 12, 31)) for n in range(1, 6)]))
    again = rt.reflag_reserve()
    assert again.evaluated == 5 and again.changed == 0 and again.recoloured == 0
    history_before = count(rt, FlagChange)
    # Behind pace (red) on 2024-12-31; in January the pace rule does not apply yet: all turn green.
    later = rt.reflag_reserve(as_of=date(2025, 1, 20))
    assert later.by_color == {"green": 5}
    assert later.recoloured == 5 and count(rt, FlagChange) == history_before + 5

    # Each history row records the change: the colours before, and the flag as stored after.
    with session_scope(rt.session_factory) as s:
        flags = {f.project_id: f for f in s.scalars(select(ProjectFlag))}
        newest = s.scalars(select(FlagChange).order_by(FlagChange.id.desc()).limit(5)).all()
        for h in newest:
            f = flags[h.project_id]
            assert (h.old_computed, h.old_effective) == ("red", "red")
            assert (h.new_computed, h.new_effective, h.reasons) == (f.computed_color, f.effective_color, f.reasons)
            assert (h.scheme, h.scheme_version, h.as_of, h.cause) == (f.scheme, f.scheme_version, date(2025, 1, 20),
                                                                      "reflag")
            assert h.changed_at == f.evaluated_at
    assert {h.project_id for h in newest} == set(flags)


def test_sqlite_keeps_json_as_utf8_text(sqlite_runtime: Runtime) -> None:
    """Reasons and lists are stored as readable UTF-8, not as \\u escapes (half the bytes)."""
    from sqlalchemy import text

    rt = sqlite_runtime
    late = row(1, nature="新开工", planned_start=date(2024, 1, 1), actual_start=None, stats_included_on=None,
               cumulative_completed=Decimal(0), ytd_completed=Decimal(0))
    apply(rt, record(rt, [late]))
    with rt.engine.connect() as conn:
        reasons = conn.scalar(text("SELECT reasons FROM project_flags"))
        month = conn.scalar(text("SELECT reasons FROM month_flags WHERE month_end = '2024-12-31'"))
        lists = conn.scalar(text("SELECT lists FROM status_updates"))
    assert "逾期" in reasons and "\\u" not in reasons
    assert "逾期" in month and "\\u" not in month
    assert "亿元以上项目" in lists and "\\u" not in lists
