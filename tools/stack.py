"""The processes of the local stack: what `make up` starts, in order.

Shared by devstack (starts and stops them), edge (Prometheus scrapes them) and the
benchmark; it imports none of them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from services.common.settings import Settings
from tools.processes import connect_host, padded_command_line


@dataclass(frozen=True, slots=True)
class Service:
    """A process `up` starts: `python -m <module>` with `env` added to its environment and
    `local_env(settings)` added where the user did not set the variable, ready when
    `ready_path` answers 200 on the port held by the Settings attribute `ops_port` (a
    platform service's ops port, where it also serves /healthz and /metrics; `name` is
    its Prometheus job)."""

    name: str
    module: str
    ops_port: str
    env: Mapping[str, str] = field(default_factory=dict)
    local_env: Callable[[Settings], Mapping[str, str]] | None = None
    ready_path: str = "/readyz"


# The seckill API leaves its background work (outbox relay, stock returns, live gauges)
# to seckill-worker, as in production: on the API's event loop it waits behind requests.
WITHOUT_EMBEDDED_WORKER = {"SECKILL_EMBEDDED_WORKER": "false"}


def fake_wechat_url(s: Settings) -> str:
    host = connect_host(s.http_host)
    return f"http://{f'[{host}]' if ':' in host else host}:{s.fake_wechat_port}"


def via_fake_wechat(s: Settings) -> dict[str, str]:
    """identity logs shoppers in at the fake provider `up` starts (the setting's default
    names its default port; this follows FAKE_WECHAT_PORT)."""
    return {"WECHAT_API_URL": fake_wechat_url(s)}


def sends_to_fake_wechat(s: Settings) -> dict[str, str]:
    """notify sends real HTTP subscribe messages, to the fake provider, so that a local
    sale exercises the channel production uses (the setting's own default, `log`, stays
    for a bare `python -m services.notify`)."""
    return {"NOTIFY_CHANNEL": "http", "NOTIFY_PROVIDER_URL": fake_wechat_url(s)}


# The services `up` starts, in start order: the platform, as Kubernetes runs it. A new
# service is one line here.
SERVICES: tuple[Service, ...] = (
    Service("seckill", "services.seckill", "seckill_ops_port", WITHOUT_EMBEDDED_WORKER),
    Service("seckill-worker", "services.seckill.worker", "seckill_worker_ops_port"),
    Service("order", "services.order", "order_ops_port"),
    Service("groupbuy", "services.groupbuy", "groupbuy_ops_port"),
    Service("coupon", "services.coupon", "coupon_ops_port"),
    Service("identity", "services.identity", "identity_ops_port", local_env=via_fake_wechat),
    Service("notify", "services.notify", "notify_ops_port", local_env=sends_to_fake_wechat),
    Service("reconcile", "services.reconcile", "reconcile_ops_port"),
    Service("console", "services.console", "console_ops_port"),
)

# Local stand-ins for what lies outside the platform, started (and ready) before the
# services that call them: never deployed, never scraped (they have no /metrics).
STAND_INS: tuple[Service, ...] = (
    Service("fake-wechat", "tools.fake_wechat", "fake_wechat_port", ready_path="/fake/messages"),
)

# Everything `up` starts, in start order (`down` stops it in reverse).
PROCESSES: tuple[Service, ...] = STAND_INS + SERVICES


def service_argv(service: Service) -> list[str]:
    return [sys.executable, "-m", service.module]


def service_marker(service: Service) -> str:
    # Whole arguments: the seckill API's marker must not match the seckill worker.
    return padded_command_line(["-m", service.module])


def service_env(service: Service, settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    if service.local_env is not None:
        # An empty variable counts as unset, as in Settings.from_env.
        env |= {k: v for k, v in service.local_env(settings).items() if not env.get(k)}
    return env | dict(service.env)
