"""Change requests (SPEC §3): the office's handle on a unit's master data that differ from the reserve.

Applying a unit's batch records them (pipeline/ingest/apply.py); here the office lists them and
decides. Approving applies the proposed value to the project's master data (the project, its
current state for the planned figures, its leader or unit found or created by name as imports do,
its list memberships), marks the request with who and when, writes the audit log and re-flags the
projects whose flags read the field. A request whose current value no longer matches the reserve
(stale: the office or another request changed the field since) is refused, and so is a decided one
decided the other way; deciding a request again the same way changes nothing.

Every step is a fixed handful of statements whatever the number of requests: the ids travel in a
temporary table, the requests and the projects they touch are locked in id order (on PostgreSQL)
before anything is read, the same order a batch's apply takes them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
from sqlalchemy import text
from sqlalchemy.orm import Session

from pipeline import bulk
from pipeline.audit import Actor, AuditAction, record_each
from pipeline.clock import Clock, in_zone
from pipeline.errors import ActionRefused
from pipeline.ingest.apply import LIST_SEPARATOR, MASTER_ON_PROJECT, MASTER_ON_STATE, RESERVE_JOINS, current_values
from pipeline.ingest.template import FIELDS_BY_ALIAS
from pipeline.overrides import Reflagger
from pipeline.reflag import ReflagOutcome
from pipeline.states import ChangeRequestStatus

PENDING, APPROVED, REJECTED = (s.value for s in ChangeRequestStatus)
STATUS_NAMES = {PENDING: "待审核", APPROVED: "已批准", REJECTED: "已驳回"}
FIELD_NAMES: dict[str, str] = {
    alias: FIELDS_BY_ALIAS[alias].header
    for alias in (*MASTER_ON_PROJECT, "lists", "leader", "unit", *MASTER_ON_STATE)
}
# What the scheme's rules read besides a report's progress: a change to these re-flags the project.
FLAG_FIELDS = frozenset({"nature", "annual_plan", "planned_start", "planned_completion"})
_MONEY = frozenset({"total_investment", "annual_plan"})
_DATES = frozenset({"planned_start", "planned_completion"})
MAX_ID = 2**31 - 1
MAX_PAGE = 1_000_000


@dataclass(frozen=True)
class ChangeFilter:
    status: str | None = None  # pending | approved | rejected; None: all
    project_code: str | None = None
    unit_id: int | None = None  # a unit sees its own requests only
    leader_id: int | None = None  # a leader, those about their projects


@dataclass(frozen=True)
class ChangeRow:
    id: int
    project_id: int
    code: str
    project_name: str
    field: str
    current_value: str | None
    proposed_value: str | None
    unit: str | None
    status: str
    created_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    stale: bool  # pending, but the reserve's value is no longer the one it was asked against
    reserve_value: str | None = None  # the field's value in the reserve now
    note: str | None = None  # the office's note on its decision

    @property
    def field_name(self) -> str:
        return FIELD_NAMES.get(self.field, self.field)

    @property
    def status_name(self) -> str:
        return STATUS_NAMES.get(self.status, self.status)

    @property
    def current_shown(self) -> str:
        return shown(self.field, self.current_value)

    @property
    def proposed_shown(self) -> str:
        return shown(self.field, self.proposed_value)

    @property
    def reserve_shown(self) -> str:
        return shown(self.field, self.reserve_value)


@dataclass(frozen=True)
class ChangePage:
    total: int
    page: int
    per_page: int
    rows: list[ChangeRow]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


@dataclass(frozen=True)
class Decision:
    """What a call decided: the requests it changed, those already decided that way, the re-flag."""

    decided: tuple[int, ...]
    unchanged: tuple[int, ...]
    outcome: ReflagOutcome | None = None


def shown(field: str, value: str | None) -> str:
    """A recorded value as the office reads it: amounts without trailing zeros, lists with 、."""
    if value is None or value == "":
        return "（空）"
    if field in _MONEY:
        try:
            return format(Decimal(value).normalize(), "f")
        except InvalidOperation:
            return value
    if field == "lists":
        return "、".join(value.split(LIST_SEPARATOR))
    return value


# --- reading ---------------------------------------------------------------------------------------


def _reserve_value(session: Session) -> str:
    """The SQL of a request's (c) field's value in the reserve now, as text (the form it was recorded in)."""
    cases = " ".join(f"WHEN '{field}' THEN {value}" for field, value in current_values(session))
    return f"CASE c.field {cases} END"


def _stale(session: Session) -> str:
    differs = "IS DISTINCT FROM" if bulk.is_postgres(session) else "IS NOT"
    return f"(c.status = '{PENDING}' AND ({_reserve_value(session)}) {differs} c.current_value)"


_FROM = (f"FROM change_requests c JOIN projects p ON p.id = c.project_id {RESERVE_JOINS} "
         "LEFT JOIN units ru ON ru.id = c.unit_id")


def _selected(f: ChangeFilter) -> tuple[str, dict[str, Any]]:
    """``FROM … WHERE …`` of the requests the filter selects (the project joined only when needed)."""
    where: list[str] = ["1 = 1"]
    params: dict[str, Any] = {}
    if f.status is not None:
        if f.status not in STATUS_NAMES:
            raise ActionRefused(f"状态无效：{f.status}（应为 pending、approved 或 rejected）")
        where.append("c.status = :status")
        params["status"] = f.status
    if f.project_code:
        where.append("p.code = :code")
        params["code"] = f.project_code.strip()
    if f.unit_id is not None:
        where.append("c.unit_id = :unit_id")
        params["unit_id"] = f.unit_id
    if f.leader_id is not None:
        where.append("p.leader_id = :leader_id")
        params["leader_id"] = f.leader_id
    project = " JOIN projects p ON p.id = c.project_id" if f.project_code or f.leader_id is not None else ""
    return f"FROM change_requests c{project} WHERE {' AND '.join(where)}", params


def list_requests(session: Session, f: ChangeFilter = ChangeFilter(), *, tz: ZoneInfo, page: int = 1,
                  per_page: int = 50) -> ChangePage:
    """One page of requests, newest first, with whether each pending one is stale; times in ``tz``."""
    selected, params = _selected(f)
    total = int(session.execute(text(f"SELECT count(*) {selected}"), params).scalar_one())
    per_page = max(1, min(per_page, 500))
    page = max(1, min(page, MAX_PAGE, -(-total // per_page) or 1))
    # The page's ids first, then the reserve's values for those rows only.
    rows = session.execute(text(f"""
        SELECT c.id, c.project_id, p.code, p.name, c.field, c.current_value, c.proposed_value, ru.name AS unit,
               c.status, c.created_at, c.decided_by, c.decided_at, {_stale(session)} AS stale,
               {_reserve_value(session)} AS reserve_value
        {_FROM} WHERE c.id IN (SELECT c.id {selected} ORDER BY c.created_at DESC, c.id DESC LIMIT :limit OFFSET :offset)
        ORDER BY c.created_at DESC, c.id DESC"""),
        {**params, "limit": per_page, "offset": (page - 1) * per_page}).all()
    notes = _notes(session, [r.id for r in rows if r.status != PENDING])
    return ChangePage(total, page, per_page, [
        ChangeRow(r.id, r.project_id, r.code, r.name, r.field, r.current_value, r.proposed_value, r.unit, r.status,
                  _local(r.created_at, tz), r.decided_by, r.decided_at and _local(r.decided_at, tz), bool(r.stale),
                  r.reserve_value, notes.get(r.id))
        for r in rows
    ])


def _local(value: Any, tz: ZoneInfo) -> datetime:
    """A stored time (SQLite hands back text in a textual query) as an aware time in ``tz``."""
    return in_zone(datetime.fromisoformat(value) if isinstance(value, str) else value, tz)


def _notes(session: Session, ids: Sequence[int]) -> dict[int, str]:
    """The notes the office gave with its decisions on these requests (kept in the audit log)."""
    if not ids:
        return {}
    key = ("CAST(a.detail ->> 'change_request_id' AS INTEGER)" if bulk.is_postgres(session)
           else "CAST(json_extract(a.detail, '$.change_request_id') AS INTEGER)")
    note = "a.detail ->> 'note'" if bulk.is_postgres(session) else "json_extract(a.detail, '$.note')"
    found = session.execute(text(f"""
        SELECT {key} AS id, {note} AS note FROM audit_log a
        WHERE a.action IN (:approved, :rejected) AND {bulk.among(session, key, "ids")}
          AND a.at IN (SELECT decided_at FROM change_requests WHERE {bulk.among(session, "id", "ids")})
        ORDER BY a.id"""),
        {"approved": AuditAction.CHANGE_APPROVED.value, "rejected": AuditAction.CHANGE_REJECTED.value,
         "ids": bulk.id_set(session, ids)}).all()
    return {r.id: r.note for r in found if r.note}


def pending_count(session: Session, f: ChangeFilter = ChangeFilter()) -> int:
    """How many requests (of the filter's unit or leader) wait for the office."""
    selected, params = _selected(replace(f, status=PENDING))
    return int(session.execute(text(f"SELECT count(*) {selected}"), params).scalar_one())


# --- deciding --------------------------------------------------------------------------------------

_DECIDED_SCHEMA = {"id": pl.Int64, "project_id": pl.Int64, "code": pl.Utf8, "field": pl.Utf8,
                   "current_value": pl.Utf8, "proposed_value": pl.Utf8, "status": pl.Utf8, "stale": pl.Boolean,
                   "now_value": pl.Utf8}


def _locked(session: Session, ids: Sequence[int]) -> pl.DataFrame:
    """The requests ``ids`` with the reserve's value of their field now, under lock: on PostgreSQL
    the touched projects' states (as a batch's apply takes them), then the requests, in id order."""
    clean = sorted({int(i) for i in ids})
    if not clean:
        raise ActionRefused("请指定要处理的变更申请编号")
    out_of_range = [i for i in clean if not 1 <= i <= MAX_ID]
    if out_of_range:
        raise ActionRefused(f"变更申请不存在：{'、'.join(str(i) for i in out_of_range[:10])}")
    chosen = {"ids": bulk.id_set(session, clean)}
    if bulk.is_postgres(session):
        session.execute(text(f"""
            SELECT s.project_id FROM project_states s
            WHERE s.project_id IN (SELECT project_id FROM change_requests WHERE {bulk.among(session, "id", "ids")})
            ORDER BY s.project_id FOR UPDATE"""), chosen)
        session.execute(text(
            f"SELECT id FROM change_requests WHERE {bulk.among(session, 'id', 'ids')} ORDER BY id FOR UPDATE"), chosen)
    found = bulk.read_frame(session, f"""
        SELECT c.id, c.project_id, p.code, c.field, c.current_value, c.proposed_value, c.status,
               {_stale(session)}, {_reserve_value(session)}
        {_FROM} WHERE {bulk.among(session, "c.id", "ids")} ORDER BY c.id""", chosen, _DECIDED_SCHEMA)
    missing = sorted(set(clean) - set(found["id"].to_list()))
    if missing:
        raise ActionRefused(f"变更申请不存在：{'、'.join(str(i) for i in missing[:10])}")
    return found


def _refuse_decided(found: pl.DataFrame, other: str, verb: str) -> None:
    decided = found.filter(pl.col("status") == other)["id"].to_list()
    if decided:
        raise ActionRefused(f"变更申请 {'、'.join(map(str, decided[:10]))} {STATUS_NAMES[other]}，不能再{verb}")


def approve(session: Session, ids: Sequence[int], *, actor: Actor, clock: Clock, reflag: Reflagger,
            note: str | None = None) -> Decision:
    """Apply the proposed values of the pending requests ``ids`` to the reserve, all or none."""
    found = _locked(session, ids)
    _refuse_decided(found, REJECTED, "批准")
    todo = found.filter(pl.col("status") == PENDING)
    stale = todo.filter(pl.col("stale"))
    if stale.height:
        r = stale.row(0, named=True)
        raise ActionRefused(
            f"变更申请 {r['id']} 已过期：项目 {r['code']} 的{FIELD_NAMES.get(r['field'], r['field'])}现为"
            f"“{shown(r['field'], r['now_value'])}”，申请时为“{shown(r['field'], r['current_value'])}”；"
            "请核实后驳回，或由投资科直接修改" + (f"（共 {stale.height} 条已过期）" if stale.height > 1 else ""))
    twice = todo.group_by("project_id", "field").len().filter(pl.col("len") > 1)
    if twice.height:
        r = todo.join(twice, on=["project_id", "field"]).row(0, named=True)
        raise ActionRefused(f"项目 {r['code']} 的{FIELD_NAMES.get(r['field'], r['field'])}有多条申请，一次只能批准其中一条")
    unchanged = tuple(found.filter(pl.col("status") == APPROVED)["id"].to_list())
    if todo.height == 0:
        return Decision((), unchanged)
    now = clock.now()
    _apply(session, todo, now)
    _mark(session, todo["id"], APPROVED, actor, now)
    _audit(session, todo, AuditAction.CHANGE_APPROVED, actor, now, note)
    flagged = todo.filter(pl.col("field").is_in(list(FLAG_FIELDS)))["project_id"].unique().sort()
    outcome = reflag(session, flagged.to_list(), cause="change_request") if flagged.len() else None
    return Decision(tuple(todo["id"].to_list()), unchanged, outcome)


def reject(session: Session, ids: Sequence[int], *, actor: Actor, clock: Clock, note: str) -> Decision:
    """Mark the pending requests ``ids`` rejected; the reserve keeps its values."""
    if not note or not note.strip():
        raise ActionRefused("请填写驳回理由")
    found = _locked(session, ids)
    _refuse_decided(found, APPROVED, "驳回")
    todo = found.filter(pl.col("status") == PENDING)
    unchanged = tuple(found.filter(pl.col("status") == REJECTED)["id"].to_list())
    if todo.height == 0:
        return Decision((), unchanged)
    now = clock.now()
    _mark(session, todo["id"], REJECTED, actor, now)
    _audit(session, todo, AuditAction.CHANGE_REJECTED, actor, now, note.strip())
    return Decision(tuple(todo["id"].to_list()), unchanged)


def _mark(session: Session, ids: pl.Series, status: str, actor: Actor, now: datetime) -> None:
    session.execute(bulk.sql(f"""
        UPDATE change_requests SET status = :status, decided_by = :by, decided_at = :now
        WHERE {bulk.among(session, "id", "ids")}"""),
        {"status": status, "by": actor.name[:100], "now": now, "ids": bulk.id_set(session, ids)})


def _audit(session: Session, decided: pl.DataFrame, action: AuditAction, actor: Actor, now: datetime,
           note: str | None) -> None:
    record_each(session, actor, action, now=now, entries=[
        (r["code"], {"change_request_id": r["id"], "field": FIELD_NAMES.get(r["field"], r["field"]),
                     "current": shown(r["field"], r["current_value"]),
                     "proposed": shown(r["field"], r["proposed_value"]), "note": note or None})
        for r in decided.iter_rows(named=True)
    ])


def _typed(session: Session, field: str) -> str:
    """The request's (c) proposed value as its column's type."""
    if field in _MONEY:
        return "CAST(c.proposed_value AS NUMERIC(16, 2))" if bulk.is_postgres(session) else \
            "CAST(c.proposed_value AS NUMERIC)"
    if field in _DATES and bulk.is_postgres(session):
        return "CAST(c.proposed_value AS DATE)"
    return "c.proposed_value"


def _apply(session: Session, todo: pl.DataFrame, now: datetime) -> None:
    """The approved requests ``todo`` into the reserve: one statement per field."""
    fields = set(todo["field"].to_list())
    chosen = {"ids": bulk.id_set(session, todo["id"])}
    approved = bulk.among(session, "c.id", "ids")
    for field in fields & set(MASTER_ON_PROJECT):
        session.execute(text(f"""
            UPDATE projects SET {field} = {_typed(session, field)} FROM change_requests c
            WHERE {approved} AND c.field = '{field}' AND projects.id = c.project_id"""), chosen)
    for field in fields & set(MASTER_ON_STATE):
        session.execute(text(f"""
            UPDATE project_states SET {field} = {_typed(session, field)} FROM change_requests c
            WHERE {approved} AND c.field = '{field}' AND project_states.project_id = c.project_id"""), chosen)
    for field, table in (("leader", "leaders"), ("unit", "units")):
        if field not in fields:
            continue
        session.execute(text(f"""
            INSERT INTO {table} (name)
            SELECT DISTINCT c.proposed_value FROM change_requests c
            WHERE {approved} AND c.field = '{field}' AND c.proposed_value IS NOT NULL
            ON CONFLICT (name) DO NOTHING"""), chosen)
        session.execute(text(f"""
            UPDATE projects SET {field}_id = w.person_id
            FROM (SELECT c.project_id, t.id AS person_id FROM change_requests c
                  LEFT JOIN {table} t ON t.name = c.proposed_value
                  WHERE {approved} AND c.field = '{field}') AS w
            WHERE projects.id = w.project_id"""), chosen)
    if "lists" in fields:
        lists = todo.filter(pl.col("field") == "lists")
        session.execute(text(f"""
            DELETE FROM project_lists WHERE project_id IN (
                SELECT c.project_id FROM change_requests c WHERE {approved} AND c.field = 'lists')"""), chosen)
        memberships = lists.select(
            "project_id", pl.col("proposed_value").fill_null("").str.split(LIST_SEPARATOR).alias("list_name"),
        ).explode("list_name").filter(pl.col("list_name") != "").unique()
        bulk.write_frame(session, "project_lists", memberships)
    session.execute(bulk.sql(f"""
        UPDATE projects SET updated_at = :now
        WHERE id IN (SELECT project_id FROM change_requests c WHERE {approved})"""), {"now": now, **chosen})


__all__ = [
    "ChangeFilter", "ChangePage", "ChangeRow", "Decision", "FIELD_NAMES", "FLAG_FIELDS", "STATUS_NAMES", "approve",
    "list_requests", "pending_count", "reject", "shown",
]
