"""services.common.live: a figures stream as a browser's fetch() sees it."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from services.common.errors import NotFound
from services.common.http import HttpMetrics, errors_and_metrics_middleware
from services.common.live import LIVE_STREAMS, LiveStreams, stream_figures


def _app(readings: list[dict[str, Any]], limit: int = 4) -> web.Application:
    app = web.Application(
        middlewares=[errors_and_metrics_middleware(HttpMetrics(CollectorRegistry()))]
    )
    LiveStreams(limit=limit).install(app)

    async def read() -> dict[str, Any]:
        if not readings:
            raise NotFound("sale")
        return readings.pop(0) if len(readings) > 1 else readings[0]

    async def live(request: web.Request) -> web.StreamResponse:
        return await stream_figures(request, read, interval=0.05)

    app.router.add_get("/live", live)
    return app


async def _events(response: Any, count: int) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    name = ""
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            events.append((name, orjson.loads(line[len("data: ") :])))
            if len(events) == count:
                break
    return events


async def test_a_stream_sends_each_reading_as_a_figures_event() -> None:
    app = _app([{"n": 1}, {"n": 2}, {"n": 3}])
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/live")
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["X-Accel-Buffering"] == "no"
        events = await _events(response, 4)
        assert (
            events == [("figures", {"n": 1}), ("figures", {"n": 2})] + [("figures", {"n": 3})] * 2
        )
        response.close()


async def test_a_sale_that_cannot_be_read_is_refused_before_the_stream_opens() -> None:
    async with TestClient(TestServer(_app([]))) as client:
        response = await client.get("/live")
        assert response.status == 404
        assert (await response.json())["error"] == "not_found"


async def test_streams_past_the_limit_are_refused_and_shutdown_ends_the_open_ones() -> None:
    app = _app([{"n": 1}], limit=1)
    async with TestClient(TestServer(app)) as client:
        first = await client.get("/live")
        await _events(first, 1)
        assert app[LIVE_STREAMS].open == 1
        refused = await client.get("/live")
        assert refused.status == 503
        assert (await refused.json())["error"] == "too_many_streams"
        assert refused.headers["Retry-After"] == "5"
        assert app[LIVE_STREAMS].open == 1
        app[LIVE_STREAMS].closing.set()
        rest = await first.content.read()
        assert rest.count(b"event: figures") <= 1
        assert app[LIVE_STREAMS].open == 0


async def test_a_refusing_reading_after_the_first_ends_the_stream_cleanly() -> None:
    readings = iter([{"n": 1}])

    async def read() -> dict[str, Any]:
        try:
            return next(readings)
        except StopIteration:
            raise NotFound("sale") from None

    app = web.Application(
        middlewares=[errors_and_metrics_middleware(HttpMetrics(CollectorRegistry()))]
    )
    LiveStreams().install(app)

    async def live(request: web.Request) -> web.StreamResponse:
        return await stream_figures(request, read, interval=0.01)

    app.router.add_get("/live", live)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/live")
        assert response.status == 200
        body = (await response.content.read()).decode()
    assert body.endswith(
        'event: unavailable\ndata: {"error":"not_found","message":"sale not found"}\n\n'
    )
    assert body.count("event: figures") == 1
    assert app[LIVE_STREAMS].open == 0


async def test_a_method_a_route_does_not_take_is_405_naming_the_ones_it_does() -> None:
    app = _app([{"n": 1}])
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/live")
        assert response.status == 405
        assert (await response.json())["error"] == "method_not_allowed"
        assert response.headers["Allow"] == "GET,HEAD"


async def test_postgres_refusing_connections_is_503_database_unavailable() -> None:
    app = web.Application(
        middlewares=[errors_and_metrics_middleware(HttpMetrics(CollectorRegistry()))]
    )

    async def handler(request: web.Request) -> web.Response:
        # What the pool raises when it opens a connection while PostgreSQL restarts.
        raise ConnectionRefusedError(111, "Connection refused")

    app.router.add_get("/orders", handler)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/orders")
        assert response.status == 503
        assert (await response.json())["error"] == "database_unavailable"
        assert response.headers["Retry-After"] == "1"
