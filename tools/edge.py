"""The local gateway (nginx) and Prometheus of `make up`, as child processes of devstack.

Both run from configs generated under .run/ (tools/deploy.py renders them from the
settings), are tracked in .run/pids/ like every other process devstack starts, and are
stopped by `make down`. Neither is a system service.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

from services.common.settings import Settings
from tools.processes import (
    RUN,
    DevstackError,
    Endpoint,
    StatusLine,
    apt_install,
    connect_host,
    http_ok,
    is_root,
    log_file,
    rel,
    spawn,
    status_line,
    stop_processes,
    tcp_open,
    tracked_pid,
    wait_until,
)
from tools.stack import SERVICES

GATEWAY_DIR = RUN / "gateway"
GATEWAY_CONF = GATEWAY_DIR / "nginx.conf"
PROMETHEUS_DIR = RUN / "prometheus"
PROMETHEUS_CONF = PROMETHEUS_DIR / "prometheus.yml"
# nginx rewrites its process title to "nginx: master process <argv>", which keeps the
# config path; Prometheus keeps its argv. Either path marks the process as ours.
GATEWAY_MARKER = str(GATEWAY_CONF)
PROMETHEUS_MARKER = str(PROMETHEUS_CONF)
TIMEOUT = 20.0

# binary -> Debian package providing it
TOOLS = {"nginx": "nginx", "promtool": "prometheus", "prometheus": "prometheus"}


def ensure_tools() -> None:
    """Install nginx and Prometheus (promtool) from Debian when missing and root. The
    packages do not start services where policy-rc.d forbids it (containers); we run
    our own instances anyway."""
    missing = sorted({pkg for binary, pkg in TOOLS.items() if find(binary) is None})
    if not missing:
        return
    if not is_root():
        print(
            f"note: {', '.join(missing)} not installed (needed by the gateway, make up "
            "PROMETHEUS=1 and tests/deploy); install the Debian packages"
        )
        return
    for package in missing:
        apt_install(package)


def find(binary: str) -> str | None:
    # Debian puts nginx in /usr/sbin, which a non-login PATH may lack.
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin")


def gateway_endpoint(s: Settings) -> Endpoint:
    return Endpoint(connect_host(s.http_host), s.gateway_port)


def admin_gateway_endpoint(s: Settings) -> Endpoint:
    # The admin server listens on the loopback only (tools/deploy.py, local_gateway_values).
    return Endpoint("127.0.0.1", s.admin_gateway_port)


def up_gateway(s: Settings) -> None:
    from tools.deploy import local_gateway_values, render_nginx_conf, write_gateway_openapi

    nginx = find("nginx")
    if nginx is None:
        raise DevstackError("gateway: nginx is not installed (apt-get install nginx)")
    (GATEWAY_DIR / "tmp").mkdir(parents=True, exist_ok=True)
    GATEWAY_CONF.write_text(render_nginx_conf(local_gateway_values(s, GATEWAY_DIR)))
    write_gateway_openapi(GATEWAY_DIR)
    check = subprocess.run(
        [nginx, "-t", "-q", "-c", str(GATEWAY_CONF), "-e", str(GATEWAY_DIR / "error.log")],
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0:
        raise DevstackError(f"gateway: nginx rejects {rel(GATEWAY_CONF)}: {check.stderr}")
    ep, admin = gateway_endpoint(s), admin_gateway_endpoint(s)
    if reloaded("gateway", GATEWAY_MARKER, ep, "GATEWAY_PORT (or make up GATEWAY=0)"):
        return
    if tcp_open(admin):
        raise DevstackError(
            f"gateway: the admin port {admin} is taken by a process devstack did not start; "
            "set ADMIN_GATEWAY_PORT"
        )
    argv = [nginx, "-c", str(GATEWAY_CONF), "-e", str(GATEWAY_DIR / "error.log")]
    proc = spawn("gateway", [*argv, "-g", "daemon off;"])

    def ready() -> str | None:
        waiting = [str(e) for e in (ep, admin) if not tcp_open(e)]
        return f"not listening on {', '.join(waiting)}" if waiting else None

    wait_until("gateway (nginx)", ready, log_file("gateway"), TIMEOUT, proc)
    print(
        f"gateway: started nginx at http://{ep}/api/, admin side at http://{admin}/api/ "
        f"(pid {proc.pid}, config {rel(GATEWAY_CONF)})"
    )


def reloaded(name: str, marker: str, ep: Endpoint, setting: str) -> bool:
    """True if our process already runs (it is told to re-read its new config); raises
    if someone else's holds the port."""
    ours = tracked_pid(name, marker)
    if ours is not None:
        os.kill(ours, signal.SIGHUP)  # nginx and Prometheus both reload on SIGHUP
        print(f"{name}: reloaded its config (pid {ours}) at {ep}")
        return True
    if tcp_open(ep):
        raise DevstackError(
            f"{name}: port {ep} is taken by a process devstack did not start; set {setting}"
        )
    return False


def prometheus_url(s: Settings) -> str:
    return f"http://{connect_host(s.http_host)}:{s.prometheus_port}"


def up_prometheus(s: Settings) -> None:
    from tools.deploy import local_prometheus_config

    binary = find("prometheus")
    if binary is None:
        raise DevstackError("prometheus: not installed (apt-get install prometheus)")
    PROMETHEUS_DIR.mkdir(parents=True, exist_ok=True)
    jobs = [(svc.name, svc.ops_port) for svc in SERVICES]
    PROMETHEUS_CONF.write_text(local_prometheus_config(s, jobs))
    url = prometheus_url(s)
    ep = Endpoint(connect_host(s.http_host), s.prometheus_port)
    if reloaded("prometheus", PROMETHEUS_MARKER, ep, "PROMETHEUS_PORT"):
        return
    argv = [
        binary,
        f"--config.file={PROMETHEUS_CONF}",
        f"--storage.tsdb.path={PROMETHEUS_DIR / 'data'}",
        "--storage.tsdb.retention.time=2d",
        f"--web.listen-address={ep.host}:{ep.port}",
    ]
    proc = spawn("prometheus", argv)
    ready = lambda: None if http_ok(f"{url}/-/ready") else "not ready"  # noqa: E731
    wait_until("prometheus", ready, log_file("prometheus"), TIMEOUT * 2, proc)
    print(
        f"prometheus: started at {url} (pid {proc.pid}), scraping "
        f"{', '.join(name for name, _ in jobs)}; alerts at {url}/alerts"
    )


def down() -> None:
    stop_processes([("prometheus", PROMETHEUS_MARKER), ("gateway", GATEWAY_MARKER)])


def status_lines(s: Settings) -> list[StatusLine]:
    gateway = tracked_pid("gateway", GATEWAY_MARKER)
    return [
        status_line("gateway", gateway_endpoint(s), gateway),
        status_line("gateway-admin", admin_gateway_endpoint(s), gateway),
        status_line(
            "prometheus",
            Endpoint(connect_host(s.http_host), s.prometheus_port),
            tracked_pid("prometheus", PROMETHEUS_MARKER),
        ),
    ]
