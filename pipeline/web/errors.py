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
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

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
    429: "请求过于频繁，请稍后再试",
    500: "服务器内部错误：请稍后重试；如果一直出现，请联系系统管理员查看服务日志",
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
    "int_parsing_size": "数值过大", "int_from_float": "应为整数", "greater_than": "数值过小", "less_than": "数值过大",
}
NUL_IN_REQUEST = "请求地址或参数中含有空字符（NUL），无法处理"
UNSTORABLE = "提交的数据含有数据库无法保存的内容（如空字符、超出范围的数字或超长文本），未保存"


class RefuseNul:
    """Answer 400 to a request whose path or query holds a NUL (PostgreSQL refuses it in any text)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"").lower()
            or b"\x00" in scope.get("query_string", b"")
        ):
            response = error_response(Request(scope), 400, NUL_IN_REQUEST)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        row, fld = _field_of(tuple(err.get("loc", ())))
        message = _PYDANTIC_ZH.get(err.get("type", ""), "值无效")
        out.append({"row": row, "field": fld, "message": message})
    return out


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> Response:
        """Starlette's last resort (ServerErrorMiddleware): a Chinese 500; the exception is re-raised
        after it and logged by the server."""
        try:
            return error_response(request, 500, STATUS_MESSAGES[500])
        except Exception:  # noqa: BLE001 - the error page itself failed: answer in plain text
            return PlainTextResponse(STATUS_MESSAGES[500], status_code=500)

    @app.exception_handler(WebError)
    async def _web_error(request: Request, exc: WebError) -> Response:
        return error_response(request, exc.status, exc.message, exc.errors)

    @app.exception_handler(ActionRefused)
    async def _refused(request: Request, exc: ActionRefused) -> Response:
        return error_response(request, 409, str(exc))

    @app.exception_handler(DataError)
    async def _unstorable(request: Request, exc: DataError) -> Response:
        return error_response(request, 422, UNSTORABLE)

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

    app.add_middleware(RefuseNul)
