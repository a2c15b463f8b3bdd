"""Live figures for the merchant console's sale board, as Server-Sent Events.

A board opens one stream per service (seckill or groupbuy for the sale, order for its
orders); each stream sends an `event: figures` with a JSON object every `interval`
seconds, read from the service's own state (Redis, PostgreSQL), never from Prometheus.
Viewers of one sale share each reading (FiguresCache), so a hundred open boards cost one
query per interval. Streams are bounded per process and end when the service shuts down
or after `max_seconds` (the client reconnects), so a forgotten tab holds nothing for
ever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import orjson
from aiohttp import web

from services.common.errors import DomainError
from services.common.redis_faults import REDIS_DOWN
from services.common.resources import PG_TRANSIENT

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

# The board promises an update at least once a second. Four a second keep what it shows
# within about a third of a second of the truth (measured by `make demo`) for a few
# hundred bytes a second per viewer.
DEFAULT_INTERVAL_SECONDS = 0.25
# One reading per sale this often, whatever the number of viewers: short next to the
# interval, so a shared reading adds little to the lag.
SHARED_READING_SECONDS = 0.1
MAX_STREAM_SECONDS = 3600.0
MAX_STREAMS_PER_PROCESS = 64


@dataclass
class LiveStreams:
    """The open streams of one process; all end when the app shuts down."""

    limit: int = MAX_STREAMS_PER_PROCESS
    open: int = 0
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    def install(self, app: web.Application) -> None:
        app[LIVE_STREAMS] = self

        async def close(_: web.Application) -> None:
            # Before aiohttp waits for in-flight handlers: a stream would hold the
            # shutdown for its whole timeout.
            self.closing.set()

        app.on_shutdown.append(close)


LIVE_STREAMS: web.AppKey[LiveStreams] = web.AppKey("live_streams", LiveStreams)


class FiguresCache(Generic[K]):
    """One reading per key per `ttl` seconds, shared by every stream that asks."""

    def __init__(self, read: Callable[[K], Awaitable[dict[str, Any]]], ttl: float) -> None:
        self._read = read
        self._ttl = ttl
        self._last: dict[K, tuple[float, dict[str, Any]]] = {}
        self._locks: dict[K, asyncio.Lock] = {}

    async def get(self, key: K) -> dict[str, Any]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            now = time.monotonic()
            last = self._last.get(key)
            if last is not None and now - last[0] < self._ttl:
                return last[1]
            figures = await self._read(key)
            self._last[key] = (time.monotonic(), figures)
            if len(self._last) > 1024:
                # Boards of many past sales: keep the map bounded.
                oldest = min(self._last, key=lambda k: self._last[k][0])
                self._last.pop(oldest, None)
                self._locks.pop(oldest, None)
            return figures


def sse_event(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def stream_figures(
    request: web.Request,
    read: Callable[[], Awaitable[dict[str, Any]]],
    interval: float = DEFAULT_INTERVAL_SECONDS,
    max_seconds: float = MAX_STREAM_SECONDS,
) -> web.StreamResponse:
    """Serve `read()` as an SSE stream until the client leaves or the service stops.

    The first reading is taken before the stream opens, so an unknown sale or a bad
    request is still answered with a plain JSON error. A reading that fails later (Redis
    or PostgreSQL down) becomes an `event: unavailable` and the stream goes on; one that
    refuses (the sale is gone) becomes a last `event: unavailable` with its error."""
    streams = request.app[LIVE_STREAMS]
    if streams.open >= streams.limit:
        raise DomainError(
            503,
            "too_many_streams",
            "this process serves as many live boards as it may: retry shortly",
            {"Retry-After": "5"},
        )
    first = await read()
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            # nginx would buffer the stream otherwise.
            "X-Accel-Buffering": "no",
        }
    )
    streams.open += 1
    try:
        await response.prepare(request)
        await response.write(b"retry: 1000\n\n" + sse_event("figures", first))
        ends = time.monotonic() + max_seconds
        while time.monotonic() < ends:
            try:
                await asyncio.wait_for(streams.closing.wait(), interval)
                break
            except TimeoutError:
                pass
            try:
                chunk = sse_event("figures", await read())
            except (*REDIS_DOWN, *PG_TRANSIENT) as exc:
                log.warning("live figures unavailable on %s: %r", request.path, exc)
                chunk = sse_event(
                    "unavailable",
                    {"error": "unavailable", "message": "figures cannot be read right now"},
                )
            except DomainError as exc:
                # The status line is sent: an error answer now would be written into the
                # stream as garbage. The last event says why, and the stream ends; a
                # reconnect gets the JSON error (e.g. 404 for a sale no longer there).
                await response.write(
                    sse_event("unavailable", {"error": exc.code, "message": exc.message})
                )
                break
            await response.write(chunk)
    except (ConnectionResetError, ConnectionError):
        pass  # the viewer closed the board
    finally:
        streams.open -= 1
    return response
