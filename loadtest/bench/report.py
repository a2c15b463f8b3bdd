"""Pure parts of the benchmark: medians over rounds, the targets, docs/benchmarks.md."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from loadtest.bench.cpu import CpuUse
from loadtest.bench.wrk import WrkResult

HELLO, RESERVE, NAIVE, CLAIM = "hello", "reserve", "naive", "claim"
TARGETS = (HELLO, RESERVE, NAIVE, CLAIM)
ABOUT = {
    HELLO: "plain aiohttp JSON hello endpoint (the framework's floor)",
    RESERVE: "POST /api/seckill/activities/{id}/reservations (JWT, Lua script, outbox)",
    NAIVE: "naive PostgreSQL: UPDATE ... SET stock = stock - 1 WHERE stock > 0 + INSERT",
    CLAIM: "POST /api/coupons/templates/{id}/claims (JWT, Lua script, outbox)",
}
# The process serving each target, among those the benchmark starts.
SERVER_PROCESS = {HELLO: "hello", RESERVE: "seckill", NAIVE: "naive", CLAIM: "coupon"}
PIPELINE_PROCESSES = ("seckill-worker", "order")
MIN_RESERVE_OVER_HELLO = 0.6
MIN_RESERVE_OVER_NAIVE = 10.0
MAX_RESERVATION_TO_ORDER_P99_MS = 1000.0
# Issue 15: a coupon rush is served like a flash sale, within 20% of its rate.
MIN_CLAIM_OVER_RESERVE = 0.8


@dataclass(frozen=True, slots=True)
class Summary:
    target: str
    rounds: int
    rps: float  # medians over the rounds of 2xx answers per second
    p50_ms: float
    p99_ms: float
    rps_all: tuple[float, ...]
    errors: int  # non-2xx and socket errors over all rounds


def summarize(target: str, results: Sequence[WrkResult]) -> Summary:
    if not results:
        raise ValueError(f"no rounds for {target}")
    return Summary(
        target=target,
        rounds=len(results),
        rps=statistics.median(r.ok_rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        rps_all=tuple(round(r.ok_rps) for r in results),
        errors=sum(r.non_2xx + r.socket_errors for r in results),
    )


@dataclass(frozen=True, slots=True)
class CpuSummary:
    """Medians over a target's rounds of where the CPU went (shares of one core)."""

    target: str
    server: float
    us_per_ok: float  # the server process's CPU time per 2xx answer
    server_core: float | None  # how busy the server's own core was, if it has one
    pipeline: Mapping[str, float]
    others: float
    machine: float


def summarize_cpu(
    target: str, uses: Sequence[CpuUse], results: Sequence[WrkResult], server_core: str | None
) -> CpuSummary:
    if not uses or len(uses) != len(results):
        raise ValueError(f"{target}: {len(uses)} CPU readings for {len(results)} rounds")
    server = SERVER_PROCESS[target]
    shares = [u.processes.get(server, 0.0) for u in uses]
    cores = [c for u in uses if (c := u.cores.get(server_core or "")) is not None]
    return CpuSummary(
        target=target,
        server=statistics.median(shares),
        us_per_ok=statistics.median(
            s * 1e6 / r.ok_rps if r.ok_rps else 0.0 for s, r in zip(shares, results, strict=True)
        ),
        server_core=statistics.median(cores) if cores else None,
        pipeline={
            name: statistics.median(u.processes.get(name, 0.0) for u in uses)
            for name in PIPELINE_PROCESSES
        },
        others=statistics.median(u.others() for u in uses),
        machine=statistics.median(u.machine for u in uses),
    )


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The order service behind one reserve round (from the orders' own timestamps), or
    the coupon record behind one claim round (claims, coupon rows, claim -> row)."""

    reservations: int
    orders: int
    orders_per_s: float  # orders created / (last created - first created)
    p50_ms: float | None  # reservation (Redis time) -> order row (transaction time)
    p99_ms: float | None
    violations: int  # failed invariant checks for this round's activity
    # Of that, the seckill relay's part (script -> Kafka acknowledged), from its histogram.
    relay_p50_ms: float | None = None
    relay_p99_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    name: str
    value: str
    target: str
    passed: bool


def verdicts(
    summaries: Mapping[str, Summary],
    pipelines: Sequence[Pipeline],
    drain: Pipeline | None,
    records: Sequence[Pipeline] = (),
) -> list[Verdict]:
    hello, reserve, naive, claim = (summaries[t] for t in TARGETS)
    over_hello = reserve.rps / hello.rps if hello.rps else 0.0
    over_naive = reserve.rps / naive.rps if naive.rps else float("inf")
    claim_over_reserve = claim.rps / reserve.rps if reserve.rps else 0.0
    p99s = [p.p99_ms for p in pipelines if p.p99_ms is not None]
    worst_p99 = max(p99s) if p99s else None
    violations = sum(p.violations for p in [*pipelines, *records]) + (
        drain.violations if drain else 0
    )
    capacity = drain.orders_per_s if drain else None
    out = [
        Verdict(
            "reserve / hello",
            f"{over_hello:.2f}",
            f">= {MIN_RESERVE_OVER_HELLO}",
            over_hello >= MIN_RESERVE_OVER_HELLO,
        ),
        Verdict(
            "reserve / naive PostgreSQL",
            f"{over_naive:.1f}x",
            f">= {MIN_RESERVE_OVER_NAIVE:g}x",
            over_naive >= MIN_RESERVE_OVER_NAIVE,
        ),
        Verdict(
            "claim / reserve",
            f"{claim_over_reserve:.2f}",
            f">= {MIN_CLAIM_OVER_RESERVE}",
            claim_over_reserve >= MIN_CLAIM_OVER_RESERVE,
        ),
        Verdict(
            "reservation -> order p99 (worst round)",
            "n/a" if worst_p99 is None else f"{worst_p99:.0f} ms",
            f"< {MAX_RESERVATION_TO_ORDER_P99_MS:.0f} ms",
            worst_p99 is not None and worst_p99 < MAX_RESERVATION_TO_ORDER_P99_MS,
        ),
    ]
    if capacity is not None:
        out.append(
            Verdict(
                "order service capacity / peak reserve rate",
                f"{capacity:.0f} / {reserve.rps:.0f} orders/s",
                ">= 1 (keeps up)",
                capacity >= reserve.rps,
            )
        )
    out.append(Verdict("invariant violations", str(violations), "0", violations == 0))
    return out


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def render(
    machine: Mapping[str, str],
    config: Mapping[str, str],
    summaries: Mapping[str, Summary],
    pipelines: Sequence[Pipeline],
    drain: Pipeline | None,
    notes: Sequence[str] = (),
    cpu: Sequence[CpuSummary] = (),
    records: Sequence[Pipeline] = (),
) -> str:
    lines = ["# Benchmarks", ""]
    lines += [
        "Written by `make bench` (`python -m loadtest.bench`); every number below was",
        "measured in the same run. Method and how to read it: docs/loadtest.md.",
        "",
        "## Machine",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in machine.items()]
    lines += ["", "## Setup", ""]
    lines += [f"- {k}: {v}" for k, v in config.items()]
    lines += [
        "",
        "## Throughput (medians of the rounds)",
        "",
        "| target | what | 2xx/s | p50 ms | p99 ms | rounds (2xx/s) | errors |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    for t in TARGETS:
        s = summaries[t]
        lines.append(
            f"| {t} | {ABOUT[t]} | {s.rps:.0f} | {s.p50_ms:.2f} | {s.p99_ms:.2f} | "
            f"{', '.join(str(x) for x in s.rps_all)} | {s.errors} |"
        )
    if cpu:
        lines += [
            "",
            "## Where the CPU went (medians of the rounds, in cores)",
            "",
            "| target | server process | its CPU per 2xx answer | server's core busy | "
            + " | ".join(PIPELINE_PROCESSES)
            + " | everything else (Redis, PostgreSQL, broker, wrk) | machine |",
            "|---|---:|---:|---:|" + "---:|" * len(PIPELINE_PROCESSES) + "---:|---:|",
        ]
        for c in cpu:
            core = "n/a" if c.server_core is None else f"{c.server_core:.2f}"
            lines.append(
                f"| {c.target} | {c.server:.2f} | {c.us_per_ok:.0f} µs | {core} | "
                + " | ".join(f"{c.pipeline[n]:.2f}" for n in PIPELINE_PROCESSES)
                + f" | {c.others:.2f} | {c.machine:.2f} |"
            )
    lines += [
        "",
        "## Order pipeline (reservation -> Redis outbox -> Kafka -> order row)",
        "",
        "| round | reservations | orders | orders/s while reserving | "
        "reservation->order p50 ms | p99 ms | of which relay p50 ms | relay p99 ms | "
        "invariant violations |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, p in enumerate(pipelines, 1):
        lines.append(
            f"| {i} | {p.reservations} | {p.orders} | {p.orders_per_s:.0f} | "
            f"{_ms(p.p50_ms)} | {_ms(p.p99_ms)} | {_ms(p.relay_p50_ms)} | "
            f"{_ms(p.relay_p99_ms)} | {p.violations} |"
        )
    if drain is not None:
        lines.append(
            f"| backlog drain | {drain.reservations} | {drain.orders} | "
            f"{drain.orders_per_s:.0f} (capacity) | n/a | n/a | n/a | n/a | {drain.violations} |"
        )
    if records:
        lines += [
            "",
            "## Coupon record (claim -> Redis outbox -> Kafka -> coupon row)",
            "",
            "| round | claims | coupon rows | rows/s while claiming | claim->row p50 ms | "
            "p99 ms | invariant violations |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for i, p in enumerate(records, 1):
            lines.append(
                f"| {i} | {p.reservations} | {p.orders} | {p.orders_per_s:.0f} | "
                f"{_ms(p.p50_ms)} | {_ms(p.p99_ms)} | {p.violations} |"
            )
    lines += ["", "## Targets", "", "| measure | value | target | |", "|---|---|---|---|"]
    for v in verdicts(summaries, pipelines, drain, records):
        lines.append(f"| {v.name} | {v.value} | {v.target} | {'PASS' if v.passed else 'MISS'} |")
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------- Prometheus histograms


def histogram_buckets(exposition: str, name: str) -> list[tuple[float, float]]:
    """Cumulative (le, count) buckets of an unlabelled histogram in /metrics text."""
    out = []
    prefix = f'{name}_bucket{{le="'
    for line in exposition.splitlines():
        if line.startswith(prefix):
            le, _, rest = line[len(prefix) :].partition('"}')
            out.append((float(le), float(rest.strip())))
    return sorted(out)


def bucket_delta(
    after: Sequence[tuple[float, float]], before: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    """What was observed between two scrapes of the same histogram."""
    earlier = dict(before)
    return [(le, count - earlier.get(le, 0.0)) for le, count in after]


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus's histogram_quantile: linear within the bucket holding the rank; the
    +Inf bucket answers with the highest finite bound."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_le, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower_le
            if count == lower_count:
                return le
            return lower_le + (le - lower_le) * (rank - lower_count) / (count - lower_count)
        lower_le, lower_count = le, count
    return lower_le
