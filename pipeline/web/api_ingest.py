"""POST /api/updates: JSON updates (one or a batch) or a template file upload.

A JSON body is bounded before it is parsed (size, nesting depth) and after (number of updates);
each bound answers 4xx in Chinese, naming the setting.
"""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from pipeline.accounts import Principal
from pipeline.ingest.readers import JsonRefused, load_json
from pipeline.ingest.submit import Submission
from pipeline.web.api_projects import ANSWERS
from pipeline.web.errors import WebError
from pipeline.web.schemas import ErrorAnswer, SubmissionOut
from pipeline.web.security import actor_of, check_csrf, current_principal, require_role, runtime_of
from pipeline.web.uploads import (
    error_items,
    form_capped,
    read_capped,
    records_of,
    save_upload,
    submit_file,
    submit_records,
    temp_folder,
)

router = APIRouter(prefix="/api", tags=["报送"], dependencies=[Depends(current_principal)],
                   responses={**ANSWERS, 413: {"model": ErrorAnswer, "description": "超过上传大小或条数限制，未读取"}})


def answer(sub: Submission, *, from_file: bool) -> JSONResponse:
    body = SubmissionOut(
        batch_id=sub.batch_id, total=sub.total_rows, accepted=sub.accepted, duplicates=sub.duplicates,
        rejected=sub.rejected, already_received=not sub.created, errors=error_items(sub.errors),
        hidden_rows=sub.hidden_rows if from_file else None,
    )
    if sub.file_error:
        raise WebError(422, f"文件被拒收：{sub.file_error}", [{"row": None, "field": None, "message": sub.file_error}])
    status = 422 if sub.errors and not (sub.accepted or sub.duplicates) else 200
    content = body.model_dump(mode="json", exclude=None if from_file else {"hidden_rows"})
    if status == 422:
        content["detail"] = "全部行未通过校验：" + "；".join(
            e.place + (f"「{e.header}」" if e.header else "") + e.message for e in sub.errors[:20]
        )
    return JSONResponse(content, status_code=status)


def parse_body(body: bytes, *, max_depth: int) -> object:
    """The JSON document of a body, or 422 in Chinese (bad JSON, nested too deep)."""
    try:
        return load_json(body or b"null", max_depth=max_depth)
    except JsonRefused as exc:
        raise WebError(422, f"{exc}（PIPELINE_API_MAX_DEPTH={max_depth}），未处理",
                       [{"row": None, "field": None, "message": str(exc)}]) from exc
    except json.JSONDecodeError as exc:
        raise WebError(422, f"JSON 格式错误：第{exc.lineno}行第{exc.colno}列",
                       [{"row": None, "field": None, "message": "JSON 格式错误"}]) from exc
    except ValueError as exc:  # not UTF-8, or otherwise unreadable
        raise WebError(422, "JSON 格式错误：请求体不是 UTF-8 编码的 JSON",
                       [{"row": None, "field": None, "message": "JSON 格式错误"}]) from exc


@router.post(
    "/updates", response_model=SubmissionOut, summary="报送项目月报：JSON（一条或多条，字段用英文别名或中文表头）或上传模板文件",
    description="JSON：一个对象、对象数组或 {\"updates\": [...]}；文件：multipart/form-data 的 file 字段（xlsx/csv/jsonl）。"
                "有问题的行逐行列出（行号、字段、原因），其余行照常入库；全部行被拒时返回 422。",
)
async def post_updates(request: Request, principal: Principal = Depends(current_principal)) -> JSONResponse:
    require_role(principal, "unit")
    rt = runtime_of(request)
    limit = rt.settings.max_upload_bytes
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        form = await form_capped(request, limit)
        check_csrf(request, principal, form.get("csrf_token") if isinstance(form.get("csrf_token"), str) else None)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise WebError(422, "缺少上传文件（表单字段 file）", [{"row": None, "field": "file", "message": "必填项缺失"}])
        with temp_folder() as folder:
            path = await save_upload(upload, Path(folder), limit)
            sub = await run_in_threadpool(submit_file, rt, principal, path, actor_of(request, principal))
        return answer(sub, from_file=True)
    if ctype not in ("application/json", ""):
        raise WebError(415, f"不支持的内容类型：{ctype}（应为 application/json 或 multipart/form-data）")
    check_csrf(request, principal, None)
    settings = rt.settings
    body_limit, variable = min((settings.api_max_body_bytes, "PIPELINE_API_MAX_BODY_BYTES"),
                               (limit, "PIPELINE_MAX_UPLOAD_BYTES"))
    body = await read_capped(request, body_limit, variable)
    records = records_of(parse_body(body, max_depth=settings.api_max_depth))
    if len(records) > settings.api_max_records:
        raise WebError(413, f"一次提交了 {len(records)} 条更新，超过上限 {settings.api_max_records} 条"
                            f"（PIPELINE_API_MAX_RECORDS），请分批提交，未处理")
    sub = await run_in_threadpool(submit_records, rt, principal, records, actor_of(request, principal))
    return answer(sub, from_file=False)
