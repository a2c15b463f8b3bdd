"""A redis-server of the test's own, killed and restarted for real.

Tests that take Redis down must not touch the shared one: each starts its own on a free
port with its data (AOF) in a temporary directory, SIGKILLs it and starts it again on the
same port with the same data.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.child_process import ChildProcess
from tests.helpers import free_port

REDIS_SERVER = "/usr/bin/redis-server"


class RedisServer(ChildProcess):
    """/usr/bin/redis-server on a free port, AOF on (every write fsynced, so a SIGKILL
    loses nothing the test wrote), RDB snapshots off."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.dir = workdir
        self.port = port or free_port()
        super().__init__(workdir / "redis.log")

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def spawn(self, *extra: str) -> None:
        """Start the process; returns at once (see wait_ready)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.dir.mkdir(parents=True, exist_ok=True)
        args: Sequence[str] = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--logfile",
            str(self.log),
            *extra,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def wait_ready(self, within: float = 20.0) -> None:
        """Until the server answers PING (listening and done loading its data)."""
        deadline = time.monotonic() + within
        client = Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        try:
            while True:
                assert self.proc is not None and self.proc.poll() is None, self.log_tail()
                try:
                    if await client.ping():
                        return
                except (RedisConnectionError, BusyLoadingError, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"redis not ready in {within} s: {self.log_tail()}")
                await asyncio.sleep(0.02)
        finally:
            await client.aclose()

    async def start(self, *extra: str) -> None:
        self.spawn(*extra)
        await self.wait_ready()

    async def restart(self, *extra: str) -> None:
        """SIGKILL, then the same port and data again, answering."""
        self.kill()
        await self.start(*extra)

    async def restart_loading(self, seconds: float = 3.0) -> None:
        """SIGKILL, then start again and return while Redis is still loading its data
        (answering LOADING), which it then does for about `seconds` more: filler keys are
        compacted into the AOF's RDB part, whose loading Redis's own debug setting
        key-load-delay slows down, and it serves clients between every KB it loads."""
        client = Redis(host="127.0.0.1", port=self.port)
        try:
            pipe = client.pipeline(transaction=False)
            for i in range(int(seconds * 1000)):  # at about 1 ms per key
                pipe.set(f"filler:{i}", "x" * 100)
            await pipe.execute()
            await self._rewrite_done(client)  # the start-up one, if any
            await client.bgrewriteaof()
            await self._rewrite_done(client)
        finally:
            await client.aclose()
        self.kill()
        self.spawn("--key-load-delay", "1000", "--loading-process-events-interval-bytes", "1024")
        await self._until_loading()

    @staticmethod
    async def _rewrite_done(client: Redis) -> None:
        while True:
            info = await client.info("persistence")
            if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
                return
            await asyncio.sleep(0.05)

    async def _until_loading(self, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        client = Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                with contextlib.suppress(RedisConnectionError, OSError):
                    if (await client.info("persistence"))["loading"]:
                        return
                await asyncio.sleep(0.01)
            raise AssertionError(f"redis never seen loading: {self.log_tail()}")
        finally:
            await client.aclose()


@contextlib.asynccontextmanager
async def redis_server(workdir: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(workdir)
    try:
        await server.start()
        yield server
    finally:
        server.stop()
