"""The processes `make up` starts: what each runs, in which order, with which settings,
and that `down` can tell them apart."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from collections.abc import Iterator, Sequence

import pytest

from services.common.settings import Settings
from tools import devstack
from tools.processes import command_line, padded_command_line
from tools.stack import (
    PROCESSES,
    SERVICES,
    STAND_INS,
    Service,
    service_argv,
    service_env,
    service_marker,
)


def service(name: str) -> Service:
    (found,) = [svc for svc in PROCESSES if svc.name == name]
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


def test_every_process_runs_an_existing_module_with_its_own_ops_port() -> None:
    settings = Settings()
    assert len({svc.name for svc in PROCESSES}) == len(PROCESSES)
    for svc in PROCESSES:
        assert importlib.util.find_spec(svc.module) is not None, svc.module
    ports = [getattr(settings, svc.ops_port) for svc in PROCESSES]
    assert len(set(ports)) == len(ports)


def test_the_seckill_api_leaves_its_background_work_to_the_worker_beside_it() -> None:
    api, worker = service("seckill"), service("seckill-worker")
    assert Settings.from_env(service_env(api, Settings())).seckill_embedded_worker is False
    assert worker.module == "services.seckill.worker"
    assert worker.ops_port == "seckill_worker_ops_port"


def test_no_process_s_marker_matches_another_process_s_command_line() -> None:
    for ours in PROCESSES:
        for other in PROCESSES:
            line = padded_command_line(service_argv(other))
            assert (service_marker(ours) in line) == (ours == other), (ours.name, other.name)


def test_a_running_seckill_worker_is_not_taken_for_the_seckill_api(lookalike_worker: int) -> None:
    line = command_line(lookalike_worker)
    assert service_marker(service("seckill-worker")) in line
    assert service_marker(service("seckill")) not in line


def test_the_fake_wechat_provider_is_ready_before_identity_and_is_never_deployed() -> None:
    fake = service("fake-wechat")
    assert (fake.module, fake.ops_port, fake.ready_path) == (
        "tools.fake_wechat",
        "fake_wechat_port",
        "/fake/messages",
    )
    assert STAND_INS == (fake,) and PROCESSES == STAND_INS + SERVICES
    # SERVICES is what Kubernetes deploys and Prometheus scrapes.
    assert fake not in SERVICES
    identity = service("identity")
    assert (identity.module, identity.ops_port, identity.ready_path) == (
        "services.identity",
        "identity_ops_port",
        "/readyz",
    )


def test_up_starts_the_stand_ins_and_waits_for_them_before_any_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    groups: list[Sequence[Service]] = []
    monkeypatch.setattr(devstack, "up_group", lambda s, group: groups.append(group))
    devstack.up_services(Settings())
    assert groups == [STAND_INS, SERVICES]


def test_the_ready_url_of_each_process_is_its_ready_path_on_its_port() -> None:
    s = dataclasses.replace(Settings(), http_host="0.0.0.0", fake_wechat_port=18087)
    assert devstack.ready_url(s, service("fake-wechat")) == "http://127.0.0.1:18087/fake/messages"
    assert devstack.ready_url(s, service("identity")) == "http://127.0.0.1:9086/readyz"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("NOTIFY_CHANNEL", "NOTIFY_PROVIDER_URL", "WECHAT_API_URL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_notify_sends_over_http_to_the_fake_provider_make_up_starts(
    clean_env: pytest.MonkeyPatch,
) -> None:
    s = dataclasses.replace(Settings(), fake_wechat_port=18087)
    notify = Settings.from_env(service_env(service("notify"), s))
    assert (notify.notify_channel, notify.notify_provider_url) == (
        "http",
        "http://127.0.0.1:18087",
    )
    identity = Settings.from_env(service_env(service("identity"), s))
    assert identity.wechat_api_url == "http://127.0.0.1:18087"
    # The settings' own default is left alone: a bare `python -m services.notify` logs.
    assert Settings().notify_channel == "log"


def test_what_the_user_set_wins_over_the_fake_provider_and_empty_counts_as_unset(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("NOTIFY_CHANNEL", "log")
    clean_env.setenv("NOTIFY_PROVIDER_URL", "")
    clean_env.setenv("WECHAT_API_URL", "https://wechat.example")
    notify = Settings.from_env(service_env(service("notify"), Settings()))
    assert (notify.notify_channel, notify.notify_provider_url) == (
        "log",
        "http://127.0.0.1:8087",
    )
    identity = Settings.from_env(service_env(service("identity"), Settings()))
    assert identity.wechat_api_url == "https://wechat.example"
