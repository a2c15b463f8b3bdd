"""Every HTTP port of a service listens with HTTP_LISTEN_BACKLOG, not aiohttp's 128: at a
sale's opening thousands of connections arrive before the process accepts them. Read from
the kernel: for a listening socket, `ss -ltn` shows the backlog as Send-Q."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from services.common.settings import Settings
from tests.e2e.processes import service

pytestmark = pytest.mark.slow


def somaxconn() -> int:
    return int(Path("/proc/sys/net/core/somaxconn").read_text())


def listen_backlog(port: int) -> int:
    """The backlog the kernel holds for the socket listening on port (ss's Send-Q)."""
    ss = shutil.which("ss")
    assert ss is not None, "ss (iproute2) is needed to read listen backlogs"
    out = subprocess.run(
        [ss, "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out and out[0] == "LISTEN", out
    return int(out[2])


@pytest.mark.parametrize("configured", [None, 1234], ids=["default", "set"])
async def test_the_seckill_ports_listen_with_the_configured_backlog(
    settings: Settings, tmp_path: Path, configured: int | None
) -> None:
    cap = somaxconn()
    if configured is None:  # the default, as far as the kernel lets it
        expected = min(Settings().http_listen_backlog, cap)
        run = settings
    else:
        assert configured < cap, "pick a value the kernel does not cap"
        expected = configured
        run = dataclasses.replace(settings, http_listen_backlog=configured)
    assert expected > 128  # aiohttp's own default would not pass
    # The API alone: its Redis and PostgreSQL checks make it ready, no Kafka needed.
    api_only = dataclasses.replace(run, seckill_embedded_worker=False)
    async with service("seckill", api_only, tmp_path):
        assert listen_backlog(api_only.seckill_port) == expected
        assert listen_backlog(api_only.seckill_ops_port) == expected
