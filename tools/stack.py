"""The service processes of the local stack: what `make up` starts, in order.

Shared by devstack (starts and stops them), edge (Prometheus scrapes them) and the
benchmark; it imports none of them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from tools.processes import padded_command_line


@dataclass(frozen=True, slots=True)
class Service:
    """A process `up` starts: `python -m <module>` with `env` added to its environment,
    ready when /readyz answers 200 on the port held by the Settings attribute `ops_port`
    (where it also serves /healthz and /metrics; `name` is its Prometheus job)."""

    name: str
    module: str
    ops_port: str
    env: Mapping[str, str] = field(default_factory=dict)


# The seckill API leaves its background work (outbox relay, stock returns, live gauges)
# to seckill-worker, as in production: on the API's event loop it waits behind requests.
WITHOUT_EMBEDDED_WORKER = {"SECKILL_EMBEDDED_WORKER": "false"}

# The services `up` starts, in start order. A new service is one line here.
SERVICES: tuple[Service, ...] = (
    Service("seckill", "services.seckill", "seckill_ops_port", WITHOUT_EMBEDDED_WORKER),
    Service("seckill-worker", "services.seckill.worker", "seckill_worker_ops_port"),
    Service("order", "services.order", "order_ops_port"),
    Service("groupbuy", "services.groupbuy", "groupbuy_ops_port"),
    Service("notify", "services.notify", "notify_ops_port"),
    Service("reconcile", "services.reconcile", "reconcile_ops_port"),
)


def service_argv(service: Service) -> list[str]:
    return [sys.executable, "-m", service.module]


def service_marker(service: Service) -> str:
    # Whole arguments: the seckill API's marker must not match the seckill worker.
    return padded_command_line(["-m", service.module])


def service_env(service: Service) -> dict[str, str]:
    return {**os.environ, **service.env}
