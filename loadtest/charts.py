"""PNG charts of a Locust run: throughput and latency over time, from its stats history CSV.

    python -m loadtest.charts PREFIX_stats_history.csv OUT_DIR

Locust writes one "Aggregated" row every few seconds (requests/s and failures/s over the
last seconds, response-time percentiles over a sliding ~10 s window, user count).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

THROUGHPUT_PNG = "throughput.png"
LATENCY_PNG = "latency.png"


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    t_s: float  # seconds since the first row
    users: int
    rps: float
    failures_per_s: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


def _number(raw: str | None) -> float | None:
    try:
        return float(raw) if raw not in (None, "", "N/A") else None
    except ValueError:
        return None


def parse_history(lines: Iterable[str], name: str = "Aggregated") -> list[HistoryPoint]:
    """The rows of one request name (default: all requests together), in time order."""
    rows = [r for r in csv.DictReader(lines) if r.get("Name") == name]
    if not rows:
        return []
    t0 = float(rows[0]["Timestamp"])
    return [
        HistoryPoint(
            t_s=float(r["Timestamp"]) - t0,
            users=int(_number(r.get("User Count")) or 0),
            rps=_number(r.get("Requests/s")) or 0.0,
            failures_per_s=_number(r.get("Failures/s")) or 0.0,
            p50_ms=_number(r.get("50%")),
            p95_ms=_number(r.get("95%")),
            p99_ms=_number(r.get("99%")),
        )
        for r in rows
    ]


def plot(points: Sequence[HistoryPoint], out_dir: Path, title: str = "") -> list[Path]:
    """Write throughput.png and latency.png; returns their paths (none without data)."""
    if not points:
        return []
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    t = [p.t_s for p in points]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(t, [p.rps for p in points], label="requests/s", color="tab:blue")
    ax.plot(t, [p.failures_per_s for p in points], label="failures/s", color="tab:red")
    ax.set_xlabel("seconds")
    ax.set_ylabel("per second")
    users = ax.twinx()
    users.plot(t, [p.users for p in points], label="users", color="tab:gray", linestyle="--")
    users.set_ylabel("users")
    lines = ax.get_legend_handles_labels()
    more = users.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper right")
    written.append(_save(plt, fig, ax, f"Throughput {title}", out_dir / THROUGHPUT_PNG))

    fig, ax = plt.subplots(figsize=(10, 4.5))
    for label, values, color in (
        ("p50", [p.p50_ms for p in points], "tab:green"),
        ("p95", [p.p95_ms for p in points], "tab:orange"),
        ("p99", [p.p99_ms for p in points], "tab:red"),
    ):
        ax.plot(t, [v if v is not None else float("nan") for v in values], label=label, color=color)
    ax.set_xlabel("seconds")
    ax.set_ylabel("response time (ms)")
    ax.set_yscale("symlog", linthresh=10)
    ax.legend(loc="upper right")
    written.append(_save(plt, fig, ax, f"Latency {title}", out_dir / LATENCY_PNG))
    return written


def _save(plt: Any, fig: Any, ax: Any, title: str, path: Path) -> Path:
    ax.set_title(title.strip())
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m loadtest.charts STATS_HISTORY_CSV OUT_DIR", file=sys.stderr)
        return 2
    with open(args[0], newline="") as f:
        points = parse_history(f)
    for path in plot(points, Path(args[1])):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
