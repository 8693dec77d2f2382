"""Overrides set a flag by hand until they expire; acknowledgements silence a red episode."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from pipeline.db import session_scope
from pipeline.errors import ActionRefused
from pipeline.models import Acknowledgement, FlagChange, Project, ProjectFlag
from pipeline.overrides import acknowledge, current_red_episode, revoke_override, set_override
from pipeline.runtime import Runtime
from tests.factories import ACTOR, code, row
from tests.test_ingest_db import apply, record


def flag(rt: Runtime, n: int = 1) -> ProjectFlag:
    with session_scope(rt.session_factory) as s:
        return s.execute(
            select(ProjectFlag).join(Project, Project.id == ProjectFlag.project_id).where(Project.code == code(n))
        ).scalar_one()


@pytest.fixture
def red_project(any_runtime: Runtime) -> Runtime:
    # A March report evaluated on 2024-12-31: stale for 275 days, red.
    apply(any_runtime, record(any_runtime, [row(1)]))
    assert flag(any_runtime).effective_color == "red"
    return any_runtime


def test_override_sets_effective_flag_and_keeps_computed(red_project: Runtime) -> None:
    rt = red_project
    with session_scope(rt.session_factory) as s:
        result = set_override(s, code=code(1), color="黄", reason="已协调解决，待下月数据", set_by="投资科张三",
                              expires_on=date(2025, 1, 31), reflag=rt.reflag_projects, clock=rt.clock, actor=ACTOR)
    f = flag(rt)
    assert (f.effective_color, f.computed_color, f.override_id) == ("yellow", "red", result.override_id)
    with session_scope(rt.session_factory) as s:
        last = s.scalars(select(FlagChange).order_by(FlagChange.id.desc())).first()
        assert (last.old_effective, last.new_effective, last.cause) == ("red", "yellow", "override")


def test_override_expires(red_project: Runtime) -> None:
    rt = red_project
    with session_scope(rt.session_factory) as s:
        set_override(s, code=code(1), color="green", reason="特殊情况", set_by="张三",
                     expires_on=date(2025, 1, 10), reflag=rt.reflag_projects, clock=rt.clock, actor=ACTOR)
    assert flag(rt).effective_color == "green"
    rt.reflag_reserve(as_of=date(2025, 1, 11))
    f = flag(rt)
    assert f.override_id is None and f.effective_color == f.computed_color


def test_revoke_override(red_project: Runtime) -> None:
    rt = red_project
    with session_scope(rt.session_factory) as s:
        set_override(s, code=code(1), color="green", reason="特殊情况", set_by="张三",
                     expires_on=date(2025, 6, 30), reflag=rt.reflag_projects, clock=rt.clock, actor=ACTOR)
    with session_scope(rt.session_factory) as s:
        revoke_override(s, code=code(1), reflag=rt.reflag_projects, clock=rt.clock, actor=ACTOR)
    assert flag(rt).effective_color == "red"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"color": "紫"}, "颜色无效"),
        ({"reason": " "}, "理由"),
        ({"set_by": ""}, "操作人"),
        ({"expires_on": date(2024, 12, 1)}, "早于评估日期"),
        ({"code": "2024-421003-44-01-999999"}, "项目代码不存在"),
    ],
)
def test_override_refusals_say_why(red_project: Runtime, kwargs: dict, message: str) -> None:
    args = {"code": code(1), "color": "green", "reason": "理由", "set_by": "张三", "expires_on": date(2025, 1, 31)}
    args.update(kwargs)
    with session_scope(red_project.session_factory) as s, pytest.raises(ActionRefused, match=message):
        set_override(s, reflag=red_project.reflag_projects, clock=red_project.clock, actor=ACTOR, **args)


def test_acknowledge_a_red_flag_once_per_episode(red_project: Runtime) -> None:
    rt = red_project
    with session_scope(rt.session_factory) as s:
        ack = acknowledge(s, code=code(1), note="已约谈责任单位", by="王建国", clock=rt.clock, actor=ACTOR)
        episode = current_red_episode(s, ack.project_id)
        assert episode is not None and ack.episode_change_id == episode.id
    with session_scope(rt.session_factory) as s, pytest.raises(ActionRefused, match="已由 王建国 确认"):
        acknowledge(s, code=code(1), note="再次确认", by="李四", clock=rt.clock, actor=ACTOR)
    # The flag itself stays red.
    assert flag(rt).effective_color == "red"
    # A new red episode (green in between) can be acknowledged again.
    rt.reflag_reserve(as_of=date(2024, 4, 1))
    assert flag(rt).effective_color != "red"
    with session_scope(rt.session_factory) as s, pytest.raises(ActionRefused, match="不是红牌"):
        acknowledge(s, code=code(1), note="x", by="李四", clock=rt.clock, actor=ACTOR)
    rt.reflag_reserve(as_of=date(2024, 12, 31))
    with session_scope(rt.session_factory) as s:
        acknowledge(s, code=code(1), note="第二次红牌", by="李四", clock=rt.clock, actor=ACTOR)
        assert len(s.scalars(select(Acknowledgement)).all()) == 2


def acknowledged(rt: Runtime, n: int = 1) -> bool:
    from pipeline.overrides import acknowledged_now

    with session_scope(rt.session_factory) as s:
        return bool(s.scalar(select(acknowledged_now(Project.id)).where(Project.code == code(n))))


def test_acknowledged_holds_for_this_red_episode_only(red_project: Runtime) -> None:
    """The flag shows 已确认 while the acknowledged red lasts; once the project leaves red and turns
    red again, the new episode is not acknowledged (on SQLite and PostgreSQL)."""
    rt = red_project
    apply(rt, record(rt, [row(2)]))  # another red project, never acknowledged
    assert not acknowledged(rt) and not acknowledged(rt, 2)
    with session_scope(rt.session_factory) as s:
        acknowledge(s, code=code(1), note="已约谈", by="王建国", clock=rt.clock, actor=ACTOR)
    assert acknowledged(rt) and not acknowledged(rt, 2)
    with session_scope(rt.session_factory) as s:  # back to green
        set_override(s, code=code(1), color="green", reason="整改到位", set_by="投资科", expires_on=date(2025, 1, 31),
                     reflag=rt.reflag_projects, clock=rt.clock, actor=ACTOR)
    assert flag(rt).effective_color == "green" and not acknowledged(rt)
    with session_scope(rt.session_factory) as s:  # red again: a new episode
        revoke_override(s, code=code(1), reflag=rt.reflag_projects, clock=rt.clock, actor=ACTOR)
    assert flag(rt).effective_color == "red" and not acknowledged(rt)
