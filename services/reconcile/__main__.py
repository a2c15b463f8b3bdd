"""python -m services.reconcile [--once]

--once: one run, a report on stdout; exit 1 if a mismatch remains that cannot be repaired
automatically (`make reconcile`). Without it: runs every RECONCILE_INTERVAL_SECONDS and
serves /healthz, /readyz and /metrics on RECONCILE_OPS_PORT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry

from services.common.kafka import start_producer
from services.common.logs import configure_logging
from services.common.observability import create_ops_app
from services.common.resources import pg_pool, redis_client
from services.common.runner import run, serve
from services.common.settings import Settings
from services.reconcile.domain import REPAIRABLE, ActivityReport, Kind
from services.reconcile.job import ReconcileMetrics, Reconciler
from services.seckill.stock import StockStore

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def reconciler(settings: Settings, metrics: ReconcileMetrics) -> AsyncIterator[Reconciler]:
    redis = redis_client(settings)
    pool = await pg_pool(settings)
    producer = await start_producer(settings)
    try:
        yield Reconciler(redis, pool, producer, StockStore(redis, None, 0), settings, metrics)
    finally:
        await producer.stop()
        await pool.close()
        await redis.aclose()


def summary(reports: list[ActivityReport]) -> tuple[str, int]:
    """A printable report and the number of mismatches that need a person."""
    lines = [f"reconciled {len(reports)} activities"]
    unrepaired = 0
    for kind in Kind:
        found = sum(r.count(kind) for r in reports)
        action = "repaired" if kind in REPAIRABLE else "needs attention" if found else ""
        lines.append(f"  {kind.value:<28} {found:>6}  {action if found else ''}".rstrip())
        if kind not in REPAIRABLE:
            unrepaired += found
    return "\n".join(lines), unrepaired


async def once(settings: Settings) -> int:
    async with reconciler(settings, ReconcileMetrics(CollectorRegistry())) as job:
        text, unrepaired = summary(await job.run_once())
    print(text)
    return 1 if unrepaired else 0


async def forever(settings: Settings) -> None:
    registry = CollectorRegistry()
    metrics = ReconcileMetrics(registry)
    async with reconciler(settings, metrics) as job:

        async def loop() -> None:
            while True:
                try:
                    await job.run_once()
                except Exception:
                    log.exception("reconciliation run failed")
                await asyncio.sleep(settings.reconcile_interval_seconds)

        async def ready() -> None:
            await job.ping()

        task = asyncio.create_task(loop())
        ops: web.Application = create_ops_app(registry, {"dependencies": ready})
        try:
            await serve([(ops, settings.reconcile_ops_port)], settings)
        finally:
            task.cancel()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m services.reconcile", description=__doc__)
    parser.add_argument("--once", action="store_true", help="run once, print a report, exit")
    args = parser.parse_args()
    settings = Settings.from_env()
    configure_logging("reconcile", settings.log_level)
    if args.once:
        return asyncio.run(once(settings))
    run(lambda: forever(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
