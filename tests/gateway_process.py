"""A real nginx gateway for tests, rendered as `make up` renders it (tools/deploy.py)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

from services.common.settings import Settings
from tests.deploy.tools import require
from tools.deploy import (
    GatewayValues,
    local_gateway_values,
    render_nginx_conf,
    write_gateway_openapi,
)

NGINX_HOW = "install the Debian package nginx (make infra does when root)"


@dataclasses.dataclass(frozen=True)
class Urls:
    """Base URLs of a running gateway's two servers."""

    public: str
    admin: str


@contextlib.asynccontextmanager
async def running_gateway(
    settings: Settings, run_dir: Path, status_listen: str | None = None
) -> AsyncIterator[Urls]:
    """nginx on settings.gateway_port (public) and admin_gateway_port, in front of the
    services at settings' ports; stopped on exit."""
    nginx = require("nginx", NGINX_HOW)
    (run_dir / "tmp").mkdir(parents=True)
    values: GatewayValues = local_gateway_values(settings, run_dir)
    if status_listen is not None:
        values = dataclasses.replace(values, status_listen=status_listen)
    conf = run_dir / "nginx.conf"
    conf.write_text(render_nginx_conf(values))
    write_gateway_openapi(run_dir)
    log = run_dir / "error.log"
    argv = ["-c", str(conf), "-e", str(log), "-g", "daemon off;"]
    quiet = asyncio.subprocess.DEVNULL
    proc = await asyncio.create_subprocess_exec(nginx, *argv, stdout=quiet, stderr=quiet)
    try:
        await _listening(proc, settings, log)
        yield Urls(
            f"http://127.0.0.1:{settings.gateway_port}",
            f"http://127.0.0.1:{settings.admin_gateway_port}",
        )
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def _listening(proc: asyncio.subprocess.Process, settings: Settings, log: Path) -> None:
    for _ in range(100):
        try:
            for port in (settings.gateway_port, settings.admin_gateway_port):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
            return
        except OSError:
            assert proc.returncode is None, _text(log)
            await asyncio.sleep(0.05)
    raise AssertionError("nginx did not start")


def _text(log: Path) -> str:
    return log.read_text() if log.exists() else ""
