"""Service processes for end-to-end tests: started as `python -m services.<name>`, killed
for real."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from services.common.settings import Settings
from tests.child_process import ChildProcess
from tests.helpers import settings_env

ROOT = Path(__file__).resolve().parents[2]


class ServiceProcess(ChildProcess):
    """python -m services.<name> as a child process, killed for real."""

    def __init__(self, name: str, settings: Settings, ops_port: int, log: Path) -> None:
        super().__init__(log)
        self.name, self.settings, self.ops_port = name, settings, ops_port

    async def start(self, within: float = 60.0) -> None:
        with self.log.open("ab") as out:
            # Spawning returns at once; the wait for readiness below is async.
            self.proc = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, "-m", f"services.{self.name}"],
                cwd=ROOT,
                env=settings_env(self.settings),
                stdout=out,
                stderr=out,
            )
        deadline = time.monotonic() + within
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, self.log_tail()
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    url = f"http://127.0.0.1:{self.ops_port}/readyz"
                    async with http.get(url) as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.1)
        self.stop()
        raise AssertionError(f"{self.name} not ready within {within} s:\n{self.log_tail()}")


@contextlib.asynccontextmanager
async def service(name: str, settings: Settings, tmp_path: Path) -> AsyncIterator[ServiceProcess]:
    # "seckill.worker" runs services.seckill.worker, ops port seckill_worker_ops_port.
    port = getattr(settings, f"{name.replace('.', '_')}_ops_port")
    proc = ServiceProcess(name, settings, port, tmp_path / f"{name}.log")
    try:
        await proc.start()
        yield proc
    except BaseException as exc:
        # What the service logged is what explains a failed end-to-end test.
        exc.add_note(f"--- {name} log (tail) ---\n{proc.log_tail()}")
        raise
    finally:
        proc.stop()


def create_merchant(settings: Settings, name: str, role: str, password: str) -> None:
    """A merchant account, made with identity's account command as an operator would."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.identity.admin",
            "create",
            name,
            "--role",
            role,
            "--password-stdin",
        ],
        cwd=ROOT,
        env=settings_env(settings),
        input=f"{password}\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert password not in done.stdout + done.stderr
