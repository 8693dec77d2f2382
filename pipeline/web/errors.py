"""Errors the web answers with: a status, a Chinese message and, for rows, the row and field.

API paths get JSON ``{"detail": "...", "errors": [{"row": 3, "field": "县市区", "message": "..."}]}``;
page paths get the error page, and a missing sign-in sends the browser to the login page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.errors import ActionRefused

NOT_SIGNED_IN = "未登录或登录已过期：请先登录，或在请求头中携带有效的 API 令牌（Authorization: Bearer …）"
STATUS_MESSAGES = {
    400: "请求无效",
    401: NOT_SIGNED_IN,
    403: "无权执行该操作",
    404: "未找到请求的页面或资源",
    405: "不支持该请求方法",
    413: "上传内容超过大小限制",
    415: "不支持的内容类型",
    422: "提交的数据未通过校验",
}


@dataclass
class WebError(Exception):
    status: int
    message: str
    errors: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


def unauthorized(message: str = NOT_SIGNED_IN) -> WebError:
    return WebError(401, message)


def forbidden(message: str) -> WebError:
    return WebError(403, message)


def is_api(request: Request) -> bool:
    path = request.url.path
    if path == "/api/docs":  # the docs page is a page: a browser is sent to the login
        return False
    return path.startswith("/api/") or path == "/api" or path == "/metrics"


def error_response(request: Request, status: int, message: str, errors: list[dict[str, Any]] | None = None) -> Response:
    if is_api(request):
        headers = {"WWW-Authenticate": 'Bearer realm="pipeline"'} if status == 401 else None
        return JSONResponse({"detail": message, "errors": errors or []}, status_code=status, headers=headers)
    if status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    templates = request.app.state.templates
    return templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message, "errors": errors or [],
                                "principal": getattr(request.state, "principal", None)},
        status_code=status,
    )


def _field_of(loc: tuple[Any, ...]) -> tuple[int | None, str | None]:
    """Row (1-based, for a list body) and field from a pydantic error location."""
    parts = [p for p in loc if p not in ("body", "query", "path", "header", "form")]
    row = None
    if parts and isinstance(parts[0], int):
        row = parts[0] + 1
        parts = parts[1:]
    return row, ".".join(str(p) for p in parts) or None


_PYDANTIC_ZH = {
    "missing": "必填项缺失", "int_parsing": "应为整数", "float_parsing": "应为数字", "date_from_datetime_parsing": "日期格式无效",
    "date_parsing": "日期格式无效", "string_too_long": "文本过长", "greater_than_equal": "数值过小",
    "less_than_equal": "数值过大", "literal_error": "取值不在允许范围内", "enum": "取值不在允许范围内",
    "json_invalid": "JSON 格式错误", "string_type": "应为文本", "model_attributes_type": "应为 JSON 对象",
    "dict_type": "应为 JSON 对象", "list_type": "应为列表", "date_type": "应为日期 YYYY-MM-DD",
    "bool_parsing": "应为 true 或 false", "string_pattern_mismatch": "格式不符合要求",
}


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        row, fld = _field_of(tuple(err.get("loc", ())))
        message = _PYDANTIC_ZH.get(err.get("type", ""), "值无效")
        out.append({"row": row, "field": fld, "message": message})
    return out


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(WebError)
    async def _web_error(request: Request, exc: WebError) -> Response:
        return error_response(request, exc.status, exc.message, exc.errors)

    @app.exception_handler(ActionRefused)
    async def _refused(request: Request, exc: ActionRefused) -> Response:
        return error_response(request, 409, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = validation_errors(exc)
        where = "；".join(
            (f"第{e['row']}行" if e["row"] else "") + (f"「{e['field']}」" if e["field"] else "") + e["message"]
            for e in errors
        )
        return error_response(request, 422, f"{STATUS_MESSAGES[422]}：{where}", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) and not exc.detail.isascii() else None
        return error_response(request, exc.status_code, detail or STATUS_MESSAGES.get(exc.status_code, "请求失败"))
