"""月度通报: the monthly bulletin as a printable page (A4) for the office, and its xlsx download."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from pipeline.accounts import Principal
from pipeline.bulletin import Bulletin, bulletin_month, gather_bulletin
from pipeline.db import session_scope
from pipeline.meta import evaluation_date
from pipeline.months import last_month_end
from pipeline.web.errors import WebError
from pipeline.web.queries import applied_version
from pipeline.web.security import current_principal, require_office, runtime_of

router = APIRouter(include_in_schema=False, dependencies=[Depends(current_principal)])
KEEP = 24  # bulletins kept per process (a month each, at one applied version)


class BulletinCache:
    """Bulletins by month end, each with the applied version (pipeline.web.queries) it was computed
    at: the page and its xlsx cost one computation until another batch is applied."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[date, tuple[tuple[Any, ...], Bulletin]] = {}

    def get(self, session: Session, month_end: date, compute: Callable[[], Bulletin]) -> Bulletin:
        version = applied_version(session)
        with self._lock:
            found = self._entries.get(month_end)
        if found is not None and found[0] == version:
            return found[1]
        bulletin = compute()
        with self._lock:
            if len(self._entries) >= KEEP:
                self._entries.clear()
            self._entries[month_end] = (version, bulletin)
        return bulletin


def _cache(request: Request) -> BulletinCache:
    return request.app.state.bulletins  # type: ignore[no-any-return]  (set by create_app)


def _bulletin(request: Request, month: str | None) -> tuple[Bulletin, str]:
    """The bulletin of the month asked for (default: the last month end) and the newest month one may ask for."""
    rt = runtime_of(request)
    with session_scope(rt.session_factory) as session:
        d = evaluation_date(session, rt.clock)
        try:
            month_end = bulletin_month(month, evaluated=d)
        except ValueError as exc:
            raise WebError(400, str(exc)) from exc
        bulletin = _cache(request).get(session, month_end, lambda: gather_bulletin(
            session, month_end, scheme=rt.scheme, compiled=rt.compiled, order=rt.reference.order_for("county"),
            chunk_size=rt.settings.reflag_chunk_size))
    newest = last_month_end(d)
    return bulletin, f"{newest.year:04d}-{newest.month:02d}"


@router.get("/bulletin")
def bulletin_page(request: Request, month: str | None = Query(None, max_length=20),
                  principal: Principal = Depends(current_principal)) -> Response:
    from pipeline.bulletin import MEASURE_NAMES, MEASURE_TERMS, MEASURES
    from pipeline.web.pages import render

    require_office(principal)
    bulletin, newest = _bulletin(request, month)
    return render(request, "bulletin.html", principal, b=bulletin, newest=newest, measures=MEASURES,
                  names=MEASURE_NAMES, terms=MEASURE_TERMS)


@router.get("/bulletin.xlsx")
def bulletin_download(request: Request, month: str | None = Query(None, max_length=20),
                      principal: Principal = Depends(current_principal)) -> Response:
    from pipeline.bulletin_workbook import bulletin_filename, bulletin_xlsx
    from pipeline.web.upload_pages import attachment

    require_office(principal)
    bulletin, _ = _bulletin(request, month)
    return attachment(bulletin_xlsx(bulletin), bulletin_filename(bulletin), f"bulletin-{bulletin.month}.xlsx")
