"""The office's change requests (SPEC §3): a unit's master data wait; approving applies them (and
re-flags, moves the project between leaders' digests, writes the audit log) once; rejecting keeps
the reserve; a request the reserve has moved past is refused. On SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from pipeline.alerts.content import gather_leader_digest, load_flagged
from pipeline.audit import AuditAction, AuditFilter, audit_page
from pipeline.change_requests import ChangeFilter, approve, list_requests, pending_count, reject
from pipeline.db import session_scope
from pipeline.errors import ActionRefused
from pipeline.ingest.record import record_batch
from pipeline.models import AuditEntry, ChangeRequest, Leader, Project, ProjectFlag, ProjectList, ProjectState, Unit
from pipeline.runtime import Runtime
from tests.factories import ACTOR, code, row

D = date(2024, 12, 31)
UNIT = "荆州区人民政府"


def record(rt: Runtime, rows: list[Any], **extra: Any) -> int:
    with session_scope(rt.session_factory) as s:
        return record_batch(s, source="file", filename=None, content_sha256=None, total_rows=len(rows), rows=rows,
                            errors=[], clock=rt.clock, **extra).batch_id


def office_import(rt: Runtime, *rows: Any) -> None:
    rt.apply_delivered(record(rt, list(rows)))


def unit_update(rt: Runtime, *rows: Any) -> None:
    with session_scope(rt.session_factory) as s:
        unit_id = s.scalar(select(Unit.id).where(Unit.name == UNIT))
    rt.apply_delivered(record(rt, list(rows), unit_id=unit_id, submitted_by=UNIT))


def progress_only(n: int, **fields: Any) -> Any:
    """A unit's row that leaves every master-data column out."""
    master = dict(name=None, county=None, industry=None, lists=(), nature=None, total_investment=None,
                  annual_plan=None, planned_start=None, planned_completion=None, leader=None, unit=None)
    return replace(row(n, as_of=date(2024, 11, 30)), **{**master, **fields})


def requests(rt: Runtime, **f: Any) -> dict[str, Any]:
    with session_scope(rt.session_factory) as s:
        return {r.field: r for r in list_requests(s, ChangeFilter(**f), tz=rt.clock.tz).rows}


def project(rt: Runtime, n: int = 1) -> dict[str, Any]:
    with session_scope(rt.session_factory) as s:
        p = s.scalar(select(Project).where(Project.code == code(n)))
        state = s.get(ProjectState, p.id)
        return {"name": p.name, "county": p.county, "total_investment": p.total_investment,
                "leader": s.scalar(select(Leader.name).where(Leader.id == p.leader_id)),
                "lists": sorted(s.scalars(select(ProjectList.list_name).where(ProjectList.project_id == p.id))),
                "annual_plan": state.annual_plan, "ytd": state.ytd_completed,
                "flag": s.scalar(select(ProjectFlag.effective_color).where(ProjectFlag.project_id == p.id))}


def approve_ids(rt: Runtime, *ids: int, **kw: Any) -> Any:
    with session_scope(rt.session_factory) as s:
        return approve(s, ids, actor=ACTOR, clock=rt.clock, reflag=rt.reflag_projects, **kw)


def reject_ids(rt: Runtime, *ids: int, note: str = "与批复文件不符") -> Any:
    with session_scope(rt.session_factory) as s:
        return reject(s, ids, actor=ACTOR, clock=rt.clock, note=note)


def digest_codes_of(rt: Runtime, name: str) -> list[str]:
    """The projects of the leader's digest (SPEC §6), as its planning selects them."""
    with session_scope(rt.session_factory) as s:
        leader_id = s.scalar(select(Leader.id).where(Leader.name == name))
        if leader_id is None:
            return []
        digest = gather_leader_digest(s, leader_id=leader_id, review_date=D, as_of=D, previous_review=None,
                                      scheme=rt.scheme, link_base="http://x")
        codes = [p.code for p in load_flagged(s, where=[Project.leader_id == leader_id], scheme=rt.scheme,
                                              link_base="http://x")]
        c = digest.counts
        assert c.red + c.yellow + c.green == len(codes)
        return sorted(codes)


@pytest.fixture
def rt(any_runtime: Runtime) -> Runtime:
    office_import(any_runtime, row(1, as_of=date(2024, 10, 31)), row(2, as_of=date(2024, 10, 31)))
    return any_runtime


def test_a_unit_changing_leader_and_county_leaves_the_project_and_holds_two_requests(rt: Runtime) -> None:
    unit_update(rt, row(1, as_of=date(2024, 11, 30), leader="李四", county="沙市区", ytd_completed=Decimal("9000")))
    after = project(rt)
    assert (after["leader"], after["county"], after["ytd"]) == ("王建国", "荆州区", Decimal("9000"))
    held = requests(rt, status="pending")
    assert set(held) == {"leader", "county"}
    assert (held["leader"].current_value, held["leader"].proposed_value) == ("王建国", "李四")
    assert (held["county"].current_value, held["county"].proposed_value) == ("荆州区", "沙市区")
    assert held["leader"].unit == UNIT and not held["leader"].stale
    with session_scope(rt.session_factory) as s:
        assert pending_count(s) == 2
    assert digest_codes_of(rt, "王建国") == [code(1), code(2)]


def test_approving_moves_the_project_to_the_new_leaders_digest_with_an_audit_entry(rt: Runtime) -> None:
    unit_update(rt, row(1, as_of=date(2024, 11, 30), leader="李四", county="沙市区"))
    held = requests(rt, status="pending")
    decision = approve_ids(rt, held["leader"].id, held["county"].id)
    assert sorted(decision.decided) == sorted([held["leader"].id, held["county"].id])
    after = project(rt)
    assert (after["leader"], after["county"]) == ("李四", "沙市区")
    assert digest_codes_of(rt, "李四") == [code(1)]
    assert digest_codes_of(rt, "王建国") == [code(2)]
    with session_scope(rt.session_factory) as s:
        decided = {c.field: c for c in s.scalars(select(ChangeRequest))}
        assert {c.status for c in decided.values()} == {"approved"}
        assert all(c.decided_by == ACTOR.name and c.decided_at is not None for c in decided.values())
        entries = s.scalars(select(AuditEntry).where(AuditEntry.action == AuditAction.CHANGE_APPROVED.value)).all()
        assert sorted((e.target, e.actor, e.detail["field"], e.detail["current"], e.detail["proposed"])
                      for e in entries) == [(code(1), "tester", "包保领导", "王建国", "李四"),
                                            (code(1), "tester", "县市区", "荆州区", "沙市区")]
        assert pending_count(s) == 0
        today = rt.clock.now().date()  # the audit page finds them by their local day, like the ORM's own rows
        found = audit_page(s, AuditFilter(action=AuditAction.CHANGE_APPROVED, date_from=today, date_to=today),
                           tz=rt.clock.tz)
        assert found.total == 2 and all(e.at is not None for e in found.entries)


def test_rejecting_leaves_the_project_and_keeps_the_note(rt: Runtime) -> None:
    unit_update(rt, row(1, as_of=date(2024, 11, 30), leader="李四"))
    held = requests(rt)["leader"]
    with pytest.raises(ActionRefused, match="驳回理由"):
        reject_ids(rt, held.id, note="  ")
    decision = reject_ids(rt, held.id)
    assert decision.decided == (held.id,)
    assert project(rt)["leader"] == "王建国"
    assert digest_codes_of(rt, "李四") == []
    rejected = requests(rt, status="rejected")["leader"]
    assert (rejected.status_name, rejected.decided_by, rejected.note) == ("已驳回", "tester", "与批复文件不符")
    assert reject_ids(rt, held.id).decided == ()  # again: nothing more
    with pytest.raises(ActionRefused, match="已驳回，不能再批准"):
        approve_ids(rt, held.id)
    assert project(rt)["leader"] == "王建国"


def test_a_stale_request_is_refused(rt: Runtime) -> None:
    unit_update(rt, row(1, as_of=date(2024, 11, 30), leader="李四"))
    held = requests(rt)["leader"]
    office_import(rt, row(1, as_of=date(2024, 12, 31), leader="赵六"))  # the office changed it since
    assert requests(rt)["leader"].stale
    with pytest.raises(ActionRefused, match=r"已过期：项目 .* 的包保领导现为“赵六”，申请时为“王建国”"):
        approve_ids(rt, held.id)
    assert project(rt)["leader"] == "赵六"
    with session_scope(rt.session_factory) as s:
        assert s.get(ChangeRequest, held.id).status == "pending"


def test_approving_twice_applies_once(rt: Runtime) -> None:
    unit_update(rt, row(1, as_of=date(2024, 11, 30), total_investment=Decimal("60000")))
    held = requests(rt)["total_investment"]
    assert held.current_shown == "50000" and held.proposed_shown == "60000"
    assert approve_ids(rt, held.id).decided == (held.id,)
    again = approve_ids(rt, held.id)
    assert (again.decided, again.unchanged) == ((), (held.id,))
    assert project(rt)["total_investment"] == Decimal("60000")
    with session_scope(rt.session_factory) as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)
                        .where(AuditEntry.action == AuditAction.CHANGE_APPROVED.value)) == 1
    with pytest.raises(ActionRefused, match="已批准，不能再驳回"):
        reject_ids(rt, held.id)


def test_two_requests_for_one_field_cannot_both_be_approved(rt: Runtime) -> None:
    unit_update(rt, row(1, as_of=date(2024, 11, 30), leader="李四"))
    unit_update(rt, row(1, as_of=date(2024, 12, 31), leader="钱七"))
    with session_scope(rt.session_factory) as s:
        ids = [r.id for r in list_requests(s, tz=rt.clock.tz).rows]
    with pytest.raises(ActionRefused, match="多条申请"):
        approve_ids(rt, *ids)
    first, second = sorted(ids)
    approve_ids(rt, second)
    with pytest.raises(ActionRefused, match="已过期"):  # the other one was asked against 王建国
        approve_ids(rt, first)
    assert project(rt)["leader"] == "钱七"


def test_unknown_and_out_of_range_ids_are_refused(rt: Runtime) -> None:
    for ids in ([999], [2**63], [0], []):
        with pytest.raises(ActionRefused):
            approve_ids(rt, *ids)


def test_progress_only_rows_apply_without_requests(rt: Runtime) -> None:
    unit_update(rt, progress_only(1, ytd_completed=Decimal("9500"), cumulative_completed=Decimal("26500")))
    after = project(rt)
    assert after["ytd"] == Decimal("9500")
    assert (after["leader"], after["county"], after["lists"]) == ("王建国", "荆州区", ["亿元以上项目"])
    with session_scope(rt.session_factory) as s:
        assert s.scalar(select(func.count()).select_from(ChangeRequest)) == 0


def test_lists_are_held_and_approved_into_the_memberships(rt: Runtime) -> None:
    unit_update(rt, progress_only(1, lists=("省市重点项目", "亿元以上项目")))
    held = requests(rt)["lists"]
    assert held.current_shown == "亿元以上项目" and set(held.proposed_value.split(";")) == {"省市重点项目", "亿元以上项目"}
    assert project(rt)["lists"] == ["亿元以上项目"]
    approve_ids(rt, held.id)
    assert project(rt)["lists"] == sorted(["省市重点项目", "亿元以上项目"])
    unit_update(rt, progress_only(1, as_of=date(2024, 12, 31), lists=("亿元以上项目", "省市重点项目")))  # same, reordered
    with session_scope(rt.session_factory) as s:
        assert s.scalar(select(func.count()).select_from(ChangeRequest)) == 1


def test_approving_a_field_the_rules_read_re_flags_the_project(rt: Runtime) -> None:
    unit_update(rt, progress_only(1, ytd_completed=Decimal("11000"), annual_plan=Decimal("40000")))
    assert project(rt)["flag"] == "green"
    held = requests(rt)["annual_plan"]
    decision = approve_ids(rt, held.id)
    assert decision.outcome is not None and decision.outcome.evaluated == 1
    after = project(rt)
    assert (after["annual_plan"], after["flag"]) == (Decimal("40000"), "red")  # 11000 of 40000 by year end


def test_two_offices_approving_at_once_apply_once(pg_url: str, tmp_path: Any) -> None:
    import threading

    from tests.conftest import make_runtime

    rt = make_runtime(tmp_path, database_url=pg_url, as_of=D)
    try:
        office_import(rt, row(1, as_of=date(2024, 10, 31)))
        unit_update(rt, row(1, as_of=date(2024, 11, 30), leader="李四"))
        held = requests(rt)["leader"]
        start = threading.Barrier(2)
        results: list[Any] = []

        def decide() -> None:
            start.wait()
            results.append(approve_ids(rt, held.id))

        threads = [threading.Thread(target=decide) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert sorted(r.decided for r in results) == [(), (held.id,)]
        with session_scope(rt.session_factory) as s:
            assert s.scalar(select(func.count()).select_from(AuditEntry)
                            .where(AuditEntry.action == AuditAction.CHANGE_APPROVED.value)) == 1
    finally:
        rt.dispose()
