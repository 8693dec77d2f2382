"""Apply a recorded batch to the current state, idempotently, and re-flag what it changed.

Applying is one transaction: the batch row is locked, its pending updates are applied or marked
superseded, the projects' descriptive fields and current state follow the newest update (by 报告期,
ties by arrival), and the touched projects are re-flagged. Running it again on an applied batch
changes nothing, so a task delivered twice, or re-queued by the sweeper, is harmless.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from pipeline.clock import Clock
from pipeline.db import dialect_insert
from pipeline.ingest.record import PENDING, RECEIVED
from pipeline.models import (
    ImportBatch,
    Leader,
    Project,
    ProjectList,
    ProjectState,
    StatusUpdate,
    Unit,
)

APPLIED = "applied"
SUPERSEDED = "superseded"
FAILED = "failed"

PROGRESS_FIELDS = (
    "as_of", "annual_plan", "planned_start", "planned_completion", "actual_start", "actual_completion",
    "stats_included_on", "cumulative_completed", "ytd_completed", "needs_coordination", "problems",
)

Reflagger = Callable[[Session, Sequence[int]], Any]


@dataclass(frozen=True)
class AppliedBatch:
    batch_id: int
    already_done: bool
    applied: int = 0
    superseded: int = 0
    touched_project_ids: tuple[int, ...] = ()


def _chunks(items: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _ensure_named(session: Session, model: type[Leader] | type[Unit], names: set[str]) -> dict[str, int]:
    """Ids of leaders or units by name, inserting the missing ones (safe under concurrency)."""
    if not names:
        return {}
    ordered = sorted(names)
    stmt = dialect_insert(session, model).on_conflict_do_nothing(index_elements=["name"])
    session.execute(stmt, [{"name": n} for n in ordered])
    ids: dict[str, int] = {}
    for part in _chunks(ordered):
        ids.update(session.execute(select(model.name, model.id).where(model.name.in_(part))).tuples().all())
    return ids


def _newest(a: tuple[date, int] | None, b: tuple[date, int]) -> bool:
    """True when b is newer than a: a later 报告期, or the same one received later."""
    return a is None or b > a


def apply_batch(session: Session, batch_id: int, *, clock: Clock, reflag: Reflagger | None = None) -> AppliedBatch:
    """Apply batch ``batch_id``; a no-op when it is not waiting to be applied."""
    batch = session.scalars(select(ImportBatch).where(ImportBatch.id == batch_id).with_for_update()).one_or_none()
    if batch is None or batch.status != RECEIVED:
        return AppliedBatch(batch_id, already_done=True)

    updates = session.execute(
        select(StatusUpdate.id, StatusUpdate.project_code, StatusUpdate.as_of, StatusUpdate.payload)
        .where(StatusUpdate.batch_id == batch_id, StatusUpdate.status == PENDING)
        .order_by(StatusUpdate.project_code, StatusUpdate.as_of, StatusUpdate.id)
    ).all()
    now = clock.now()
    if not updates:
        batch.status, batch.applied_at = APPLIED, now
        return AppliedBatch(batch_id, already_done=False)

    # The newest update of this batch for each project.
    newest_in_batch: dict[str, Any] = {}
    for u in updates:
        newest_in_batch[u.project_code] = u  # ordered by as_of, id: the last one wins
    codes = sorted(newest_in_batch)

    leader_ids = _ensure_named(session, Leader, {u.payload["leader"] for u in newest_in_batch.values() if u.payload.get("leader")})
    unit_ids = _ensure_named(session, Unit, {u.payload["unit"] for u in newest_in_batch.values() if u.payload.get("unit")})

    def descriptive(payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": payload["name"], "county": payload["county"], "industry": payload.get("industry"),
            "nature": payload["nature"], "total_investment": payload["total_investment"],
            "leader_id": leader_ids.get(payload.get("leader") or ""), "unit_id": unit_ids.get(payload.get("unit") or ""),
        }

    # New projects: insert from their newest update; concurrent inserts of the same code are harmless.
    session.execute(
        dialect_insert(session, Project).on_conflict_do_nothing(index_elements=["code"]),
        [{"code": c, **descriptive(newest_in_batch[c].payload), "created_at": now, "updated_at": now} for c in codes],
    )
    # Lock the projects in a fixed order so that concurrent batches cannot deadlock.
    project_ids: dict[str, int] = {}
    for part in _chunks(codes):
        project_ids.update(
            session.execute(
                select(Project.code, Project.id).where(Project.code.in_(part)).order_by(Project.id).with_for_update()
            ).tuples().all()
        )
    states: dict[int, tuple[date, int]] = {}
    for part in _chunks(list(project_ids.values())):
        for pid, as_of, uid in session.execute(
            select(ProjectState.project_id, ProjectState.as_of, ProjectState.update_id).where(ProjectState.project_id.in_(part))
        ):
            states[pid] = (as_of, uid)

    winners: dict[int, Any] = {}
    for code, u in newest_in_batch.items():
        pid = project_ids[code]
        if _newest(states.get(pid), (u.as_of, u.id)):
            winners[pid] = u
    winner_ids = {u.id for u in winners.values()}
    applied_ids = [u.id for u in updates if u.id in winner_ids]
    superseded_ids = [u.id for u in updates if u.id not in winner_ids]

    if winners:
        full = {
            row.id: row
            for part in _chunks(sorted(winner_ids))
            for row in session.execute(select(StatusUpdate).where(StatusUpdate.id.in_(part))).scalars()
        }
        session.execute(
            update(Project),
            [{"id": pid, **descriptive(u.payload), "updated_at": now} for pid, u in winners.items()],
        )
        session.execute(delete(ProjectList).where(ProjectList.project_id.in_(list(winners))))
        memberships = [
            {"project_id": pid, "list_name": name} for pid, u in winners.items() for name in dict.fromkeys(u.payload.get("lists") or [])
        ]
        if memberships:
            session.execute(insert(ProjectList), memberships)
        state_rows = [
            {"project_id": pid, "update_id": u.id, **{f: getattr(full[u.id], f) for f in PROGRESS_FIELDS}}
            for pid, u in winners.items()
        ]
        existing = [r for r in state_rows if r["project_id"] in states]
        fresh = [r for r in state_rows if r["project_id"] not in states]
        if existing:
            session.execute(update(ProjectState), existing)
        if fresh:
            session.execute(insert(ProjectState), fresh)

    for ids, status in ((applied_ids, APPLIED), (superseded_ids, SUPERSEDED)):
        for part in _chunks(ids):
            session.execute(update(StatusUpdate).where(StatusUpdate.id.in_(part)).values(status=status, applied_at=now))

    batch.status, batch.applied_at = APPLIED, now
    batch.applied_rows, batch.superseded_rows = len(applied_ids), len(superseded_ids)
    # Every project of the batch is re-flagged: an older report can still change ESCALATED.
    touched = tuple(sorted(project_ids.values()))
    session.flush()
    if reflag is not None and touched:
        reflag(session, touched)
    return AppliedBatch(batch_id, False, len(applied_ids), len(superseded_ids), touched)
