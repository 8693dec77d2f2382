"""Re-flag projects from the database in bulk: load plain rows, evaluate, write only what changed.

Reads are a handful of set-based queries (no ORM object per project); writes are executemany
statements for the flags that changed and one history row per change of colour.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, insert, literal, select, update
from sqlalchemy.orm import Session

from pipeline.clock import Clock
from pipeline.facts import ProjectFacts
from pipeline.meta import LAST_EVALUATED, evaluation_date, set_meta
from pipeline.models import FlagOverride, FlagChange, Project, ProjectFlag
from pipeline.snapshot import EARLIER_FACTS_AT, facts_of, in_chunks, two_reports_query
from pipeline.rules import Flag, Scheme, evaluate_many, previous_month_end



@dataclass(frozen=True)
class ReflagOutcome:
    as_of: date
    evaluated: int
    changed: int  # flags whose stored row changed (colour, reasons, override or scheme)
    recoloured: int  # flags whose computed or effective colour changed (history rows written)
    by_color: dict[str, int] = field(default_factory=dict)
    turned_red: tuple[int, ...] = ()  # project ids whose effective flag became red


def load_facts(
    session: Session, *, as_of: date, project_ids: Sequence[int] | None = None
) -> dict[int, tuple[ProjectFacts | None, ProjectFacts | None]]:
    """For each project: its newest row on or before D, and on or before the previous month's end."""
    result: dict[int, tuple[ProjectFacts | None, ProjectFacts | None]] = {}
    month_end = previous_month_end(as_of)
    for part in in_chunks(project_ids):
        q = two_reports_query(as_of, month_end)
        if part is not None:
            q = q.where(Project.id.in_(part))
        for row in session.execute(q).tuples():
            result[row[0]] = (facts_of(row), facts_of(row, EARLIER_FACTS_AT))
    return result


def _active_overrides(session: Session, ids: Sequence[int] | None, as_of: date) -> dict[int, tuple[int, str]]:
    found: dict[int, tuple[int, str]] = {}
    for part in in_chunks(ids):
        q = (
            select(FlagOverride.project_id, FlagOverride.id, FlagOverride.color)
            .where(FlagOverride.revoked_at.is_(None), FlagOverride.expires_on >= as_of)
            .order_by(FlagOverride.id)
        )
        if part is not None:
            q = q.where(FlagOverride.project_id.in_(part))
        for pid, oid, color in session.execute(q):
            found[pid] = (oid, color)  # the newest override wins
    return found


def _stored_flags(session: Session, ids: Sequence[int] | None) -> dict[int, Any]:
    stored: dict[int, Any] = {}
    cols = (
        ProjectFlag.project_id, ProjectFlag.computed_color, ProjectFlag.effective_color, ProjectFlag.reasons,
        ProjectFlag.override_id, ProjectFlag.scheme, ProjectFlag.scheme_version,
    )
    for part in in_chunks(ids):
        q = select(*cols)
        if part is not None:
            q = q.where(ProjectFlag.project_id.in_(part))
        stored.update({row.project_id: row for row in session.execute(q)})
    return stored


def _history_from_stored_flags(cause: str, now: datetime) -> Any:
    """One history row per changed project, copied from its flag as just written (new colours,
    reasons, scheme, 报告期): the reasons are encoded once, and history can never disagree with
    the flag it records. Parameters per row: pid, old_computed, old_effective."""
    flag, change = ProjectFlag.__table__, FlagChange.__table__
    copied = select(
        flag.c.project_id,
        bindparam("old_computed", type_=change.c.old_computed.type),
        flag.c.computed_color,
        bindparam("old_effective", type_=change.c.old_effective.type),
        flag.c.effective_color,
        flag.c.reasons,
        literal(cause, change.c.cause.type),
        flag.c.scheme,
        flag.c.scheme_version,
        flag.c.as_of,
        literal(now, change.c.changed_at.type),
    ).where(flag.c.project_id == bindparam("pid"))
    return insert(change).from_select(
        ["project_id", "old_computed", "new_computed", "old_effective", "new_effective", "reasons", "cause", "scheme",
         "scheme_version", "as_of", "changed_at"],
        copied,
    )


def write_flags(
    session: Session,
    flags: dict[int, Flag],
    *,
    as_of: date,
    clock: Clock,
    cause: str,
    ids: Sequence[int] | None,
) -> ReflagOutcome:
    """Store the flags that differ from the stored ones, with a history row per change of colour."""
    now = clock.now()
    overrides = _active_overrides(session, ids, as_of)
    stored = _stored_flags(session, ids)
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    turned_red: list[int] = []
    by_color: Counter[str] = Counter()
    for pid, flag in flags.items():
        computed = flag.color.value
        override = overrides.get(pid)
        effective = override[1] if override else computed
        by_color[effective] += 1
        reasons = [r.to_json() for r in flag.reasons]
        new = {
            "computed_color": computed, "effective_color": effective, "reasons": reasons,
            "override_id": override[0] if override else None, "scheme": flag.scheme, "scheme_version": flag.scheme_version,
            "as_of": as_of, "evaluated_at": now,
        }
        old = stored.get(pid)
        if old is None:
            inserts.append({"project_id": pid, **new})
        elif (old.computed_color, old.effective_color, old.reasons, old.override_id, old.scheme, old.scheme_version) != (
            computed, effective, reasons, new["override_id"], flag.scheme, flag.scheme_version
        ):
            updates.append({"pid": pid, **new})
        else:
            continue
        old_computed = old.computed_color if old is not None else None
        old_effective = old.effective_color if old is not None else None
        if (old_computed, old_effective) != (computed, effective):
            history.append({"pid": pid, "old_computed": old_computed, "old_effective": old_effective})
            if effective == "red" and old_effective != "red":
                turned_red.append(pid)
    # Core executemany on the session's connection: no per-row ORM bookkeeping for bulk writes.
    conn = session.connection()
    if inserts:
        conn.execute(insert(ProjectFlag.__table__), inserts)
    if updates:
        table = ProjectFlag.__table__
        conn.execute(update(table).where(table.c.project_id == bindparam("pid")), updates)
    if history:
        conn.execute(_history_from_stored_flags(cause, now), history)
    return ReflagOutcome(
        as_of=as_of, evaluated=len(flags), changed=len(inserts) + len(updates), recoloured=len(history),
        by_color=dict(by_color), turned_red=tuple(turned_red),
    )


def reflag(
    session: Session,
    *,
    scheme: Scheme,
    clock: Clock,
    project_ids: Sequence[int] | None = None,
    as_of: date | None = None,
    cause: str = "reflag",
) -> ReflagOutcome:
    """Re-evaluate the given projects (all when None) as of D and store what changed."""
    d = as_of or evaluation_date(session, clock)
    ids = sorted(set(project_ids)) if project_ids is not None else None
    facts = load_facts(session, as_of=d, project_ids=ids)
    pids = list(facts)
    flags = evaluate_many(scheme, [facts[p] for p in pids], d)
    outcome = write_flags(session, dict(zip(pids, flags)), as_of=d, clock=clock, cause=cause, ids=ids)
    if ids is None:
        set_meta(session, LAST_EVALUATED, d.isoformat())
    return outcome


__all__ = ["ReflagOutcome", "load_facts", "reflag", "write_flags"]
