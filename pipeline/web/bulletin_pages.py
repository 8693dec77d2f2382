"""月度通报: the monthly bulletin as a printable page (A4) for the office, and its xlsx download."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from pipeline.accounts import Principal
from pipeline.bulletin import Bulletin, bulletin_month, gather_bulletin
from pipeline.db import session_scope
from pipeline.meta import evaluation_date
from pipeline.months import last_month_end
from pipeline.web.errors import WebError
from pipeline.web.security import current_principal, require_office, runtime_of

router = APIRouter(include_in_schema=False, dependencies=[Depends(current_principal)])


def _bulletin(request: Request, month: str | None) -> tuple[Bulletin, str]:
    """The bulletin of the month asked for (default: the last month end) and the newest month one may ask for."""
    rt = runtime_of(request)
    with session_scope(rt.session_factory) as session:
        d = evaluation_date(session, rt.clock)
        try:
            month_end = bulletin_month(month, evaluated=d)
        except ValueError as exc:
            raise WebError(400, str(exc)) from exc
        bulletin = gather_bulletin(session, month_end, scheme=rt.scheme, compiled=rt.compiled,
                                   order=rt.reference.order_for("county"), chunk_size=rt.settings.reflag_chunk_size)
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
