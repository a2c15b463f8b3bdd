"""Processes of the local dev stack: where they keep their files, how they are started,
found again and stopped, and how to wait for them.

Whatever devstack starts is recorded under .run/pids/ so that `down` stops exactly that
and nothing else; logs go to .run/logs/<name>.log.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / ".run"
PIDS = RUN / "pids"
LOGS = RUN / "logs"

INFRA_TIMEOUT = 30.0
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


def connect_host(host: str) -> str:
    """Where to connect to reach a server bound to `host` (a wildcard is not an address)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def bind_addresses(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DevstackError(f"cannot resolve {host!r}: {exc}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# ---------------------------------------------------------------- probes


def tcp_open(ep: Endpoint, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((connect_host(ep.host), ep.port), timeout=timeout):
            return True
    except OSError:
        return False


def probe(attempt: Callable[[], Coroutine[object, object, None]]) -> str | None:
    """Run one async probe to completion: None if it succeeded, else why not (a probe:
    any failure means "not usable (yet)")."""
    try:
        asyncio.run(attempt())
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError, http.client.HTTPException):
        return False


StatusLine = tuple[str, Endpoint, str, str]


def status_line(name: str, ep: Endpoint, pid: int | None, ours: str = "") -> StatusLine:
    """(name, address, up/down, who started it) for `make status`. Something that answers
    at our address but that devstack did not start is said loudly: it may be another copy
    of the stack, and `up` uses it as it is."""
    state = "up" if tcp_open(ep) else "down"
    if pid is not None:
        who = f"started by devstack, pid {pid}"
    elif ours:
        who = ours
    else:
        who = "NOT started by devstack (used as is)" if state == "up" else ""
    return (name, ep, state, who)


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


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """One devstack command at a time (two `make up` racing would start two brokers)."""
    RUN.mkdir(parents=True, exist_ok=True)
    with (RUN / "devstack.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
