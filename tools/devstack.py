"""Local dev stack: Redis, PostgreSQL, a Kafka broker, the services with the local
stand-in of the WeChat API they call (tools/fake_wechat.py), the nginx gateway and, on
request, Prometheus.

Usage: python -m tools.devstack up [--infra-only] [--no-gateway] [--prometheus] | down | status

`up` is idempotent. Whatever already answers at the configured address is used as
is and never touched (and said so loudly); whatever this tool starts is recorded under
.run/pids/ so that `down` stops exactly that and nothing else. Settings come from
Settings.from_env() only (REDIS_URL, DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS, LOCAL_BROKER,
...). Each piece of infrastructure is a module of its own (tools/local_*.py); the gateway
and Prometheus are in tools/edge.py.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from services.common.settings import Settings
from tools import edge, local_kafka, local_postgres, local_redis
from tools.processes import (
    DevstackError,
    Endpoint,
    StatusLine,
    connect_host,
    http_ok,
    locked,
    log_file,
    rel,
    spawn,
    stop_processes,
    tcp_open,
    tracked_pid,
    wait_until,
)
from tools.stack import (
    PROCESSES,
    SERVICES,
    STAND_INS,
    Service,
    service_argv,
    service_env,
    service_marker,
)

SERVICE_TIMEOUT = 40.0


# ---------------------------------------------------------------- services


def ops_endpoint(s: Settings, attr: str) -> Endpoint:
    return Endpoint(connect_host(s.http_host), int(getattr(s, attr)))


def ready_url(s: Settings, svc: Service) -> str:
    ep = ops_endpoint(s, svc.ops_port)
    host = f"[{ep.host}]" if ":" in ep.host else ep.host
    return f"http://{host}:{ep.port}{svc.ready_path}"


def ready_probe(url: str) -> Callable[[], str | None]:
    return lambda: None if http_ok(url) else f"{url} did not answer 200"


def up_services(s: Settings) -> None:
    # The stand-ins first, and ready, before the services that call them start.
    for group in (STAND_INS, SERVICES):
        up_group(s, group)


def up_group(s: Settings, group: Sequence[Service]) -> None:
    started: list[tuple[Service, subprocess.Popen[bytes] | None]] = []
    for svc in group:
        ours = tracked_pid(svc.name, service_marker(svc))
        if ours is not None:
            print(f"{svc.name}: already running (started by devstack, pid {ours})")
            started.append((svc, None))
            continue
        if tcp_open(ops_endpoint(s, svc.ops_port)):
            print(
                f"{svc.name}: WARNING: port {ops_endpoint(s, svc.ops_port)} is held by a "
                "process devstack did not start (another copy of the stack?); using it as "
                "is. A second, isolated stack needs its own ports: see docs/operations.md"
            )
            started.append((svc, None))
            continue
        child = spawn(svc.name, service_argv(svc), service_env(svc, s))
        print(f"{svc.name}: started (pid {child.pid}, log {rel(log_file(svc.name))})")
        started.append((svc, child))

    # Started together, waited for together: one deadline for all.
    deadline = time.monotonic() + SERVICE_TIMEOUT
    for svc, proc in started:
        url = ready_url(s, svc)
        remaining = max(1.0, deadline - time.monotonic())
        wait_until(svc.name, ready_probe(url), log_file(svc.name), remaining, proc)
        print(f"{svc.name}: ready ({url})")


def run_bootstrap(s: Settings) -> None:
    from tools.bootstrap import bootstrap

    try:
        asyncio.run(bootstrap(s))
    except Exception as exc:
        raise DevstackError(f"bootstrap failed: {type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------- commands


def cmd_up(s: Settings, infra_only: bool, gateway: bool = True, prometheus: bool = False) -> None:
    edge.ensure_tools()
    local_redis.up(s)
    local_postgres.up(s)
    local_kafka.up(s)
    run_bootstrap(s)
    if not infra_only:
        up_services(s)
        if gateway:
            edge.up_gateway(s)
    if prometheus:
        edge.up_prometheus(s)


def cmd_down() -> None:
    edge.down()
    stop_processes([(svc.name, service_marker(svc)) for svc in reversed(PROCESSES)])
    local_kafka.down()
    local_redis.down()
    local_postgres.down()
    print("down: done (anything devstack did not start was left alone)")


def service_status(s: Settings) -> list[StatusLine]:
    lines = []
    for svc in PROCESSES:
        ep, pid = ops_endpoint(s, svc.ops_port), tracked_pid(svc.name, service_marker(svc))
        if http_ok(ready_url(s, svc)):
            state = "up"
        else:
            state = "not ready" if tcp_open(ep) else "down"
        if pid is not None:
            who = f"started by devstack, pid {pid}"
        else:
            who = "NOT started by devstack (used as is)" if state != "down" else ""
        lines.append((svc.name, ep, state, who))
    return lines


def cmd_status(s: Settings) -> int:
    lines = [local_redis.status(s), local_postgres.status(s), local_kafka.status(s)]
    lines += service_status(s)
    lines += edge.status_lines(s)
    width = max(len(name) for name, *_ in lines)
    for name, ep, state, who in lines:
        print(f"{name:<{width}} {state:<9} {ep!s:<22} {who}".rstrip())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.devstack", description="Local dev stack")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start what is missing, bootstrap, start the services")
    up.add_argument("--infra-only", action="store_true", help="Redis, PostgreSQL, Kafka only")
    up.add_argument("--no-gateway", action="store_true", help="do not start the nginx gateway")
    up.add_argument("--prometheus", action="store_true", help="also start a local Prometheus")
    sub.add_parser("down", help="stop what `up` started")
    sub.add_parser("status", help="show each component")
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
        if args.command == "status":
            return cmd_status(settings)
        with locked():
            if args.command == "up":
                cmd_up(settings, args.infra_only, not args.no_gateway, args.prometheus)
            else:
                cmd_down()
        return 0
    except (DevstackError, ValueError) as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        if args.command == "up":
            print("devstack: `make down` stops what was started so far", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
