"""Where a round's CPU went, from /proc: each process the benchmark started, and the
machine's cores. A ratio to the hello endpoint only means something next to these: the
hello server has its core to itself, while during a reserve round Redis, PostgreSQL and
the broker run on the same two cores as the service under test."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Cumulative CPU ticks: per process name, and per core (busy, total)."""

    processes: Mapping[str, int]
    cores: Mapping[str, tuple[int, int]]


def process_ticks(pid: int) -> int | None:
    """utime + stime of a live process; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields count from the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def core_ticks(proc_stat: str) -> dict[str, tuple[int, int]]:
    """(busy, total) ticks per core ("cpu0", "cpu1", ...) of a /proc/stat text; idle and
    iowait are not busy, steal is (the core was not ours to use)."""
    out = {}
    for line in proc_stat.splitlines():
        name, *values = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        ticks = [int(v) for v in values[:8]]
        idle = ticks[3] + ticks[4]
        out[name] = (sum(ticks) - idle, sum(ticks))
    return out


def snapshot(pids: Mapping[str, int]) -> Snapshot:
    processes = {name: t for name, pid in pids.items() if (t := process_ticks(pid)) is not None}
    return Snapshot(processes, core_ticks(Path("/proc/stat").read_text()))


@dataclass(frozen=True, slots=True)
class CpuUse:
    """One round: the share of one core each process used, and how busy each core was."""

    processes: Mapping[str, float]
    cores: Mapping[str, float]

    @property
    def machine(self) -> float:
        """Cores busy in all (2.0: both cores of a 2-core machine, all the time)."""
        return sum(self.cores.values())

    def others(self) -> float:
        """Cores used by everything the benchmark did not start (Redis, PostgreSQL, the
        broker, wrk, the rest of the machine)."""
        return max(0.0, self.machine - sum(self.processes.values()))


def used(before: Snapshot, after: Snapshot, seconds: float) -> CpuUse:
    wall = seconds * TICKS_PER_SECOND
    processes = {
        name: (ticks - before.processes[name]) / wall
        for name, ticks in after.processes.items()
        if name in before.processes
    }
    cores = {}
    for name, (busy, total) in after.cores.items():
        busy0, total0 = before.cores.get(name, (busy, total))
        cores[name] = (busy - busy0) / (total - total0) if total > total0 else 0.0
    return CpuUse(processes, cores)
