"""`make loadtest`: one headless Locust scenario, its report and charts, then the invariants.

    python -m loadtest.run --scenario spike --users 2000 --spawn-rate 500 --run-time 60s \\
        --host http://127.0.0.1:8080 --admin-url http://127.0.0.1:8081 \\
        [--groupbuy-admin-url http://127.0.0.1:8083] \\
        [--coupon-admin-url http://127.0.0.1:8091] [-- LOCUST ARGS]

Writes into --out (default .run/loadtest/<time>-<scenario>/): locust_stats.csv,
locust_stats_history.csv, locust_failures.csv, report.html, throughput.png, latency.png,
locust.log, run.json, answers-*.json and checks.txt. Exit status: 0 when Locust saw no
failure and every invariant holds, 1 otherwise, 2 when the checks could not run.
PostgreSQL and Redis of the checks come from the environment (DATABASE_URL, REDIS_URL).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from loadtest import charts, verify
from loadtest.scenarios import RUN_FILE, SCENARIOS
from services.common.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"
CSV_PREFIX = "locust"
SPIKE_STOCK = 500


def locust_argv(args: argparse.Namespace, out: Path, python: str = sys.executable) -> list[str]:
    scenario = SCENARIOS[args.scenario]
    argv = [python, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"]
    argv += ["--users", str(args.users), "--spawn-rate", str(args.spawn_rate)]
    argv += ["--run-time", args.run_time, "--host", args.host, "--admin-url", args.admin_url]
    argv += ["--groupbuy-admin-url", args.groupbuy_admin_url]
    argv += ["--coupon-admin-url", args.coupon_admin_url]
    if args.order_host:
        argv += ["--order-host", args.order_host]
    if args.processes != 1:
        argv += ["--processes", str(args.processes)]
    argv += ["--shape", scenario.shape, "--stock", str(default_stock(args))]
    argv += ["--per-user-limit", str(args.per_user_limit), "--answers-dir", str(out)]
    argv += ["--csv", str(out / CSV_PREFIX), "--html", str(out / "report.html")]
    argv += ["--logfile", str(out / "locust.log"), "--only-summary"]
    argv += [*args.locust_args, *scenario.user_classes]
    return argv


def default_stock(args: argparse.Namespace) -> int:
    """--stock, or by scenario: a spike sells out (500 for thousands of shoppers), and a
    coupon rush runs out of coupons alike; the other scenarios get stock for everyone, so
    presses meet the per-user limit and the rate limit rather than the sold-out answer."""
    if args.stock:
        return int(args.stock)
    if SCENARIOS[args.scenario].shape == "spike":
        return SPIKE_STOCK
    return max(SPIKE_STOCK, 2 * int(args.users) * int(args.per_user_limit))


def parse_args(settings: Settings, argv: Sequence[str] | None = None) -> argparse.Namespace:
    raw = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in raw:
        cut = raw.index("--")
        raw, extra = raw[:cut], raw[cut + 1 :]
    p = argparse.ArgumentParser(
        prog="python -m loadtest.run",
        description="Run a Locust scenario headless, chart it, check the invariants.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default="spike")
    p.add_argument("--users", type=int, default=2000, help="peak users (-u)")
    p.add_argument("--spawn-rate", type=float, default=500, help="users arriving per second")
    p.add_argument("--run-time", default="60s", help="Locust -t")
    p.add_argument("--host", default="http://127.0.0.1:8080", help="the gateway")
    p.add_argument("--order-host", default="", help="/api/orders base URL (default: --host)")
    p.add_argument(
        "--admin-url",
        default=f"http://{settings.http_host}:{settings.seckill_port}",
        help="seckill service itself, for creating the sale (admin routes are not public)",
    )
    p.add_argument(
        "--groupbuy-admin-url",
        default=f"http://{settings.http_host}:{settings.groupbuy_port}",
        help="groupbuy service itself, for creating the campaign",
    )
    p.add_argument(
        "--coupon-admin-url",
        default=f"http://{settings.http_host}:{settings.coupon_port}",
        help="coupon service itself, for creating the coupon template",
    )
    p.add_argument(
        "--stock",
        type=int,
        default=0,
        help="of the sale, the campaign and the coupon template (its quantity); 0: 500 "
        "for the spike shapes (spike, coupon-rush), else 2 per user",
    )
    p.add_argument("--per-user-limit", type=int, default=1)
    p.add_argument("--processes", type=int, default=-1, help="Locust processes (-1: a core each)")
    p.add_argument("--orders-timeout", type=float, default=120.0)
    p.add_argument("--out", type=Path, default=None, help="default .run/loadtest/<time>-<scenario>")
    args = p.parse_args(raw)
    args.locust_args = extra
    if args.out is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        args.out = ROOT / ".run" / "loadtest" / f"{stamp}-{args.scenario}"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    settings = Settings.from_env()
    args = parse_args(settings, argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("answers-*.json"):
        stale.unlink()
    scenario = SCENARIOS[args.scenario]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    argv_ = locust_argv(args, out)
    print(f"· {' '.join(argv_[1:])}", flush=True)
    locust_rc = subprocess.run(argv_, cwd=ROOT, env=env, check=False).returncode

    history = out / f"{CSV_PREFIX}_stats_history.csv"
    if history.exists():
        with history.open(newline="") as f:
            points = charts.parse_history(f)
        for path in charts.plot(points, out, f"({scenario.name})"):
            print(f"· chart {path}")

    if not (out / RUN_FILE).exists():
        print(f"the sale, campaign or coupon template was not set up: see {out}/locust.log")
        return 2
    checks_rc = verify.main([str(out), "--orders-timeout", str(args.orders_timeout)])
    print(f"· results in {out}")
    if locust_rc != 0:
        print(f"Locust exited {locust_rc} (failed requests: see {out}/locust_failures.csv)")
    if checks_rc == 2:
        return 2
    return 1 if locust_rc != 0 or checks_rc != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
