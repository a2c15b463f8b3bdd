"""Service processes for end-to-end tests: started as `python -m services.<name>`, killed
for real."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from services.common.settings import Settings
from tests.helpers import settings_env

ROOT = Path(__file__).resolve().parents[2]


class ServiceProcess:
    """python -m services.<name> as a child process, killed for real."""

    def __init__(self, name: str, settings: Settings, ops_port: int, log: Path) -> None:
        self.name, self.settings, self.ops_port, self.log = name, settings, ops_port, log
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            # Spawning returns at once; the wait for readiness below is async.
            self.proc = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, "-m", f"services.{self.name}"],
                cwd=ROOT,
                env=settings_env(self.settings),
                stdout=out,
                stderr=out,
            )
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                assert self.proc.poll() is None, self.log.read_text()[-3000:]
                with contextlib.suppress(aiohttp.ClientError):
                    url = f"http://127.0.0.1:{self.ops_port}/readyz"
                    async with http.get(url) as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} not ready:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@contextlib.asynccontextmanager
async def service(name: str, settings: Settings, tmp_path: Path) -> AsyncIterator[ServiceProcess]:
    port = getattr(settings, f"{name}_ops_port")
    proc = ServiceProcess(name, settings, port, tmp_path / f"{name}.log")
    await proc.start()
    try:
        yield proc
    finally:
        proc.stop()
