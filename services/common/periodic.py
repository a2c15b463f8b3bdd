"""Background refreshes of gauges: run a coroutine every `interval` seconds until cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

# An in-flight refresh gets this long to finish when the service stops.
SETTLE_SECONDS = 5.0


async def every(interval: float, refresh: Callable[[], Awaitable[None]], what: str) -> None:
    """Call refresh() now and then every `interval` seconds. A failure is logged, never
    raised: a gauge must not take the service down.

    On cancellation (service shutdown) an in-flight refresh is allowed to finish instead of
    being cancelled mid-call: a Redis or PostgreSQL call cancelled halfway can leave its
    connection with an unread reply, and closing the pool then waits for it forever."""
    while True:
        current = asyncio.ensure_future(refresh())
        try:
            await asyncio.shield(current)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(current, SETTLE_SECONDS)
            raise
        except Exception as exc:
            log.warning("%s refresh failed: %r", what, exc)
        await asyncio.sleep(interval)
