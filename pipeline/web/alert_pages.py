"""提醒: the outbox as the office reads it (sent time, status, errors), one message's preview, resend."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from pipeline.accounts import Principal
from pipeline.alerts.promise import DELIVERY_PROMISE, retry_promise
from pipeline.alerts.redact import mask_text
from pipeline.db import session_scope
from pipeline.models import DeliveryAttempt, OutboxAttachment, OutboxMessage
from pipeline.web import api_actions
from pipeline.web.errors import WebError
from pipeline.web.queries import outbox_counts, outbox_page
from pipeline.web.schemas import MAX_ID, MAX_PAGE
from pipeline.web.security import CSRF_FIELD, check_csrf, current_principal, require_office, runtime_of

router = APIRouter(include_in_schema=False, dependencies=[Depends(current_principal)])
PER_PAGE = 50
# The message's own HTML, shown as its recipient's mail client would: no script, nothing fetched.
BODY_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; sandbox"


@router.get("/alerts")
def alerts_page(request: Request, status: str | None = Query(None), page: int = Query(1, ge=1, le=MAX_PAGE),
                principal: Principal = Depends(current_principal)) -> Response:
    from pipeline.web.pages import render

    require_office(principal)
    if status and status not in api_actions.OUTBOX_STATUSES:
        status = None
    rt = runtime_of(request)
    with session_scope(rt.read_session_factory) as session:
        counts = outbox_counts(session)
        total, rows = outbox_page(session, status=status, page=page, per_page=PER_PAGE)
    pages = max(1, -(-total // PER_PAGE))
    return render(request, "alerts.html", principal, counts=counts, rows=rows, total=total, status=status,
                  page=page, pages=pages, delivery_promise=DELIVERY_PROMISE,
                  retry_promise=retry_promise(rt.settings.alert_retry_hours))


@router.get("/alerts/{message_id}")
def alert_page(request: Request, message_id: int = PathParam(..., ge=1, le=MAX_ID), principal: Principal = Depends(current_principal)) -> Response:
    """One message: who, what, when sent, every attempt, and its text (the HTML opens beside it)."""
    from pipeline.web.pages import render

    require_office(principal)
    rt = runtime_of(request)
    with session_scope(rt.read_session_factory) as session:
        message = session.get(OutboxMessage, message_id)
        if message is None:
            raise WebError(404, f"消息不存在：{message_id}")
        attempts = list(session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.message_id == message_id)
                                        .order_by(DeliveryAttempt.id)))
        files = list(session.execute(select(OutboxAttachment.filename, OutboxAttachment.mime)
                                     .where(OutboxAttachment.message_id == message_id)))
        session.expunge_all()
    # Detached copies, shown with webhook credentials masked (the stored rows keep them for the sender).
    message.recipient, message.recipient_name = mask_text(message.recipient), mask_text(message.recipient_name)
    message.last_error = mask_text(message.last_error)
    for attempt in attempts:
        attempt.detail = mask_text(attempt.detail)
    return render(request, "alert.html", principal, m=message, attempts=attempts, files=files)


@router.get("/alerts/{message_id}/body.html")
def alert_body(request: Request, message_id: int = PathParam(..., ge=1, le=MAX_ID), principal: Principal = Depends(current_principal)) -> Response:
    require_office(principal)
    rt = runtime_of(request)
    with session_scope(rt.read_session_factory) as session:
        html = session.scalar(select(OutboxMessage.body_html).where(OutboxMessage.id == message_id))
    if not html:
        raise WebError(404, "该消息没有 HTML 正文")
    return HTMLResponse(html, headers={"Content-Security-Policy": BODY_CSP, "X-Frame-Options": "SAMEORIGIN"})


@router.post("/alerts/{message_id}/resend")
def resend_form(request: Request, message_id: int = PathParam(..., ge=1, le=MAX_ID), csrf: str = Form("", alias=CSRF_FIELD),
                principal: Principal = Depends(current_principal)) -> Response:
    from pipeline.web.pages import flash_outcome

    check_csrf(request, principal, csrf)
    flash_outcome(request, lambda: api_actions.do_resend(request, principal, message_id))
    return RedirectResponse("/alerts?status=failed", status_code=303)
