"""`make bench-login`: shopper logins per second through the gateway, on the running stack.

    python -m loadtest.bench.login [--rounds 3] [--seconds 10] [--connections 32] [--out PATH]

Runs wrk against the gateway's POST /api/auth/login with a fresh code per request (as
wx.login() gives one per login), for shoppers never seen ("new": a user row, a refresh
family and a user.registered outbox row per login) and shoppers logging in again
("returning"), a discarded warm-up round and --rounds measured rounds each; reports
medians and where the CPU went (identity, the fake WeChat provider, the rest).
Needs `make up` (the gateway, identity and the local fake provider); the gateway and
identity exempt loopback from their login limits (GATEWAY_RATE_LIMIT_EXEMPT). Writes --out
(docs/benchmarks-login.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

from loadtest.bench import cpu, wrk
from loadtest.bench.__main__ import ROOT, load_average, machine_info
from services.common.settings import Settings
from tools.processes import pid_file

LOGIN_LUA = Path(__file__).with_name("login.lua")
MODES = ("new", "returning")
RETURNING_POOL = 20_000
# By pid file; nginx is left in "everything else" (its workers are not the pid file's).
WATCHED = {"identity": "identity", "fake WeChat": "fake-wechat"}


def pids() -> dict[str, int]:
    found = {}
    for label, name in WATCHED.items():
        try:
            found[label] = int(pid_file(name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return found


def one_round(
    url: str, mode: str, run: str, round_no: int, args: argparse.Namespace
) -> tuple[wrk.WrkResult, cpu.CpuUse]:
    argv = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds:g}s", "--latency"]
    argv += ["--timeout", "10s", "-s", str(LOGIN_LUA), url, "--"]
    argv += [mode, run, str(RETURNING_POOL), str(round_no)]
    before, started = cpu.snapshot(pids()), time.monotonic()
    result, _ = wrk.run(argv, timeout=args.seconds + 60)
    return result, cpu.used(before, cpu.snapshot(pids()), time.monotonic() - started)


def render(
    machine: dict[str, str],
    args: argparse.Namespace,
    rounds: dict[str, list[tuple[wrk.WrkResult, cpu.CpuUse]]],
    loads: tuple[str, str],
) -> str:
    lines = [
        "# Login benchmark",
        "",
        "Written by `make bench-login` (`python -m loadtest.bench.login`) against the stack",
        "`make up` runs: wrk -> nginx gateway -> identity -> PostgreSQL, Redis (the login",
        "throttle) and the local fake WeChat provider (code2Session). Every number below was",
        "measured in the same run.",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in machine.items()),
        f"- load average (1/5/15 min) before / after: {loads[0]}; {loads[1]}",
        "",
        "## Setup",
        "",
        f"- client: wrk, 1 thread, {args.connections} connections, {args.seconds:g} s per round,"
        " a fresh code per request (loadtest/bench/login.lua)",
        f"- rounds: 1 warm-up (discarded) + {args.rounds} measured per mode",
        "- new: shoppers never seen (user row, refresh-token family, user.registered outbox"
        " row, one transaction); returning: codes of shoppers who logged in before",
        "- processes unpinned: everything shares the machine's cores",
        "",
        "## Throughput (medians of the rounds)",
        "",
        "| mode | logins/s | p50 ms | p99 ms | rounds (logins/s) | non-2xx | socket errors |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for mode, measured in rounds.items():
        results = [r for r, _ in measured]
        lines.append(
            f"| {mode} | {statistics.median(r.ok_rps for r in results):.0f} "
            f"| {statistics.median(r.p50_ms for r in results):.1f} "
            f"| {statistics.median(r.p99_ms for r in results):.1f} "
            f"| {', '.join(f'{r.ok_rps:.0f}' for r in results)} "
            f"| {sum(r.non_2xx for r in results)} | {sum(r.socket_errors for r in results)} |"
        )
    lines += [
        "",
        "## Where the CPU went (medians of the rounds, in cores)",
        "",
        "| mode | "
        + " | ".join(WATCHED)
        + " | everything else (nginx, PostgreSQL, Redis, wrk) | machine |",
        "|---|" + "---:|" * (len(WATCHED) + 2),
    ]
    for mode, measured in rounds.items():
        uses = [u for _, u in measured]
        cells = [
            f"{statistics.median(u.processes.get(label, 0.0) for u in uses):.2f}"
            for label in WATCHED
        ]
        others = statistics.median(u.others() for u in uses)
        whole = statistics.median(u.machine for u in uses)
        lines.append(f"| {mode} | {' | '.join(cells)} | {others:.2f} | {whole:.2f} |")
    lines += [
        "",
        "## What a login costs a sale",
        "",
        "Nothing on the hot path: every service checks the access token in memory (HS256 with",
        "the key its `kid` names, cached per token until it expires), never by calling",
        "identity. Logins happen before a sale, and a shopper's access token lasts",
        "`ACCESS_TOKEN_TTL_SECONDS` (15 minutes) between refreshes.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench.login")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-login.md")
    args = p.parse_args(argv)
    settings = Settings.from_env()
    url = f"http://{settings.http_host}:{settings.gateway_port}/api/auth/login"
    run = f"bench-{uuid.uuid4().hex[:8]}"
    load_before = load_average()
    rounds: dict[str, list[tuple[wrk.WrkResult, cpu.CpuUse]]] = {}
    try:
        for mode in MODES:
            one_round(url, mode, run, 0, args)  # warm-up (returning: the pool's first logins)
            rounds[mode] = [one_round(url, mode, run, k, args) for k in range(1, args.rounds + 1)]
            best = max(r.ok_rps for r, _ in rounds[mode])
            print(f"· {mode}: best round {best:.0f} logins/s", flush=True)
    except wrk.WrkError as exc:
        print(f"benchmark could not run: {exc}", file=sys.stderr)
        return 2
    text = render(machine_info(settings, {}), args, rounds, (load_before, load_average()))
    args.out.write_text(text)
    print(text)
    failed = any(r.non_2xx or r.socket_errors for m in rounds.values() for r, _ in m)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
