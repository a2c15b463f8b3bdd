"""Runs a service: the API app and the ops app on their own ports, until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from services.common.http_server import ServiceRunner
from services.common.settings import Settings

log = logging.getLogger(__name__)


async def serve(apps: list[tuple[web.Application, int]], settings: Settings) -> None:
    """Start each (app, port) on settings.http_host; on SIGTERM stop accepting, let
    in-flight requests finish, clean up. The first app's cleanup_ctx (Redis, Kafka,
    background tasks) runs first."""
    host = settings.http_host
    runners = [ServiceRunner(app, access_log=None) for app, _ in apps]
    for runner in runners:
        await runner.setup()
    for runner, (_, port) in zip(runners, apps, strict=True):
        # aiohttp's default backlog (128) overflows at a sale's opening, and while it is
        # full the kernel drops new connections. The kernel caps it at
        # net.core.somaxconn (docs/operations.md).
        site = web.TCPSite(
            runner, host, port, reuse_port=True, backlog=settings.http_listen_backlog
        )
        await site.start()
    log.info(
        "serving on %s ports %s (listen backlog %d)",
        host,
        [port for _, port in apps],
        settings.http_listen_backlog,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    for runner in reversed(runners):
        await runner.cleanup()


def run(coro_factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run the service's main coroutine on uvloop (a faster event loop for the hot path)."""
    import uvloop

    uvloop.run(coro_factory())
