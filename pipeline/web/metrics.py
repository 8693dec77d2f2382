"""GET /metrics for Prometheus. Requires the office role: a signed-in office user or an office
user's API token (scrape with ``authorization: {credentials: <token>}``).

Figures are read from the database at scrape time by a collector of its own registry (so two
apps in one process never clash): updates by status, rejected rows, flags by colour, the outbox
by state, and the latency of applying import batches (received → applied) over the last 200.
HTTP request durations are observed in-process.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from pipeline.accounts import Principal
from pipeline.db import session_scope
from pipeline.models import ImportBatch, OutboxMessage, ProjectFlag, RejectedRow, StatusUpdate
from pipeline.runtime import Runtime
from pipeline.web.security import current_principal, require_office

router = APIRouter(tags=["运行状态"])


class DatabaseCollector(Collector):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Any]:
        with session_scope(self.runtime.read_session_factory) as s:
            updates = s.execute(select(StatusUpdate.status, func.count()).group_by(StatusUpdate.status)).all()
            rejected = s.scalar(select(func.count()).select_from(RejectedRow)) or 0
            flags = s.execute(select(ProjectFlag.effective_color, func.count())
                              .group_by(ProjectFlag.effective_color)).all()
            outbox = s.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all()
            recent = s.execute(
                select(ImportBatch.received_at, ImportBatch.applied_at)
                .where(ImportBatch.status == "applied", ImportBatch.applied_at.is_not(None))
                .order_by(ImportBatch.id.desc()).limit(200)
            ).all()
        g = GaugeMetricFamily("pipeline_updates", "Status updates stored, by status", labels=["status"])
        for status, n in updates:
            g.add_metric([status], n)
        yield g
        yield GaugeMetricFamily("pipeline_rejected_rows", "Rows (or whole files) refused at import", value=rejected)
        g = GaugeMetricFamily("pipeline_flags", "Projects by effective flag colour", labels=["color"])
        counts = dict(flags)
        for colour in ("red", "yellow", "green"):
            g.add_metric([colour], counts.get(colour, 0))
        yield g
        g = GaugeMetricFamily("pipeline_outbox_messages", "Outbox messages by state", labels=["status"])
        counts = dict(outbox)
        for status in ("pending", "sending", "sent", "failed", "skipped"):
            g.add_metric([status], counts.get(status, 0))
        yield g
        waits = [max(0.0, (a - r).total_seconds()) for r, a in recent if r and a]
        sm = SummaryMetricFamily("pipeline_batch_apply_seconds",
                                 "Seconds from receiving an import batch to applying it (last 200 batches)")
        sm.add_metric([], count_value=len(waits), sum_value=sum(waits))
        yield sm


def metrics_registry(runtime: Runtime) -> tuple[CollectorRegistry, Histogram]:
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(runtime))
    http = Histogram("pipeline_http_request_seconds", "HTTP request duration", ["method", "route", "status"],
                     registry=registry, buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10))
    return registry, http


def timing_middleware(http: Histogram) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        http.labels(request.method, path, str(response.status_code)).observe(time.perf_counter() - start)
        return response

    return observe


@router.get("/metrics", summary="Prometheus 指标（需投资科账号或其 API 令牌）", include_in_schema=True)
def metrics(request: Request, principal: Principal = Depends(current_principal)) -> Response:
    require_office(principal)
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
