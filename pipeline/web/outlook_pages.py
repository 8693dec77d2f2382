"""The office's outlook pages: 预警 (the forecast to a review, SPEC §10) and 方案试算 (a candidate
scheme tried on the stored history). Both read only."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from pipeline.accounts import Principal
from pipeline.backtest import BacktestMonth, backtest, month_range, parse_month
from pipeline.db import session_scope
from pipeline.errors import ActionRefused
from pipeline.meta import evaluation_date
from pipeline.rules import Scheme, SchemeError
from pipeline.rules.scheme import scheme_from_text
from pipeline.runtime import Runtime
from pipeline.web.api_outlook import leader_id_of, scoped_forecast
from pipeline.web.errors import WebError
from pipeline.web.pages import render
from pipeline.web.queries import filter_choices
from pipeline.web.security import CSRF_FIELD, check_csrf, current_principal, require_office, runtime_of
from pipeline.web.uploads import form_capped

router = APIRouter(include_in_schema=False, dependencies=[Depends(current_principal)])


def date_field(value: str | None, label: str) -> date | None:
    """A date typed in a form (empty: not given); a bad one is refused naming the field."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise WebError(422, f"{label}格式应为 YYYY-MM-DD：{text}") from exc


@router.get("/forecast")
def forecast_page(request: Request, as_of: str | None = Query(None), review: str | None = Query(None),
                  leader: str | None = Query(None), principal: Principal = Depends(current_principal)) -> Response:
    """述职前将转红/转黄: every project whose flag at the review will be worse than now."""
    require_office(principal)
    rt = runtime_of(request)
    d, r = date_field(as_of, "截至日期"), date_field(review, "述职日期")
    with session_scope(rt.session_factory) as session:
        d = d or evaluation_date(session, rt.clock)
        r, items = scoped_forecast(rt, session, principal, as_of=d, review=r, leader_id=leader_id_of(session, leader))
        leaders = filter_choices(session, principal)["leaders"]
    return render(request, "forecast.html", principal, as_of=d, review=r, leader=leader or "", leaders=leaders,
                  red=[i for i in items if i.flag_at_review == "red"],
                  yellow=[i for i in items if i.flag_at_review == "yellow"])


SCHEME_LIMIT = 1024 * 1024  # a scheme file is a few kilobytes
SHOWN_PER_MONTH = 200  # changed projects listed per month on the page


def _current_text(rt: Runtime) -> str:
    source = rt.scheme.source
    try:
        return source.read_text(encoding="utf-8") if source is not None else ""
    except OSError:
        return ""


def _backtest_page(request: Request, principal: Principal, *, status_code: int = 200, **context: Any) -> Response:
    rt = runtime_of(request)
    context.setdefault("text", _current_text(rt))
    context.setdefault("first", "")
    context.setdefault("last", "")
    context.setdefault("error", None)
    context.setdefault("result", None)
    return render(request, "backtest.html", principal, status_code=status_code, shown=SHOWN_PER_MONTH, **context)


@router.get("/backtest")
def backtest_form(request: Request, principal: Principal = Depends(current_principal)) -> Response:
    """方案试算: the form, prefilled with the scheme in force."""
    require_office(principal)
    return _backtest_page(request, principal)


@router.post("/backtest")
async def backtest_run(request: Request, principal: Principal = Depends(current_principal)) -> Response:
    """Both schemes month by month over the stored updates; nothing is written."""
    require_office(principal)
    rt = runtime_of(request)
    form = await form_capped(request, SCHEME_LIMIT)
    token = form.get(CSRF_FIELD)
    check_csrf(request, principal, token if isinstance(token, str) else None)
    text = form.get("text") if isinstance(form.get("text"), str) else ""
    first, last = form.get("from") or "", form.get("to") or ""
    kept = {"text": text, "first": first, "last": last}
    upload = form.get("file")
    source = Path("编辑的方案")
    try:
        if isinstance(upload, UploadFile) and upload.filename:
            source = Path(Path(upload.filename).name)
            try:
                text = (await upload.read()).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SchemeError(f"方案文件 {source}：无法读取：不是 UTF-8 编码的文本") from exc
            kept["text"] = text
        candidate = scheme_from_text(text, source=source)
        start, end = parse_month(first, "起始月份"), parse_month(last, "截止月份")
        result = await run_in_threadpool(_backtest, rt, candidate, start, end)
    except (SchemeError, ActionRefused) as exc:
        return _backtest_page(request, principal, status_code=422, error=str(exc), **kept)
    return _backtest_page(request, principal, result=result, candidate=candidate, **kept)


def _backtest(rt: Runtime, candidate: Scheme, start: date | None, end: date | None) -> list[BacktestMonth]:
    with session_scope(rt.session_factory) as session:
        ends = month_range(start, end, today=evaluation_date(session, rt.clock))
        months = backtest(session, current=rt.scheme, candidate=candidate, months=ends, with_projects=True,
                          chunk_size=rt.settings.reflag_chunk_size)
        session.rollback()  # nothing of it is kept
    return months
