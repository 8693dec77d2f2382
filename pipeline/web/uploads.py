"""Arrivals over HTTP: bodies read with a cap, then the same ingest calls as ``pipeline import``.

A body whose Content-Length is over the limit is refused (413) before a byte of it is read; a
body without one is streamed and refused as soon as it passes the limit. What is received is
recorded through ``receive_file`` / ``receive_records`` in one transaction, committed, and only
then handed on with ``dispatch_batches``. A unit sends progress (SPEC §3): its rows may leave the
master-data columns out. It may only send updates about its own projects (a project of the
reserve that is its own, or a new one naming the unit itself as 责任单位); a row naming another unit
rolls the transaction back and the answer is 403, with the rows at fault.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from pipeline.accounts import Principal
from pipeline.audit import Actor
from pipeline.db import session_scope
from pipeline.ingest.parse import ImportLimits
from pipeline.ingest.template import RowError
from pipeline.models import Project, StatusUpdate, Unit
from pipeline.runtime import Runtime
from pipeline.web.errors import WebError
from pipeline.web.security import refuse_foreign

if TYPE_CHECKING:
    from pipeline.ingest.submit import Submission

MULTIPART_OVERHEAD = 64 * 1024  # the multipart envelope and form fields around the file
ALLOWED_SUFFIXES = (".xlsx", ".csv", ".jsonl")


def too_large(limit: int, variable: str = "PIPELINE_MAX_UPLOAD_BYTES") -> WebError:
    return WebError(413, f"上传内容超过大小限制（{limit // (1024 * 1024) or 1} MB，{variable}={limit}），未读取")


async def read_capped(request: Request, limit: int, variable: str = "PIPELINE_MAX_UPLOAD_BYTES") -> bytes:
    """The request body, refused with 413 before reading when declared too large, or once it grows past."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isascii() or not declared.strip().isdigit() or len(declared.strip()) > 18:
            raise WebError(400, "请求头 Content-Length 无效")
        if int(declared) > limit:
            raise too_large(limit, variable)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(limit, variable)
    return bytes(body)


async def form_capped(request: Request, limit: int) -> Any:
    """Parse a multipart form whose body was read with the cap (file limit plus the envelope)."""
    body = await read_capped(request, limit + MULTIPART_OVERHEAD)
    replayed = False

    async def receive() -> dict[str, Any]:
        nonlocal replayed
        if replayed:
            return {"type": "http.disconnect"}
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return await Request(request.scope, receive).form(max_part_size=limit + 1)


def safe_filename(name: str | None) -> str:
    base = Path(name or "upload.xlsx").name
    base = re.sub(r"[\x00-\x1f/\\:*?\"<>|]", "_", base).strip(" .") or "upload.xlsx"
    return base[-150:]


async def save_upload(upload: UploadFile, folder: Path, limit: int) -> Path:
    name = safe_filename(upload.filename)
    if not name.lower().endswith(ALLOWED_SUFFIXES):
        raise WebError(415, f"不支持的文件类型：{name}（请上传 xlsx、csv 或 jsonl 模板文件）")
    data = await upload.read()
    if len(data) > limit:
        raise too_large(limit)
    path = folder / name
    path.write_bytes(data)
    return path


def temp_folder() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="pipeline-upload-")


def check_own_rows(session: Session, batch_id: int | None, principal: Principal) -> None:
    """A unit may only send rows about its own projects (existing ones of its unit, or new ones naming it).

    A row of a unit's own project may leave 责任单位 out (a progress-only row); naming another unit never passes.
    """
    if principal.is_office or batch_id is None:
        return
    if principal.role != "unit":
        refuse_foreign(principal)
    own_name = session.scalar(select(Unit.name).where(Unit.id == principal.unit_id))
    rows = session.execute(
        select(StatusUpdate.row_number, StatusUpdate.project_code, StatusUpdate.unit.label("named"), Project.unit_id)
        .join(Project, Project.code == StatusUpdate.project_code, isouter=True)
        .where(StatusUpdate.batch_id == batch_id)
        .order_by(StatusUpdate.row_number)
    ).all()
    foreign = []
    for r in rows:
        named = r.named or None
        if r.unit_id is not None and r.unit_id != principal.unit_id:
            foreign.append({"row": r.row_number, "field": "项目代码", "value": r.project_code,
                            "message": f"项目 {r.project_code} 不属于本单位（{own_name}），无权报送"})
        elif named != own_name and (named is not None or r.unit_id is None):
            # the row would hand the project to another unit, or create one belonging to no unit
            foreign.append({"row": r.row_number, "field": "责任单位", "value": named,
                            "message": f"责任单位应填写本单位「{own_name}」，不能报送其他单位的项目"})
    if foreign:
        raise WebError(403, f"无权报送其他单位的项目：{len(foreign)} 行涉及其他单位的项目，本次提交未入库", foreign)


def error_items(errors: Sequence[RowError]) -> list[dict[str, Any]]:
    return [{"row": e.row_number, "sheet": e.sheet, "field": e.header, "value": e.raw_value, "message": e.message}
            for e in errors]


def records_of(document: Any) -> list[Any]:
    """One update (an object) or a batch (a list, or {"updates": [...]}); an item that is not an
    object is refused as its own row later, beside the good ones."""
    if isinstance(document, dict) and isinstance(document.get("updates"), list):
        document = document["updates"]
    if isinstance(document, dict):
        return [document]
    if isinstance(document, list) and document:
        return document
    raise WebError(422, "请求体应为一条更新（JSON 对象）或更新列表（JSON 对象数组）",
                   [{"row": None, "field": None, "message": "应为 JSON 对象"}])


def _submit(rt: Runtime, principal: Principal, receive: Callable[[Session], Submission]) -> Submission:
    """Record in one transaction (refused whole if a unit touches another's project), commit, then
    hand the batch on (to the workers, or applied here on embedded defaults)."""
    from pipeline.tasks.dispatch import dispatch_batches

    with session_scope(rt.session_factory) as session:
        sub = receive(session)
        if sub.created:
            check_own_rows(session, sub.batch_id, principal)
    if sub.needs_applying and sub.created and sub.batch_id is not None:
        dispatch_batches(rt, [sub.batch_id])
    return sub


def submit_file(rt: Runtime, principal: Principal, path: Path, actor: Actor,
                progress: Callable[[int, int], None] | None = None) -> Submission:
    from pipeline.ingest.submit import receive_file

    return _submit(rt, principal, lambda session: receive_file(
        session, path, reference=rt.reference, max_bytes=rt.settings.max_upload_bytes, clock=rt.clock, actor=actor,
        unit_id=_unit_of(principal), limits=ImportLimits.from_settings(rt.settings), progress=progress))


def submit_records(rt: Runtime, principal: Principal, records: Sequence[Mapping[str, Any]], actor: Actor) -> Submission:
    from pipeline.ingest.submit import receive_records

    return _submit(rt, principal, lambda session: receive_records(
        session, records, reference=rt.reference, clock=rt.clock, source="api", label=f"API:{principal.username}",
        actor=actor, unit_id=_unit_of(principal), limits=ImportLimits.from_settings(rt.settings)))


def _unit_of(principal: Principal) -> int | None:
    """A responsible unit's batch carries its unit (SPEC §3: its master data wait for the office)."""
    return principal.unit_id if principal.role == "unit" else None
