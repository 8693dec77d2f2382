"""上传月报: the upload form, its progress, the report of a batch, the refused rows and the template.

A file is received (and on embedded defaults applied) in a worker thread while the page polls
``/upload/progress``; the answer redirects to ``/upload?batch=N``, the batch's report read from
the database (post/redirect/get: a reload never uploads twice). The office sees every batch; a
unit sees the batches it uploaded in this session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from sqlalchemy.orm import Session

from pipeline.accounts import Principal
from pipeline.db import session_scope
from pipeline.models import ImportBatch
from pipeline.web.errors import WebError, forbidden
from pipeline.web.queries import batch_rejections, recent_batches
from pipeline.web.schemas import MAX_ID
from pipeline.web.security import CSRF_FIELD, actor_of, check_csrf, current_principal, require_role, runtime_of
from pipeline.web.upload_progress import UploadProgress
from pipeline.web.uploads import form_capped, save_upload, submit_file, temp_folder

router = APIRouter(include_in_schema=False, dependencies=[Depends(current_principal)])
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SESSION_UPLOADS = "uploads"  # the batches this session uploaded (a unit may look at those)
KEEP_UPLOADS = 20
REPORT_ROWS = 500
BATCH_STATUS = {"received": "待入库", "applied": "已入库", "failed": "入库失败", "rejected": "整体拒收"}


def attachment(data: bytes, filename: str, ascii_name: str) -> Response:
    return Response(data, media_type=XLSX, headers={
        "Content-Disposition": f"attachment; filename={ascii_name}; filename*=UTF-8''{quote(filename)}"})


def _progress(request: Request) -> UploadProgress:
    return request.app.state.upload_progress  # type: ignore[no-any-return]


def _remember(request: Request, batch_id: int) -> None:
    kept = [b for b in request.session.get(SESSION_UPLOADS, []) if isinstance(b, int) and b != batch_id]
    request.session[SESSION_UPLOADS] = [*kept, batch_id][-KEEP_UPLOADS:]


def _visible_batch(request: Request, principal: Principal, batch_id: int) -> None:
    if principal.is_office or batch_id in request.session.get(SESSION_UPLOADS, []):
        return
    raise forbidden("只能查看本人上传的批次")


def _render(request: Request, principal: Principal, *, status_code: int = 200, **context: Any) -> Response:
    from pipeline.web.pages import render

    rt = runtime_of(request)
    context.setdefault("report", None)
    context.setdefault("error", None)
    context.setdefault("foreign", [])
    return render(request, "upload.html", principal, status_code=status_code,
                  limit_mb=rt.settings.max_upload_bytes / 1024 / 1024, **context)


def _visible_batch_row(session: Session, request: Request, principal: Principal, batch_id: int) -> ImportBatch:
    batch = session.get(ImportBatch, batch_id)
    if batch is None:
        raise WebError(404, f"导入批次不存在：{batch_id}")
    _visible_batch(request, principal, batch_id)
    return batch


def _report(request: Request, principal: Principal, batch_id: int) -> dict[str, Any]:
    rt = runtime_of(request)
    with session_scope(rt.session_factory) as session:
        batch = _visible_batch_row(session, request, principal, batch_id)
        rejections = batch_rejections(session, batch_id, limit=REPORT_ROWS)
        return {"id": batch.id, "filename": batch.filename, "status": batch.status, "error": batch.error,
                "total": batch.total_rows, "accepted": batch.accepted_rows, "duplicates": batch.duplicate_rows,
                "rejected": batch.rejected_rows, "applied": batch.applied_rows, "superseded": batch.superseded_rows,
                "hidden_rows": batch.hidden_rows,
                "rejections": [r for r in rejections if r.row_number is not None],
                "status_name": BATCH_STATUS.get(batch.status, batch.status)}


@router.get("/upload")
def upload_page(request: Request, batch: int | None = Query(None, ge=1, le=MAX_ID),
                principal: Principal = Depends(current_principal)) -> Response:
    require_role(principal, "unit")
    rt = runtime_of(request)
    report = _report(request, principal, batch) if batch is not None else None
    with session_scope(rt.session_factory) as session:
        batches = recent_batches(session) if principal.is_office else []
    return _render(request, principal, report=report, batches=batches, statuses=BATCH_STATUS)


@router.post("/upload")
async def upload(request: Request, principal: Principal = Depends(current_principal)) -> Response:
    require_role(principal, "unit")
    rt = runtime_of(request)
    tracker = _progress(request)
    upload_id: str | None = None
    try:
        form = await form_capped(request, rt.settings.max_upload_bytes)
        token = form.get(CSRF_FIELD)
        check_csrf(request, principal, token if isinstance(token, str) else None)
        given = form.get("upload_id")
        upload_id = given if isinstance(given, str) and tracker.valid(given) else None
        upload_file = form.get("file")
        if not isinstance(upload_file, UploadFile) or not upload_file.filename:
            raise WebError(422, "请选择要上传的 Excel 文件")
        if upload_id:
            tracker.update(principal.user_id, upload_id, stage="read")
        with temp_folder() as folder:
            path = await save_upload(upload_file, Path(folder), rt.settings.max_upload_bytes)
            sub = await run_in_threadpool(submit_file, rt, principal, path, actor_of(request, principal),
                                          tracker.reporter(principal.user_id, upload_id))
    except WebError as exc:
        if exc.status == 403 and not exc.errors:
            raise
        if upload_id:
            tracker.update(principal.user_id, upload_id, stage="failed", message=exc.message)
        return _render(request, principal, status_code=exc.status, batches=[], error=exc.message, foreign=exc.errors)
    if sub.batch_id is None:
        raise WebError(500, "上传未能记录，请重试")
    if upload_id:
        tracker.update(principal.user_id, upload_id, stage="failed" if sub.file_error else "done",
                       batch_id=sub.batch_id, message=sub.file_error)
    _remember(request, sub.batch_id)
    if not sub.created:
        from pipeline.web.pages import flash

        flash(request, "该文件此前已上传，未重复入库；以下为当时的校验结果。", "info")
    return RedirectResponse(f"/upload?batch={sub.batch_id}", status_code=303)


@router.get("/upload/progress")
def upload_progress(request: Request, upload_id: str = Query("", alias="id"),
                    principal: Principal = Depends(current_principal)) -> Response:
    """{stage, total, validated, accepted, applied, rejected, batch}: what the progress bars show."""
    require_role(principal, "unit")
    found = _progress(request).get(principal.user_id, upload_id) if UploadProgress.valid(upload_id) else None
    if found is None:
        return JSONResponse({"stage": "upload"})
    answer: dict[str, Any] = {"stage": found.stage, "total": found.total, "validated": found.validated,
                              "batch": found.batch_id, "message": found.message}
    if found.batch_id is not None:
        rt = runtime_of(request)
        with session_scope(rt.session_factory) as session:
            batch = session.get(ImportBatch, found.batch_id)
            if batch is not None:
                answer.update(total=batch.total_rows, validated=batch.total_rows, accepted=batch.accepted_rows,
                              rejected=batch.rejected_rows, duplicates=batch.duplicate_rows, status=batch.status,
                              applied=batch.applied_rows + batch.superseded_rows if batch.status == "applied" else 0)
                if batch.status == "received":
                    answer["stage"] = "apply"  # recorded; the workers are applying it
    return JSONResponse(answer)


@router.get("/upload/template.xlsx")
def template_download(request: Request, principal: Principal = Depends(current_principal)) -> Response:
    from pipeline.ingest.template_book import import_template

    require_role(principal, "unit")
    return attachment(import_template(runtime_of(request).reference), "项目月报导入模板.xlsx", "template.xlsx")


@router.get("/upload/{batch_id}/rejected.xlsx")
def rejected_download(request: Request, batch_id: int = PathParam(..., ge=1, le=MAX_ID), principal: Principal = Depends(current_principal)) -> Response:
    """The batch's refused rows with 问题说明: fix them and upload this file again."""
    from pipeline.ingest.rejected_report import rejected_rows_xlsx

    require_role(principal, "unit")
    rt = runtime_of(request)
    with session_scope(rt.session_factory) as session:
        batch = _visible_batch_row(session, request, principal, batch_id)
        data = rejected_rows_xlsx(batch_rejections(session, batch_id, limit=None), source=batch.filename)
        stem = Path(batch.filename or f"批次{batch_id}").stem
    return attachment(data, f"{stem}_问题行.xlsx", f"rejected-{batch_id}.xlsx")
