"""The audit log page (审计日志, office only): filter by actor, action and dates, newest first, paged."""

from __future__ import annotations

from datetime import date
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from pipeline.accounts import Principal
from pipeline.audit import (
    ACTION_LABELS,
    VIA_LABELS,
    AuditAction,
    AuditFilter,
    audit_actors,
    audit_page,
    describe_detail,
)
from pipeline.clock import in_zone
from pipeline.db import session_scope
from pipeline.web.pages import render
from pipeline.web.schemas import MAX_PAGE
from pipeline.web.security import current_principal, require_office, runtime_of

router = APIRouter(include_in_schema=False, dependencies=[Depends(current_principal)])
PER_PAGE = 50


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@router.get("/audit")
def audit(request: Request, actor: str | None = Query(None), action: str | None = Query(None),
          date_from: str | None = Query(None, alias="from"), date_to: str | None = Query(None, alias="to"),
          page: int = Query(1, ge=1, le=MAX_PAGE), principal: Principal = Depends(current_principal)) -> Response:
    require_office(principal)
    rt = runtime_of(request)
    chosen = AuditAction(action) if action in {a.value for a in AuditAction} else None
    f = AuditFilter(actor=actor or None, action=chosen, date_from=_day(date_from), date_to=_day(date_to))
    with session_scope(rt.read_session_factory) as session:
        result = audit_page(session, f, tz=rt.settings.tz, page=page, per_page=PER_PAGE)
        actors = audit_actors(session)
    args = {"actor": f.actor or "", "action": chosen.value if chosen else "",
            "from": f.date_from.isoformat() if f.date_from else "", "to": f.date_to.isoformat() if f.date_to else ""}
    return render(request, "audit.html", principal, result=result, f=args, actors=actors,
                  actions=[(a.value, label) for a, label in ACTION_LABELS.items()],
                  action_labels={a.value: label for a, label in ACTION_LABELS.items()}, via_labels=VIA_LABELS, describe=describe_detail,
                  local=lambda at: in_zone(at, rt.settings.tz),
                  link=lambda p: "/audit?" + urlencode({**{k: v for k, v in args.items() if v}, "page": p}))
