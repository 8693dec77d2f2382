"""Overrides (a flag set by hand) and acknowledgements of red flags (SPEC §4)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from sqlalchemy import ColumnElement, Select, exists, func, select
from sqlalchemy.orm import Session, aliased

from pipeline import bulk
from pipeline.audit import Actor, AuditAction, record
from pipeline.clock import Clock
from pipeline.errors import ActionRefused
from pipeline.meta import evaluation_date
from pipeline.models import Acknowledgement, FlagChange, FlagOverride, Project, ProjectFlag
from pipeline.reflag import ReflagOutcome

COLORS = {"red": "red", "yellow": "yellow", "green": "green", "红": "red", "黄": "yellow", "绿": "green"}


@dataclass(frozen=True)
class OverrideResult:
    override_id: int
    outcome: ReflagOutcome


def project_by_code(session: Session, code: str) -> Project:
    project = session.scalar(select(Project).where(Project.code == code.strip()))
    if project is None:
        raise ActionRefused(f"项目代码不存在：{code}")
    return project


class Reflagger(Protocol):
    def __call__(self, session: Session, project_ids: Sequence[int], *, cause: str = ...) -> ReflagOutcome: ...


def set_override(
    session: Session, *, code: str, color: str, reason: str, set_by: str, expires_on: date, reflag: Reflagger,
    clock: Clock, actor: Actor,
) -> OverrideResult:
    """Set a project's flag by hand until ``expires_on`` (inclusive); the computed flag is kept beside it."""
    normalized = COLORS.get(color.strip().lower())
    if normalized is None:
        raise ActionRefused(f"颜色无效：{color}（应为 red/yellow/green 或 红/黄/绿）")
    if not reason.strip():
        raise ActionRefused("请填写人工调整的理由")
    if not set_by.strip():
        raise ActionRefused("请填写操作人")
    if expires_on < evaluation_date(session, clock):
        raise ActionRefused(f"到期日期 {expires_on.isoformat()} 早于评估日期，调整不会生效")
    project = project_by_code(session, code)
    override = FlagOverride(
        project_id=project.id, color=normalized, reason=reason.strip(), set_by=set_by.strip(),
        expires_on=expires_on, created_at=clock.now(),
    )
    session.add(override)
    session.flush()
    record(session, actor, AuditAction.OVERRIDE_SET, now=override.created_at, target=project.code, color=normalized,
           reason=override.reason, set_by=override.set_by, expires_on=expires_on.isoformat(), override_id=override.id)
    outcome = reflag(session, [project.id], cause="override")
    return OverrideResult(override.id, outcome)


def revoke_override(session: Session, *, code: str, reflag: Reflagger, clock: Clock, actor: Actor) -> ReflagOutcome:
    """Revoke the project's overrides in force; the computed flag becomes effective again."""
    project = project_by_code(session, code)
    active = session.scalars(
        select(FlagOverride).where(FlagOverride.project_id == project.id, FlagOverride.revoked_at.is_(None))
    ).all()
    if not active:
        raise ActionRefused(f"项目 {code} 没有生效中的人工调整")
    now = clock.now()
    for override in active:
        override.revoked_at = now
    session.flush()
    record(session, actor, AuditAction.OVERRIDE_REVOKED, now=now, target=project.code,
           override_ids=[o.id for o in active])
    return reflag(session, [project.id], cause="override_revoked")


# A history row that opens a red episode: the effective flag became red from something else.
TURNED_RED = (FlagChange.new_effective == "red") & (
    FlagChange.old_effective.is_(None) | (FlagChange.old_effective != "red")
)


def current_red_episode(session: Session, project_id: int) -> FlagChange | None:
    """The history row where the project's effective flag last turned red, if it is red now."""
    flag = session.get(ProjectFlag, project_id)
    if flag is None or flag.effective_color != "red":
        return None
    return session.scalar(
        select(FlagChange).where(FlagChange.project_id == project_id, TURNED_RED).order_by(FlagChange.id.desc()).limit(1)
    )


def red_episodes(session: Session, among: Sequence[int] | None = None) -> Select[tuple[int, int]]:
    """The projects red now (of ``among``, when given), each with the id of the history row that
    opened its red episode: ``project_id``, ``episode``. A query, to be read or joined."""
    q = (select(FlagChange.project_id, func.max(FlagChange.id).label("episode"))
         .join(ProjectFlag, ProjectFlag.project_id == FlagChange.project_id)
         .where(ProjectFlag.effective_color == "red", TURNED_RED)
         .group_by(FlagChange.project_id))
    if among is not None:
        q = q.where(bulk.among_ids(session, "flag_history.project_id", among))
    return q


def acknowledged_now(project_id: ColumnElement[int]) -> ColumnElement[bool]:
    """True for a project red now whose current red episode was acknowledged: a correlated EXISTS,
    usable in any query over projects (the flag shows it wherever it shows)."""
    flag = aliased(ProjectFlag)
    episode = (  # correlated to the acknowledgement's row (the enclosing EXISTS), not to the outer query
        select(func.max(FlagChange.id)).where(FlagChange.project_id == Acknowledgement.project_id, TURNED_RED)
        .scalar_subquery()
    )
    return exists(
        select(Acknowledgement.id)
        .join(flag, flag.project_id == Acknowledgement.project_id)
        .where(Acknowledgement.project_id == project_id, flag.effective_color == "red",
               Acknowledgement.episode_change_id == episode)
    )


def current_acknowledgement(session: Session, project_id: int) -> Acknowledgement | None:
    """The acknowledgement of the project's current red episode, if it is red and acknowledged."""
    episode = current_red_episode(session, project_id)
    if episode is None:
        return None
    return session.scalar(select(Acknowledgement).where(Acknowledgement.episode_change_id == episode.id))


def acknowledge(session: Session, *, code: str, note: str, by: str, clock: Clock, actor: Actor) -> Acknowledgement:
    """Acknowledge the project's current red flag; silences repeats for this red episode only."""
    if not note.strip():
        raise ActionRefused("请填写确认说明")
    if not by.strip():
        raise ActionRefused("请填写确认人")
    project = project_by_code(session, code)
    episode = current_red_episode(session, project.id)
    if episode is None:
        raise ActionRefused(f"项目 {code} 当前不是红牌，无需确认")
    existing = session.scalar(select(Acknowledgement).where(Acknowledgement.episode_change_id == episode.id))
    if existing is not None:
        raise ActionRefused(f"项目 {code} 的本次红牌已由 {existing.acked_by} 确认")
    ack = Acknowledgement(
        project_id=project.id, episode_change_id=episode.id, note=note.strip(), acked_by=by.strip(), created_at=clock.now()
    )
    session.add(ack)
    session.flush()
    record(session, actor, AuditAction.ACKNOWLEDGE, now=ack.created_at, target=project.code, note=ack.note,
           acked_by=ack.acked_by, acknowledgement_id=ack.id)
    return ack
