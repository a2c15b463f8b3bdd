"""The services `make up` starts: what each runs, and that `down` can tell them apart."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator

import pytest

from services.common.settings import Settings
from tools.processes import command_line, padded_command_line
from tools.stack import SERVICES, Service, service_argv, service_env, service_marker


def service(name: str) -> Service:
    (found,) = [svc for svc in SERVICES if svc.name == name]
    return found


@pytest.fixture
def lookalike_worker() -> Iterator[int]:
    """A sleeping process whose command line ends like the seckill worker's."""
    code = "import time; print('up', flush=True); time.sleep(30)"
    argv = [sys.executable, "-c", code, "-m", "services.seckill.worker"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE) as proc:
        try:
            # Popen returns while execve may still be setting up the new command line.
            assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
            yield proc.pid
        finally:
            proc.kill()


def test_every_service_runs_an_existing_module_with_its_own_ops_port() -> None:
    settings = Settings()
    assert len({svc.name for svc in SERVICES}) == len(SERVICES)
    for svc in SERVICES:
        assert importlib.util.find_spec(svc.module) is not None, svc.module
    ports = [getattr(settings, svc.ops_port) for svc in SERVICES]
    assert len(set(ports)) == len(ports)


def test_the_seckill_api_leaves_its_background_work_to_the_worker_beside_it() -> None:
    api, worker = service("seckill"), service("seckill-worker")
    assert Settings.from_env(service_env(api)).seckill_embedded_worker is False
    assert worker.module == "services.seckill.worker"
    assert worker.ops_port == "seckill_worker_ops_port"


def test_no_service_s_marker_matches_another_service_s_command_line() -> None:
    for ours in SERVICES:
        for other in SERVICES:
            line = padded_command_line(service_argv(other))
            assert (service_marker(ours) in line) == (ours == other), (ours.name, other.name)


def test_a_running_seckill_worker_is_not_taken_for_the_seckill_api(lookalike_worker: int) -> None:
    line = command_line(lookalike_worker)
    assert service_marker(service("seckill-worker")) in line
    assert service_marker(service("seckill")) not in line
