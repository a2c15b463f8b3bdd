"""Coalesces concurrent Redis script calls into pipelined round trips.

The redis-py asyncio client costs far more per call than Redis does per script, so the
hot path's throughput is in fewer round trips: every call that arrives while a batch is
in flight joins the next one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

log = logging.getLogger(__name__)

_Call = tuple[AsyncScript, Sequence[str], Sequence[str | int], "asyncio.Future[Any]"]


class ScriptBatcher:
    def __init__(
        self,
        redis: Redis,
        max_batch: int,
        timeout_seconds: float,
        workers: int = 2,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._redis = redis
        self._max_batch = max_batch
        self._timeout = timeout_seconds
        self._queue: asyncio.Queue[_Call] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._n_workers = workers
        self._on_batch = on_batch

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work()) for _ in range(self._n_workers)]

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        while not self._queue.empty():
            *_, fut = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(ConnectionError("service stopping"))

    async def call(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[str | int]
    ) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((script, keys, args, fut))
        return await fut

    async def _work(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if self._on_batch is not None:
                self._on_batch(len(batch))
            try:
                # A timeout covers the whole round trip; redis-py drops a connection whose
                # reply was abandoned, so no later call reads a stale reply.
                async with asyncio.timeout(self._timeout):
                    results = await self._execute(batch)
            except Exception as exc:
                for *_, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (*_, fut), result in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(result, Exception):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)

    async def _execute(self, batch: list[_Call]) -> list[Any]:
        results = await self._pipeline(batch)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            # Redis lost its script cache (restart, failover): NOSCRIPT means the script
            # did not run, so loading it and running those calls again is safe.
            for script in {batch[i][0] for i in missing}:
                await self._redis.script_load(script.script)
            retried = await self._pipeline([batch[i] for i in missing])
            for i, result in zip(missing, retried, strict=True):
                results[i] = result
        return results

    async def _pipeline(self, batch: list[_Call]) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        for script, keys, args, _ in batch:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))
