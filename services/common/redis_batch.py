"""Coalesces concurrent Redis script calls into pipelined round trips.

The redis-py asyncio client costs far more per call than Redis does per script, so the
hot path's throughput is in fewer round trips and fewer commands: every call that arrives
while a batch is in flight joins the next one, and calls of a script written to take many
at once (`call_merged`) become one command per shared key set.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import BusyLoadingError, NoScriptError
from redis.exceptions import ConnectionError as RedisConnectionError

log = logging.getLogger(__name__)

Arg = str | int


@dataclass(slots=True)
class _Call:
    script: AsyncScript
    keys: Sequence[str]
    args: Sequence[Arg]
    future: asyncio.Future[Any]
    # (shared keys, head args) of a merged call; None for a plain one.
    merge: tuple[tuple[str, ...], tuple[Arg, ...]] | None = None


@dataclass(slots=True)
class _Command:
    """One EVALSHA of a round trip, answering one call or, merged, several."""

    script: AsyncScript
    keys: list[str]
    args: list[Arg]
    futures: list[asyncio.Future[Any]] = field(default_factory=list)
    merged: bool = False

    def settle(self, result: Any) -> None:
        if isinstance(result, Exception):
            self._fail(result)
        elif not self.merged:
            _resolve(self.futures[0], result)
        elif not isinstance(result, list) or len(result) != len(self.futures):
            self._fail(ValueError(f"merged script answered {len(self.futures)} calls wrongly"))
        else:
            for future, reply in zip(self.futures, result, strict=True):
                _resolve(future, reply)

    def _fail(self, exc: BaseException) -> None:
        for future in self.futures:
            if not future.done():
                future.set_exception(exc)


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def commands(batch: Sequence[_Call]) -> list[_Command]:
    """The round trip's commands: plain calls one each, merged calls of one script and
    one shared key set together (KEYS = shared + each call's keys, ARGV = head + each
    call's args), in arrival order."""
    out: list[_Command] = []
    merged: dict[tuple[str, tuple[str, ...], tuple[Arg, ...]], _Command] = {}
    for call in batch:
        if call.merge is None:
            out.append(_Command(call.script, [*call.keys], [*call.args], [call.future]))
            continue
        shared_keys, head_args = call.merge
        group = (call.script.sha, shared_keys, head_args)
        command = merged.get(group)
        if command is None:
            command = _Command(call.script, [*shared_keys], [*head_args], merged=True)
            merged[group] = command
            out.append(command)
        command.keys.extend(call.keys)
        command.args.extend(call.args)
        command.futures.append(call.future)
    return out


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
            call = self._queue.get_nowait()
            if not call.future.done():
                call.future.set_exception(ConnectionError("service stopping"))

    async def call(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run the script once, in the next round trip."""
        return await self._enqueue(_Call(script, keys, args, self._future()))

    async def call_merged(
        self,
        script: AsyncScript,
        shared_keys: tuple[str, ...],
        head_args: tuple[Arg, ...],
        keys: Sequence[str],
        args: Sequence[Arg],
    ) -> Any:
        """Run a script that takes many calls at once (see `commands`) and answers a list
        with one reply per call; this call's reply is returned."""
        call = _Call(script, keys, args, self._future(), (shared_keys, head_args))
        return await self._enqueue(call)

    @staticmethod
    def _future() -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    async def _enqueue(self, call: _Call) -> Any:
        self._queue.put_nowait(call)
        return await call.future

    async def _work(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if self._on_batch is not None:
                self._on_batch(len(batch))
            pending = commands(batch)
            try:
                # A timeout covers the whole round trip; redis-py drops a connection whose
                # reply was abandoned, so no later call reads a stale reply.
                async with asyncio.timeout(self._timeout):
                    await self._execute(pending)
            except Exception as exc:
                # Only the commands not answered yet: settle() skips the others.
                for command in pending:
                    command.settle(exc)

    async def _execute(self, batch: list[_Command]) -> None:
        """Runs the batch and settles each command as soon as its reply is known, so a
        failure later in the round trip (reloading lost scripts) cannot be reported for
        commands that already ran."""
        results = await self._pipeline(batch)
        missing: list[_Command] = []
        for command, result in zip(batch, results, strict=True):
            if isinstance(result, NoScriptError):
                missing.append(command)
            else:
                command.settle(result)
        if missing:
            # Redis lost its script cache (restart, failover): NOSCRIPT means the script
            # did not run, so loading it and running those commands again is safe.
            for script in {command.script for command in missing}:
                await self._redis.script_load(script.script)
            retried = await self._pipeline(missing)
            for command, result in zip(missing, retried, strict=True):
                command.settle(result)

    async def _pipeline(self, batch: list[_Command]) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        for command in batch:
            pipe.evalsha(command.script.sha, len(command.keys), *command.keys, *command.args)
        try:
            return list(await pipe.execute(raise_on_error=False))
        except BusyLoadingError as exc:
            # redis-py raises at the first LOADING reply and leaves the rest unread. Redis
            # answers LOADING to everything until its data is loaded and never again after
            # (on a primary), so that first LOADING reply was the first command's: it did
            # not run. A later command may have been read after loading ended and run:
            # its outcome is unknown.
            batch[0].settle(exc)
            raise RedisConnectionError("reply unread after a LOADING reply") from exc
