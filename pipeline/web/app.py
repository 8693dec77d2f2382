"""The FastAPI application factory: ``create_app(runtime)``; nothing is built at import time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from pipeline.alerts.holidays import missing_calendar_notices
from pipeline.runtime import Runtime
from pipeline.web import api_actions, api_ingest, api_projects, auth, docs, health, metrics, pages
from pipeline.web.errors import install_handlers
from pipeline.web.figures import RatesCache
from pipeline.web.queries import COLOR_NAMES
from pipeline.web.security import session_secret

HERE = Path(__file__).resolve().parent
CAUSE_NAMES = {"update": "月报更新", "reflag": "重新评估", "override": "人工调整", "override_expired": "人工调整到期",
               "override_revoked": "撤销人工调整", "acknowledge": "确认红牌"}
VALUE_LABELS = {
    "actual_start": "实际开工", "annual_plan": "年度计划投资（万元）", "as_of": "评估日期", "days_since_report": "未更新天数",
    "days_since_start": "开工以来天数", "delay_month": "延误第几个月", "overdue_days": "逾期天数", "pace_gap": "进度差（百分点）",
    "pace_percent": "完成比（%）", "pace_ratio": "完成比", "planned_completion": "计划竣工", "planned_start": "计划开工",
    "previous_month_end": "上月末", "problems": "存在问题", "report_date": "最近报告期", "target": "序时目标（万元）",
    "time_progress": "序时进度（%）", "ytd_completed": "本年完成投资（万元）",
}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")


def money(value: Decimal | float | int | None, places: int = 0) -> str:
    """万元 with thousands separators; — when unknown."""
    if value is None:
        return "—"
    return f"{float(value):,.{places}f}"


def shown_date(value: date | datetime | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return value.isoformat()


def templates_for() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))  # autoescape on for .html
    env = templates.env
    assert env.autoescape, "templates must autoescape"
    env.filters["money"] = money
    env.filters["d"] = shown_date
    env.globals["COLOR_NAMES"] = COLOR_NAMES
    env.globals["CAUSE_NAMES"] = CAUSE_NAMES
    env.globals["VALUE_LABELS"] = VALUE_LABELS
    return templates


async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    response = await call_next(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if not request.url.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def create_app(runtime: Runtime) -> FastAPI:
    """The web workspace over this runtime: API under /api/, pages, /health, /metrics, static assets."""
    secret = session_secret(runtime.settings)
    app = FastAPI(
        title="重大项目红黄绿挂牌监测系统 API",
        description="项目月报报送、挂牌与三率查询、人工调整与红牌确认、预警发送队列。"
                    "认证：Authorization: Bearer <令牌>（`pipeline token create 用户名` 生成），或网页登录会话。",
        version="1.0",
        docs_url=None, redoc_url=None, openapi_url=None,  # served by pipeline.web.docs, behind the sign-in
    )
    app.state.runtime = runtime
    app.state.templates = templates_for()
    calendar = runtime.review_calendar  # reviews.yaml and holidays.yaml, validated at start-up
    app.state.templates.env.globals["calendar_notices"] = lambda: missing_calendar_notices(
        calendar.days, runtime.clock.now().date())
    app.state.rates = RatesCache(runtime.session_factory)
    registry, http_histogram = metrics_registry_for(runtime)
    app.state.metrics_registry = registry

    install_handlers(app)
    app.middleware("http")(metrics.timing_middleware(http_histogram))
    app.middleware("http")(security_headers)
    app.add_middleware(
        SessionMiddleware, secret_key=secret, session_cookie="pipeline_session",
        max_age=runtime.settings.session_max_age, same_site="lax",
        https_only=runtime.settings.public_url.startswith("https://"),
    )
    for module in (health, auth, docs, metrics, api_projects, api_ingest, api_actions, pages):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    _declare_bearer(app)
    return app


def _declare_bearer(app: FastAPI) -> None:
    """Declare the bearer token in the OpenAPI document (so the docs' "Authorize" button works)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
                "type": "http", "scheme": "bearer", "description": "pipeline token create 用户名"}
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def metrics_registry_for(runtime: Runtime) -> Any:
    return metrics.metrics_registry(runtime)
