"""Running wrk and reading its report (pure parsing, tested in tests/unit)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROTATE_LUA = Path(__file__).with_name("rotate.lua")
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


class WrkError(Exception):
    """wrk failed or printed something this parser does not understand."""


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int

    @property
    def ok_rps(self) -> float:
        """Requests per second answered 2xx (what a benchmark of an endpoint counts)."""
        return (self.requests - self.non_2xx) / self.seconds if self.seconds else 0.0


def to_ms(raw: str) -> float:
    """A wrk duration ("850.00us", "1.23ms", "2.01s", "1.00m") in milliseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", raw.strip())
    if not m:
        raise WrkError(f"not a wrk duration: {raw!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def parse(output: str) -> WrkResult:
    """The numbers of `wrk --latency` output."""

    def find(pattern: str) -> re.Match[str]:
        m = re.search(pattern, output, flags=re.M)
        if m is None:
            raise WrkError(f"wrk output without /{pattern}/:\n{output}")
        return m

    done = find(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),")
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests=int(done.group(1)),
        seconds=to_ms(done.group(2) + done.group(3)) / 1000,
        rps=float(find(r"^Requests/sec:\s+([\d.]+)").group(1)),
        p50_ms=to_ms(find(r"^\s+50%\s+(\S+)").group(1)),
        p99_ms=to_ms(find(r"^\s+99%\s+(\S+)").group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
    )


def command(
    url: str,
    tokens_file: Path,
    *,
    connections: int,
    threads: int,
    seconds: float,
    cpus: str | None = None,
    body: str | None = None,
) -> list[str]:
    """`body`: the JSON body of every request, instead of rotate.lua's own."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    argv += ["--timeout", "10s", "-s", str(ROTATE_LUA), url, "--", str(tokens_file)]
    if body is not None:
        argv.append(body)
    return ["taskset", "-c", cpus, *argv] if cpus else argv


def run(argv: Sequence[str], timeout: float) -> tuple[WrkResult, str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise WrkError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr or done.stdout}")
    return parse(done.stdout), done.stdout
