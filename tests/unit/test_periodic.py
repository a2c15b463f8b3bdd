"""Periodic gauge refreshes: failures are survived, shutdown lets a refresh finish."""

from __future__ import annotations

import asyncio
import contextlib

from services.common.periodic import every


async def test_a_failing_refresh_is_retried_at_the_next_interval() -> None:
    calls = 0

    async def refresh() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    task = asyncio.create_task(every(0.01, refresh, "test"))
    await asyncio.sleep(0.1)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert calls >= 3


async def test_cancelling_lets_the_refresh_in_flight_finish_rather_than_cut_it() -> None:
    started, finished = asyncio.Event(), asyncio.Event()

    async def refresh() -> None:
        started.set()
        await asyncio.sleep(0.05)  # a Redis or PostgreSQL call in flight
        finished.set()

    task = asyncio.create_task(every(10, refresh, "test"))
    await started.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert finished.is_set()
    assert task.cancelled()
