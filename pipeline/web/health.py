"""GET /health: the database answers, and the broker too when one is configured. No sign-in needed;
it names no host and no credential."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from pipeline.web.security import runtime_of

router = APIRouter(tags=["运行状态"])


def check_database(request: Request) -> str:
    try:
        with runtime_of(request).engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:  # noqa: BLE001  (any failure is "down"; the class name is enough to report)
        return f"error: {type(exc).__name__}"


def check_broker(request: Request) -> str:
    settings = runtime_of(request).settings
    if settings.broker_url is None:
        return "embedded"
    try:
        from kombu import Connection

        with Connection(settings.broker_url, connect_timeout=2, transport_options={"max_retries": 0}) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as exc:  # noqa: BLE001
        return f"error: {type(exc).__name__}"


@router.get("/health", summary="健康检查：数据库与消息队列")
def health(request: Request) -> JSONResponse:
    checks: dict[str, Any] = {"database": check_database(request), "broker": check_broker(request)}
    healthy = all(v in ("ok", "embedded") for v in checks.values())
    return JSONResponse({"status": "ok" if healthy else "error", **checks}, status_code=200 if healthy else 503)
