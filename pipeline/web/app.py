"""The FastAPI application factory: ``create_app(runtime)``; nothing is built at import time."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp

from pipeline.alerts.holidays import missing_calendar_notices
from pipeline.rules.presentation import rule_names, shown_values
from pipeline.runtime import Runtime
from pipeline.web import (
    alert_pages,
    api_actions,
    change_pages,
    api_ingest,
    api_outlook,
    api_projects,
    audit_log,
    auth,
    bulletin_pages,
    docs,
    health,
    metrics,
    outlook_pages,
    pages,
    upload_pages,
    users,
)
from pipeline.web.errors import install_handlers
from pipeline.web.figures import RatesCache
from pipeline.web.headers import SecurityHeaders
from pipeline.web.upload_progress import UploadProgress
from pipeline.web.queries import COLOR_NAMES
from pipeline.web.security import session_secret

HERE = Path(__file__).resolve().parent
CAUSE_NAMES = {"update": "月报更新", "reflag": "重新评估", "override": "人工调整", "override_expired": "人工调整到期",
               "override_revoked": "撤销人工调整", "acknowledge": "确认红牌", "change_request": "批准变更申请"}


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


def templates_for(runtime: Runtime) -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))  # autoescape on for .html
    env = templates.env
    assert env.autoescape, "templates must autoescape"
    env.filters["money"] = money
    env.filters["d"] = shown_date
    env.globals["COLOR_NAMES"] = COLOR_NAMES
    env.globals["CAUSE_NAMES"] = CAUSE_NAMES
    env.globals["shown_values"] = shown_values
    env.globals["rule_names"] = rule_names(runtime.scheme.rules)  # 未按期开工 for START_OVERDUE
    env.globals["pending_changes"] = lambda principal: change_pages.pending_for(runtime, principal)
    return templates


class WorkspaceApp(FastAPI):
    """FastAPI with the security headers outside every other layer, so that even the 500 that
    Starlette's ServerErrorMiddleware sends for an unhandled exception carries them."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack(), proxies=self.state.runtime.settings.trusted_proxies)


def create_app(runtime: Runtime) -> FastAPI:
    """The web workspace over this runtime: API under /api/, pages, /health, /metrics, static assets."""
    secret = session_secret(runtime.settings)
    app = WorkspaceApp(
        title="重大项目红黄绿挂牌监测系统 API",
        description="项目月报报送、挂牌与三率查询、人工调整与红牌确认、预警发送队列。"
                    "认证：Authorization: Bearer <令牌>（`pipeline token create 用户名` 生成），或网页登录会话。",
        version="1.0",
        docs_url=None, redoc_url=None, openapi_url=None,  # served by pipeline.web.docs, behind the sign-in
    )
    app.state.runtime = runtime
    app.state.templates = templates_for(runtime)
    app.state.upload_progress = UploadProgress()
    calendar = runtime.review_calendar  # reviews.yaml and holidays.yaml, validated at start-up
    app.state.templates.env.globals["calendar_notices"] = lambda: missing_calendar_notices(
        calendar.days, runtime.clock.now().date())
    app.state.rates = RatesCache(runtime.read_session_factory, reference=runtime.reference,
                                 chunk_size=runtime.settings.reflag_chunk_size)
    app.state.bulletins = bulletin_pages.BulletinCache()
    registry, http_histogram = metrics_registry_for(runtime)
    app.state.metrics_registry = registry

    install_handlers(app)
    app.middleware("http")(metrics.timing_middleware(http_histogram))
    app.add_middleware(
        SessionMiddleware, secret_key=secret, session_cookie="pipeline_session",
        max_age=runtime.settings.session_max_age, same_site="lax",
        https_only=runtime.settings.public_url.startswith("https://"),
    )
    for module in (health, auth, docs, metrics, api_projects, api_outlook, api_ingest, api_actions, pages, outlook_pages,
                   upload_pages, alert_pages, users, audit_log, bulletin_pages):
        app.include_router(module.router)
    app.include_router(change_pages.api)
    app.include_router(change_pages.pages)
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
