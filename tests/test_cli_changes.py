"""`pipeline changes` as the office runs it: list (table and JSON), approve, reject, refusals."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from pipeline.db import session_scope
from pipeline.models import AuditEntry, Leader, Project
from pipeline.runtime import set_runtime
from tests.cli_helpers import clean_env, pipeline
from tests.conftest import make_runtime
from tests.factories import code, row
from tests.test_change_requests import office_import, unit_update
from tests.test_cli_screen import modules_after

D = date(2024, 12, 31)


def _reserve(tmp_path: Path) -> dict[str, str]:
    """Two projects; the unit asks to change project 1's leader and total investment."""
    rt = make_runtime(tmp_path, as_of=D)
    try:
        office_import(rt, row(1, as_of=date(2024, 10, 31)), row(2, as_of=date(2024, 10, 31)))
        unit_update(rt, row(1, as_of=date(2024, 11, 30), leader="李四", total_investment=Decimal("60000")))
    finally:
        rt.dispose()
        set_runtime(None)
    return clean_env(tmp_path / "data", PIPELINE_AS_OF="2024-12-31")


def _leader(tmp_path: Path) -> str:
    rt = make_runtime(tmp_path, as_of=D)
    try:
        with session_scope(rt.session_factory) as s:
            p = s.scalar(select(Project).where(Project.code == code(1)))
            return s.scalar(select(Leader.name).where(Leader.id == p.leader_id))
    finally:
        rt.dispose()
        set_runtime(None)


def test_the_office_lists_approves_and_rejects_on_the_command_line(tmp_path: Path) -> None:
    env = _reserve(tmp_path)
    listed = pipeline(env, "changes", "--status", "pending", "--json")
    assert listed.returncode == 0, listed.stderr
    held = {r["field"]: r for r in map(json.loads, listed.stdout.splitlines())}
    assert set(held) == {"leader", "total_investment"}
    assert (held["leader"]["current"], held["leader"]["proposed"], held["leader"]["unit"]) == ("王建国", "李四",
                                                                                            "荆州区人民政府")
    table = pipeline(env, "changes").stdout
    assert "包保领导" in table and "王建国 → 李四" in table and "待审核" in table

    approved = pipeline(env, "changes", "approve", str(held["leader"]["id"]))
    assert approved.returncode == 0, approved.stderr
    assert f"已批准变更申请：{held['leader']['id']}" in approved.stdout
    assert _leader(tmp_path) == "李四"
    again = pipeline(env, "changes", "approve", str(held["leader"]["id"]))
    assert again.returncode == 0 and "此前已批准，未重复处理" in again.stdout

    no_note = pipeline(env, "changes", "reject", str(held["total_investment"]["id"]))
    assert no_note.returncode == 2 and "--note" in no_note.stderr
    rejected = pipeline(env, "changes", "reject", str(held["total_investment"]["id"]), "--note", "以批复为准")
    assert rejected.returncode == 0 and "已驳回变更申请" in rejected.stdout
    late = pipeline(env, "changes", "approve", str(held["total_investment"]["id"]))
    assert late.returncode == 1 and "已驳回，不能再批准" in late.stderr
    missing = pipeline(env, "changes", "approve", "99999")
    assert missing.returncode == 1 and "变更申请不存在：99999" in missing.stderr
    bad = pipeline(env, "changes", "--status", "done")
    assert bad.returncode == 2 and "状态无效" in bad.stderr
    assert len(pipeline(env, "changes", "--unit", "荆州区人民政府", "--json").stdout.splitlines()) == 2
    assert pipeline(env, "changes", "--code", code(2), "--json").stdout == ""
    unknown = pipeline(env, "changes", "--unit", "无此单位")
    assert unknown.returncode == 2 and "未知的责任单位" in unknown.stderr

    decided = {r["field"]: r for r in map(json.loads, pipeline(env, "changes", "--json").stdout.splitlines())}
    assert decided["leader"]["status"] == "approved" and decided["leader"]["decided_by"]
    assert (decided["total_investment"]["status"], decided["total_investment"]["note"]) == ("rejected", "以批复为准")
    rt = make_runtime(tmp_path, as_of=D)
    try:
        with session_scope(rt.session_factory) as s:
            actions = s.scalars(select(AuditEntry.action).where(AuditEntry.via == "cli")).all()
        assert sorted(actions) == ["change_approved", "change_rejected"]
    finally:
        rt.dispose()
        set_runtime(None)


def test_a_stale_request_is_refused_on_the_command_line(tmp_path: Path) -> None:
    env = _reserve(tmp_path)
    rt = make_runtime(tmp_path, as_of=D)
    try:
        office_import(rt, row(1, as_of=D, leader="赵六"))
    finally:
        rt.dispose()
        set_runtime(None)
    held = {r["field"]: r for r in map(json.loads, pipeline(env, "changes", "--json").stdout.splitlines())}
    assert held["leader"]["stale"]
    refused = pipeline(env, "changes", "approve", str(held["leader"]["id"]))
    assert refused.returncode == 1 and "已过期" in refused.stderr and "赵六" in refused.stderr
    assert "已过期" in pipeline(env, "changes").stdout


def test_changes_help_loads_no_heavy_module() -> None:
    assert modules_after("changes", "--help") == []
    assert modules_after("changes", "approve", "--help") == []
