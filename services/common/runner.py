"""Runs a service: the API app and the ops app on their own ports, until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

log = logging.getLogger(__name__)


async def serve(apps: list[tuple[web.Application, int]], host: str) -> None:
    """Start each (app, port); on SIGTERM stop accepting, let in-flight requests finish,
    clean up. The first app's cleanup_ctx (Redis, Kafka, background tasks) runs first."""
    runners = [web.AppRunner(app, access_log=None) for app, _ in apps]
    for runner in runners:
        await runner.setup()
    for runner, (_, port) in zip(runners, apps, strict=True):
        await web.TCPSite(runner, host, port, reuse_port=True).start()
    log.info("serving on %s ports %s", host, [port for _, port in apps])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    for runner in reversed(runners):
        await runner.cleanup()


def run(coro_factory: object) -> None:
    """Run the service's main coroutine on uvloop (a faster event loop for the hot path)."""
    import uvloop

    uvloop.run(coro_factory())  # type: ignore[operator]
