"""The local Redis of the dev stack: used when something answers at REDIS_URL, otherwise
redis-server (installed from Debian's package when missing and root) with its data in
.run/redis/."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from urllib.parse import urlsplit

from services.common.settings import Settings
from tools.processes import (
    INFRA_TIMEOUT,
    RUN,
    DevstackError,
    Endpoint,
    StatusLine,
    apt_install,
    bind_addresses,
    is_root,
    log_file,
    spawn,
    status_line,
    stop_processes,
    tcp_open,
    tracked_pid,
    wait_until,
)

REDIS_DIR = RUN / "redis"
NAME = "redis"
MARKER = "redis-server"


def endpoint(s: Settings) -> Endpoint:
    parts = urlsplit(s.redis_url)
    if parts.scheme not in ("redis", "rediss"):
        raise DevstackError(f"REDIS_URL {s.redis_url!r}: only redis:// URLs can be managed")
    return Endpoint(parts.hostname or "127.0.0.1", parts.port or 6379)


def ping(url: str) -> str | None:
    """None if Redis at `url` answers PING, else the reason."""
    import redis  # imported late: `down` must work without the third-party packages

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
        return None
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()


def ready(s: Settings) -> Callable[[], str | None]:
    ep = endpoint(s)
    return lambda: ping(s.redis_url) if tcp_open(ep) else "not listening"


def up(s: Settings) -> None:
    ep = endpoint(s)
    ours = tracked_pid(NAME, MARKER)
    if tcp_open(ep):
        if ours is None:
            problem = ping(s.redis_url)
            if problem:
                raise DevstackError(f"redis: something answers at {ep} but PING fails: {problem}")
            print(f"redis: using {ep} (already running, not started by devstack)")
            return
        wait_until("redis", ready(s), log_file(NAME), INFRA_TIMEOUT)
        print(f"redis: using {ep} (started by devstack, pid {ours})")
        return
    if ours is not None:
        # Ours, alive, yet not listening: still loading its append-only file.
        wait_until("redis", ready(s), log_file(NAME), INFRA_TIMEOUT)
        print(f"redis: using {ep} (started by devstack, pid {ours})")
        return

    binary = shutil.which("redis-server")
    if binary is None:
        if not is_root():
            raise DevstackError(
                "redis: nothing answers at "
                f"{ep} and redis-server is not installed; install it or set REDIS_URL"
            )
        apt_install("redis-server")
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if tcp_open(ep) and ping(s.redis_url) is None:  # the package started one
            print(f"redis: using {ep} (started by the redis-server package)")
            return

    REDIS_DIR.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--bind", *bind_addresses(ep.host, ep.port), "--port", str(ep.port)]
    argv += ["--dir", str(REDIS_DIR), "--daemonize", "no"]
    # Durability the reservation path relies on: AOF, fsync once a second
    # (docs/operations.md, "What a 201 reservation relies on").
    argv += ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
    password = urlsplit(s.redis_url).password
    if password:
        argv += ["--requirepass", password]
    proc = spawn(NAME, argv)
    wait_until("redis", ready(s), log_file(NAME), INFRA_TIMEOUT, proc)
    print(f"redis: started redis-server at {ep} (pid {proc.pid}, data in {REDIS_DIR.name}/)")


def down() -> None:
    stop_processes([(NAME, MARKER)])


def status(s: Settings) -> StatusLine:
    return status_line("redis", endpoint(s), tracked_pid(NAME, MARKER))
