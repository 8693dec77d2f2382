"""Set-based reads behind the API and the pages: filtered, sorted, paginated; one query per view.

Every filter is index-friendly (county, industry, leader, unit, colour, list membership by
EXISTS, code prefix); counts are one COUNT with the same filters, pages are LIMIT/OFFSET. A text
search (a substring of the name, leader, unit or problems) reads every project whatever the page,
so its page carries the count of all matches (a window count) instead of a second pass.
"""

from __future__ import annotations

from collections.abc import Iterator
import json
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, case, exists, func, or_, select, text
from sqlalchemy.orm import Session, aliased

from pipeline.accounts import Principal
from pipeline.history import MonthEntry, month_history
from pipeline.alerts.redact import ShownMessage, shown
from pipeline.models import (
    Acknowledgement,
    FlagChange,
    FlagOverride,
    ImportBatch,
    Leader,
    OutboxMessage,
    Project,
    ProjectFlag,
    ProjectList,
    ProjectState,
    RejectedRow,
    StatusUpdate,
    Unit,
)
from pipeline.overrides import current_acknowledgement
from pipeline.web.flag_source import NOW, FlagSource
from pipeline.web.security import scope_clause

COLORS = ("red", "yellow", "green")
COLOR_NAMES = {"red": "红牌", "yellow": "黄牌", "green": "绿牌"}
SORTS = ("code", "name", "county", "industry", "flag", "investment", "plan", "ytd", "as_of", "leader")
REPORT_SORTS = ("plan", "ytd", "as_of")


def _sort_column(sort: str, source: FlagSource) -> Any:
    return {
        "code": Project.code, "name": Project.name, "county": Project.county, "industry": Project.industry,
        "flag": source.severity, "investment": Project.total_investment, "plan": source.plan, "ytd": source.ytd,
        "as_of": source.report_as_of, "leader": Leader.name,
    }[sort]
MAX_PER_PAGE = 200


@dataclass(frozen=True)
class ProjectFilters:
    color: str | None = None
    county: str | None = None
    list_name: str | None = None
    leader: str | None = None
    industry: str | None = None
    q: str | None = None
    sort: str = "code"
    desc: bool = False
    page: int = 1
    per_page: int = 50
    county_order: tuple[str, ...] = ()  # the configured order, for sorting by 县市区
    as_of: date | None = None  # 截至日期: a past date (None: the evaluation date)

    def normalised(self) -> ProjectFilters:
        def clean(v: str | None) -> str | None:
            return v.strip() or None if isinstance(v, str) else None

        return replace(
            self, color=clean(self.color), county=clean(self.county), list_name=clean(self.list_name),
            leader=clean(self.leader), industry=clean(self.industry), q=clean(self.q),
            sort=self.sort if self.sort in SORTS else "code", page=max(1, self.page),
            per_page=min(MAX_PER_PAGE, max(1, self.per_page)),
        )

    def query_args(self, **changes: Any) -> dict[str, Any]:
        """The filters as URL query arguments (for links that keep the current view)."""
        f = replace(self, **changes)
        args = {"color": f.color, "county": f.county, "list": f.list_name, "leader": f.leader,
                "industry": f.industry, "q": f.q, "sort": f.sort if f.sort != "code" else None,
                "desc": "1" if f.desc else None, "page": f.page if f.page != 1 else None,
                "per_page": f.per_page if f.per_page != 50 else None,
                "as_of": f.as_of.isoformat() if f.as_of else None}
        return {k: v for k, v in args.items() if v is not None}


@dataclass(frozen=True)
class ProjectRow:
    code: str
    name: str
    county: str
    industry: str | None
    nature: str
    leader: str | None
    unit: str | None
    color: str | None
    computed_color: str | None
    overridden: bool
    total_investment: Any
    annual_plan: Any
    ytd_completed: Any
    as_of: date | None
    reasons: list[dict[str, Any]]
    acknowledged: bool = False  # red, and this red episode acknowledged


def search_clause(q: str) -> Any:
    """Text search: a code prefix, or the text in the name, the leader, the unit or the problems."""
    state = aliased(ProjectState)
    return or_(
        Project.code.startswith(q, autoescape=True),
        Project.name.contains(q, autoescape=True),
        Project.leader_id.in_(select(Leader.id).where(Leader.name.contains(q, autoescape=True)).correlate(None)),
        Project.unit_id.in_(select(Unit.id).where(Unit.name.contains(q, autoescape=True)).correlate(None)),
        exists().where(state.project_id == Project.id, state.problems.contains(q, autoescape=True)),
    )


def _where(f: ProjectFilters, principal: Principal, source: FlagSource) -> list[Any]:
    clauses: list[Any] = []
    scope = scope_clause(principal)
    if scope is not None:
        clauses.append(scope)
    if f.color:
        clauses.append(source.color == f.color)
    if f.county:
        clauses.append(Project.county == f.county)
    if f.industry:
        clauses.append(Project.industry == f.industry)
    if f.leader:
        clauses.append(Project.leader_id == select(Leader.id).where(Leader.name == f.leader).scalar_subquery())
    if f.list_name:
        clauses.append(exists().where(ProjectList.project_id == Project.id, ProjectList.list_name == f.list_name))
    if f.q:
        clauses.append(search_clause(f.q))
    return clauses


def _order(f: ProjectFilters, source: FlagSource) -> list[Any]:
    tie = Project.id.desc() if f.desc else Project.id.asc()
    if f.sort == "flag" and f.color:  # one colour: the flag orders nothing, and the id order walks an index
        return [tie]
    order = _sort_column(f.sort, source)
    if f.sort == "county" and f.county_order:
        order = case({name: i for i, name in enumerate(f.county_order)}, value=Project.county,
                     else_=len(f.county_order))
    return [order.desc() if f.desc else order.asc(), tie]


def _join_source(q: Select[Any], source: FlagSource, *, flags: bool, reports: bool, flags_outer: bool = True) -> Select[Any]:
    """Join the flag table and (when another) the report table of ``source``, as needed."""
    if flags:
        q = q.join(source.flags, source.flags_on, isouter=flags_outer)
    if reports and (not flags or source.reports is not source.flags):
        q = q.join(source.reports, source.reports_on, isouter=True)
    return q


def _page_ids(f: ProjectFilters, principal: Principal, source: FlagSource) -> Select[Any]:
    """The ids of the page only, joining just what the filters and the sort need (a deferred join:
    the wide row is read for these 50 ids, not for every row the OFFSET skips)."""
    q = _join_source(select(Project.id).select_from(Project), source, flags=bool(f.color or f.sort == "flag"),
                     reports=f.sort in REPORT_SORTS, flags_outer=not f.color)
    if f.sort == "leader":
        q = q.join(Leader, Leader.id == Project.leader_id, isouter=True)
    return q.where(*_where(f, principal, source)).order_by(*_order(f, source))


def _with_flag_state_leader_unit(*columns: Any, source: FlagSource = NOW) -> Select[Any]:
    """Projects with their flag (and whether its red episode is acknowledged), state, leader and unit."""
    q = select(*columns, source.color.label("effective_color"), source.computed.label("computed_color"),
               source.override_id.label("override_id"), source.reasons.label("reasons"),
               source.acknowledged.label("acknowledged")).select_from(Project)
    return (
        _join_source(q, source, flags=True, reports=True)
        .join(Leader, Leader.id == Project.leader_id, isouter=True)
        .join(Unit, Unit.id == Project.unit_id, isouter=True)
    )


def _rows_query(f: ProjectFilters, principal: Principal, ids: Any = None, source: FlagSource = NOW) -> Select[Any]:
    q = _with_flag_state_leader_unit(
        Project.code, Project.name, Project.county, Project.industry, Project.nature, Leader.name.label("leader"),
        Unit.name.label("unit"), Project.total_investment, source.plan.label("annual_plan"),
        source.ytd.label("ytd_completed"), source.report_as_of.label("as_of"), source=source,
    ).order_by(*_order(f, source))
    return q.where(Project.id.in_(ids)) if ids is not None else q.where(*_where(f, principal, source))


def _row(r: Any) -> ProjectRow:
    return ProjectRow(
        code=r.code, name=r.name, county=r.county, industry=r.industry, nature=r.nature, leader=r.leader,
        unit=r.unit, color=r.effective_color, computed_color=r.computed_color, overridden=r.override_id is not None,
        total_investment=r.total_investment, annual_plan=r.annual_plan, ytd_completed=r.ytd_completed,
        as_of=_day(r.as_of), reasons=_reasons(r.reasons), acknowledged=bool(r.acknowledged),
    )


def _reasons(value: Any) -> list[dict[str, Any]]:
    """Reasons as stored (JSON) or as staged (JSON text)."""
    if isinstance(value, str):
        return list(json.loads(value))
    return list(value or [])


def _day(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def count_projects(session: Session, f: ProjectFilters, principal: Principal, source: FlagSource = NOW) -> int:
    q = select(func.count()).select_from(Project)
    if f.color:
        q = q.join(source.flags, source.flags_on)
    return int(session.scalar(q.where(*_where(f, principal, source))) or 0)


def list_projects(session: Session, f: ProjectFilters, principal: Principal,
                  source: FlagSource = NOW) -> tuple[int, list[ProjectRow]]:
    """(total matching, the rows of the requested page), with the flags of ``source``."""
    f = f.normalised()
    page = _page_ids(f, principal, source).limit(f.per_page).offset((f.page - 1) * f.per_page)
    if f.q:  # a text search reads every project whatever the page: count the matches in the same pass
        found = session.execute(page.add_columns(func.count().over().label("total"))).all()
        if found:
            total = found[0].total
        else:  # no match at all, or a page past the last: only the latter needs counting
            total = 0 if f.page == 1 else count_projects(session, f, principal, source)
        ids = [r.id for r in found]
    else:  # the count, then the page: a page sorted by an indexed column reads only its rows
        total = count_projects(session, f, principal, source)
        ids = list(session.scalars(page))
    if not ids:
        return total, []
    return total, [_row(r) for r in session.execute(_rows_query(f, principal, ids, source))]


def colour_counts(session: Session, principal: Principal, *, leader_id: int | None = None,
                  source: FlagSource = NOW) -> dict[str, int]:
    q = select(source.color, func.count()).select_from(source.flags).group_by(source.color)
    scope = scope_clause(principal)
    if scope is not None or leader_id is not None:
        q = q.join(Project, source.flags_on)
    if scope is not None:
        q = q.where(scope)
    if leader_id is not None:
        q = q.where(Project.leader_id == leader_id)
    counts = dict(session.execute(q).tuples().all())
    return {c: int(counts.get(c, 0)) for c in COLORS}


def latest_changes(session: Session, principal: Principal, *, limit: int = 10,
                   since_as_of: date | None = None, leader_id: int | None = None) -> list[dict[str, Any]]:
    q = (
        select(FlagChange.id, FlagChange.changed_at, FlagChange.as_of, FlagChange.old_effective,
               FlagChange.new_effective, FlagChange.cause, FlagChange.reasons, Project.code, Project.name)
        .join(Project, Project.id == FlagChange.project_id)
        .where(or_(FlagChange.old_effective.is_(None), FlagChange.old_effective != FlagChange.new_effective))
        .order_by(FlagChange.id.desc())
        .limit(limit)
    )
    scope = scope_clause(principal)
    if scope is not None:
        q = q.where(scope)
    if since_as_of is not None:
        q = q.where(FlagChange.as_of > since_as_of)
    if leader_id is not None:
        q = q.where(Project.leader_id == leader_id)
    return [dict(r._mapping) for r in session.execute(q)]


def project_by_code(session: Session, code: str) -> Project | None:
    return session.scalar(select(Project).where(Project.code == code.strip()))


def project_detail(session: Session, project: Project, *, list_order: tuple[str, ...] = (),
                   updates_limit: int = 50) -> dict[str, Any]:
    flag = session.get(ProjectFlag, project.id)
    state = session.get(ProjectState, project.id)
    leader = session.get(Leader, project.leader_id) if project.leader_id else None
    unit = session.get(Unit, project.unit_id) if project.unit_id else None
    rank = {name: i for i, name in enumerate(list_order)}
    lists = sorted(session.scalars(select(ProjectList.list_name).where(ProjectList.project_id == project.id)),
                   key=lambda name: (rank.get(name, len(rank)), name))
    override = session.get(FlagOverride, flag.override_id) if flag and flag.override_id else None
    updates = list(session.scalars(
        select(StatusUpdate).where(StatusUpdate.project_code == project.code)
        .order_by(StatusUpdate.as_of.desc(), StatusUpdate.id.desc()).limit(updates_limit)
    ))
    changes = list(session.scalars(
        select(FlagChange).where(FlagChange.project_id == project.id).order_by(FlagChange.id.desc()).limit(200)
    ))
    acks = list(session.scalars(
        select(Acknowledgement).where(Acknowledgement.project_id == project.id).order_by(Acknowledgement.id.desc())
    ))
    overrides = list(session.scalars(
        select(FlagOverride).where(FlagOverride.project_id == project.id).order_by(FlagOverride.id.desc())
    ))
    history = month_history(session, project.id)
    return {
        "project": project, "flag": flag, "state": state, "leader": leader, "unit": unit, "lists": lists,
        "override": override, "updates": updates, "changes": changes, "acks": acks, "overrides": overrides,
        "history": history, "timeline": timeline(history, flag, acks, overrides),
        "acknowledgement": current_acknowledgement(session, project.id),
    }


def timeline(history: list[MonthEntry], flag: ProjectFlag | None, acks: list[Acknowledgement],
             overrides: list[FlagOverride]) -> list[dict[str, Any]]:
    """One project's flag as the months went (SPEC §9: its month-end entries), with its
    acknowledgements and overrides among them in date order, oldest first, then its current flag."""
    events: list[dict[str, Any]] = []
    for m in history:
        events.append({"kind": "month", "at": None, "day": m.month_end, "as_of": m.month_end, "color": m.color,
                       "old_color": m.old_color, "computed": m.color, "cause": "month_end", "reasons": m.reasons,
                       "change_id": None, "by": None, "note": None})
    for a in acks:
        events.append({"kind": "ack", "at": a.created_at, "day": a.created_at.date(), "as_of": None, "color": "red",
                       "old_color": None, "computed": None, "cause": "acknowledge", "reasons": [],
                       "change_id": a.episode_change_id, "by": a.acked_by, "note": a.note})
    for o in overrides:
        events.append({"kind": "override", "at": o.created_at, "day": o.created_at.date(), "as_of": None,
                       "color": o.color, "old_color": None, "computed": None, "cause": "override", "reasons": [],
                       "change_id": None, "by": o.set_by, "note": o.reason, "expires_on": o.expires_on,
                       "revoked_at": o.revoked_at})
    # Same day: the month end first; acknowledgements and overrides of one day by their time.
    events.sort(key=lambda e: (e["day"], e["kind"] != "month", e["at"] or datetime.min))
    if flag is not None:
        events.append({"kind": "flag", "at": flag.evaluated_at, "day": flag.as_of, "as_of": flag.as_of,
                       "color": flag.effective_color, "old_color": history[-1].color if history else None,
                       "computed": flag.computed_color, "cause": "current", "reasons": list(flag.reasons or []),
                       "change_id": None, "by": None, "note": None})
    return events


def outbox_page(session: Session, *, status: str | None, page: int, per_page: int) -> tuple[int, list[ShownMessage]]:
    """One page of the outbox as it may be shown: webhook credentials masked."""
    per_page = min(MAX_PER_PAGE, max(1, per_page))
    page = max(1, page)
    where = [OutboxMessage.status == status] if status else []
    total = int(session.scalar(select(func.count()).select_from(OutboxMessage).where(*where)) or 0)
    rows = session.scalars(select(OutboxMessage).where(*where).order_by(OutboxMessage.id.desc())
                           .limit(per_page).offset((page - 1) * per_page))
    return total, [shown(r) for r in rows]


def outbox_counts(session: Session) -> dict[str, int]:
    return {k: int(v) for k, v in session.execute(
        select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).tuples().all()}


def recent_batches(session: Session, *, limit: int = 10) -> list[ImportBatch]:
    return list(session.scalars(select(ImportBatch).order_by(ImportBatch.id.desc()).limit(limit)))


def batch_rejections(session: Session, batch_id: int, *, limit: int | None = 500) -> list[RejectedRow]:
    q = select(RejectedRow).where(RejectedRow.batch_id == batch_id).order_by(RejectedRow.id)
    return list(session.scalars(q.limit(limit) if limit is not None else q))


# The industries present, in order, found by walking the industry index one industry at a time
# ("the first industry after this one", a probe each) rather than by reading every project: a
# list page asks for them at each view (24 ms at 100,000 projects by DISTINCT, 0.3 ms so).
_INDUSTRIES = text("""
    WITH RECURSIVE found(industry) AS (
        SELECT MIN(industry) FROM projects
        UNION ALL
        SELECT (SELECT MIN(p.industry) FROM projects p WHERE p.industry > found.industry)
        FROM found WHERE found.industry IS NOT NULL)
    SELECT industry FROM found WHERE industry IS NOT NULL""")


def filter_choices(session: Session, principal: Principal) -> dict[str, list[str]]:
    """Leaders and industries present (for the filter drop-downs)."""
    leaders = select(Leader.name).order_by(Leader.name)
    if principal.role == "leader":
        leaders = leaders.where(Leader.id == principal.leader_id)
    return {"leaders": list(session.scalars(leaders)), "industries": list(session.scalars(_INDUSTRIES))}


def applied_version(session: Session) -> tuple[int, Any]:
    """Changes whenever a batch is applied: the key under which derived figures are cached."""
    row = session.execute(
        select(func.count(), func.max(ImportBatch.applied_at)).where(ImportBatch.status == "applied")
    ).one()
    return int(row[0]), row[1]


def leader_row(session: Session, name: str) -> Leader | None:
    return session.scalar(select(Leader).where(Leader.name == name))


def leaders_board(session: Session, source: FlagSource = NOW) -> list[dict[str, Any]]:
    """Every leader with their projects counted by colour (one grouped query)."""
    q = (
        select(Leader.name, Leader.title, source.color, func.count())
        .select_from(Leader)
        .join(Project, Project.leader_id == Leader.id, isouter=True)
        .join(source.flags, source.flags_on, isouter=True)
        .group_by(Leader.name, Leader.title, source.color)
    )
    board: dict[str, dict[str, Any]] = {}
    for name, title, colour, n in session.execute(q):
        entry = board.setdefault(name, {"name": name, "title": title, "red": 0, "yellow": 0, "green": 0, "total": 0})
        if colour:
            entry[colour] = int(n)
            entry["total"] += int(n)
    return sorted(board.values(), key=lambda e: (-e["red"], -e["yellow"], e["name"]))


@dataclass(frozen=True)
class Notice:
    """One message sent to a person (its copies on every channel counted once)."""

    kind: str
    subject: str
    created_at: Any
    sent_at: Any
    status: str
    channels: tuple[str, ...]
    project_code: str | None
    review_date: date | None


def notices_to(session: Session, name: str, *, kinds: tuple[str, ...] = ("leader_digest", "red_notice"),
               limit: int = 20) -> list[Notice]:
    """The digests and red notices planned for ``name``, newest first, one entry per message."""
    rows = session.execute(
        select(OutboxMessage.kind, OutboxMessage.subject, OutboxMessage.created_at, OutboxMessage.sent_at,
               OutboxMessage.status, OutboxMessage.channel, OutboxMessage.review_date,
               OutboxMessage.episode_change_id, Project.code)
        .join(Project, Project.id == OutboxMessage.project_id, isouter=True)
        .where(OutboxMessage.recipient_name == name, OutboxMessage.kind.in_(kinds))
        .order_by(OutboxMessage.id.desc())
        .limit(limit * 4)
    ).all()
    grouped: dict[tuple[Any, ...], list[Any]] = {}
    for r in rows:
        grouped.setdefault((r.kind, r.review_date, r.episode_change_id), []).append(r)
    notices = []
    for copies in list(grouped.values())[:limit]:
        first = copies[0]
        sent = [c.sent_at for c in copies if c.sent_at is not None]
        status = "sent" if sent else first.status
        notices.append(Notice(first.kind, first.subject, min(c.created_at for c in copies), max(sent) if sent else None,
                              status, tuple(sorted({c.channel for c in copies})), first.code, first.review_date))
    return notices


@dataclass(frozen=True)
class ExportRow:
    """One project as the list export writes it: every template column, and its flag."""

    cells: dict[str, Any]  # template alias → value
    color: str | None
    computed_color: str | None
    overridden: bool
    acknowledged: bool
    reasons: list[dict[str, Any]]


_STATE_COLUMNS = ("as_of", "annual_plan", "planned_start", "planned_completion", "actual_start", "actual_completion",
                  "stats_included_on", "cumulative_completed", "ytd_completed", "needs_coordination", "problems")


def _export_query(f: ProjectFilters, principal: Principal) -> Select[Any]:
    return _with_flag_state_leader_unit(
        Project.id, Project.code, Project.name, Project.county, Project.industry, Project.nature,
        Project.total_investment, Leader.name.label("leader"), Unit.name.label("unit"),
        *(getattr(ProjectState, c) for c in _STATE_COLUMNS),
    ).where(*_where(f, principal, NOW)).order_by(*_order(f, NOW))


def iter_export_rows(session: Session, f: ProjectFilters, principal: Principal, *, limit: int,
                     list_order: tuple[str, ...] = (), chunk: int = 1000) -> Iterator[ExportRow]:
    """Every project of the view with all its template columns, streamed in chunks (one lists query
    per chunk, lists in ``list_order``)."""
    f = f.normalised()
    rank = {name: i for i, name in enumerate(list_order)}
    result = session.execute(_export_query(f, principal).limit(limit).execution_options(yield_per=chunk))
    for part in result.partitions(chunk):
        lists: dict[int, list[str]] = {}
        ids = [r.id for r in part]
        for pid, name in session.execute(select(ProjectList.project_id, ProjectList.list_name)
                                         .where(ProjectList.project_id.in_(ids))):
            lists.setdefault(pid, []).append(name)
        for r in part:
            names = sorted(lists.get(r.id, ()), key=lambda n: (rank.get(n, len(rank)), n))
            cells = {"code": r.code, "name": r.name, "county": r.county, "industry": r.industry, "lists": tuple(names),
                     "nature": r.nature, "total_investment": r.total_investment, "leader": r.leader, "unit": r.unit,
                     **{c: getattr(r, c) for c in _STATE_COLUMNS}}
            yield ExportRow(cells, r.effective_color, r.computed_color, r.override_id is not None,
                            bool(r.acknowledged), list(r.reasons or []))
