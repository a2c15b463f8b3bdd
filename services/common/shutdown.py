"""Bounded shutdown: a service asked to stop must stop, even if a dependency hangs."""

from __future__ import annotations

import asyncio
import io
import logging

import asyncpg

log = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 10.0


async def stop_tasks(tasks: list[asyncio.Task[None]], within: float = STOP_TIMEOUT_SECONDS) -> None:
    """Cancel background tasks and wait for them, at most timeout; stragglers are logged
    with their stack (a task that ignores cancellation is a bug worth seeing)."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    done, pending = await asyncio.wait(tasks, timeout=within)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed before stop: %r", task.get_name(), task.exception())
    for task in pending:
        stack = io.StringIO()
        task.print_stack(file=stack)
        log.error(
            "task %s did not stop within %.0f s:\n%s", task.get_name(), within, stack.getvalue()
        )


async def close_pool(pool: asyncpg.Pool, within: float = STOP_TIMEOUT_SECONDS) -> None:
    """Close gracefully (waits for connections in use), else terminate."""
    try:
        await asyncio.wait_for(pool.close(), within)
    except TimeoutError:
        log.error("PostgreSQL pool did not close within %.0f s; terminating it", within)
        pool.terminate()
