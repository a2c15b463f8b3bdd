"""Ops endpoints on their own port (never routed by the gateway): /healthz, /readyz, /metrics.

Every process serves one: besides its own metrics, /metrics carries the process's CPU,
memory, open files, garbage collections and event-loop lag."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)

from services.common.http import json_response
from services.common.loop_lag import LoopLag
from services.common.shutdown import stop_tasks

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[object]]
READY_TIMEOUT_SECONDS = 2.0


async def run_checks(checks: Mapping[str, ReadinessCheck]) -> dict[str, str]:
    """Run every dependency check with a timeout; 'ok' or the failure, per dependency."""

    async def one(check: ReadinessCheck) -> str:
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                await check()
            return "ok"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"[:200]

    names = list(checks)
    results = await asyncio.gather(*(one(checks[n]) for n in names))
    return dict(zip(names, results, strict=True))


def register_process_metrics(registry: CollectorRegistry) -> None:
    """process_* (CPU, resident memory, open fds), python_gc_* and python_info on a
    service's own registry: prometheus_client registers its collectors only on its global
    REGISTRY, which no service serves."""
    for collector in (PROCESS_COLLECTOR, GC_COLLECTOR, PLATFORM_COLLECTOR):
        registry.register(collector)


def create_ops_app(
    registry: CollectorRegistry,
    checks: Mapping[str, ReadinessCheck],
    informational: frozenset[str] = frozenset(),
) -> web.Application:
    """checks: dependency name -> check. A failing check makes /readyz answer 503, except
    the informational ones, which only mark the service "degraded" (for example Kafka for
    seckill: reservations keep succeeding and queue in the outbox while it is down).

    Adds the process metrics to the registry and measures the event loop's lag while the
    app runs (on the loop that serves the service: one ops app per process)."""
    register_process_metrics(registry)
    loop_lag = LoopLag(registry)

    async def watch_loop(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(loop_lag.run(), name="event-loop-lag")
        yield
        await stop_tasks([task])

    async def healthz(_: web.Request) -> web.Response:
        return json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        results = await run_checks(checks)
        failing = {n for n, r in results.items() if r != "ok"}
        ready = failing <= informational
        status = "not_ready" if not ready else "degraded" if failing else "ready"
        if failing:
            log.warning("readiness %s: %s", status, results)
        return json_response({"status": status, "checks": results}, 200 if ready else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.cleanup_ctx.append(watch_loop)
    return app
