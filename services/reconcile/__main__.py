"""python -m services.reconcile [--once | --rebuild-activity ID | --rebuild-campaign ID [--force]]

--once: one run over every recent activity and campaign, a report on stdout (`make
reconcile`). A failure (a sale that cannot be read, repairs that do not go through) does
not stop the run; the exit code, after the full report, is 1 if anything failed or a
mismatch needs a person, else 0.

--rebuild-activity / --rebuild-campaign: rebuild that sale's Redis state from PostgreSQL
after Redis lost it (`make rebuild-redis`). Refuses, exit 2, while the sale's state is
still in Redis, unless --force. Exit 1 if the orders exceed the stock (rebuilt with none
left), else 0.

Without these: runs every RECONCILE_INTERVAL_SECONDS and serves /healthz, /readyz and
/metrics on RECONCILE_OPS_PORT; a failed run is counted and the next one comes anyway.
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
from services.reconcile.job import ReconcileMetrics, Reconciler
from services.reconcile.rebuild import (
    RebuildRefused,
    UnknownSale,
    rebuild_activity,
    rebuild_campaign,
)
from services.reconcile.report import exit_code, render

log = logging.getLogger(__name__)

EXIT_REFUSED = 2


@contextlib.asynccontextmanager
async def reconciler(settings: Settings, metrics: ReconcileMetrics) -> AsyncIterator[Reconciler]:
    redis = redis_client(settings)
    pool = await pg_pool(settings)
    producer = await start_producer(settings)
    try:
        yield Reconciler(redis, pool, producer, settings, metrics)
    finally:
        await producer.stop()
        await pool.close()
        await redis.aclose()


async def once(settings: Settings) -> int:
    async with reconciler(settings, ReconcileMetrics(CollectorRegistry())) as job:
        report = await job.run_once()
    print(render(report), flush=True)
    return exit_code(report)


async def rebuild(
    settings: Settings, *, activity: int | None, campaign: int | None, force: bool
) -> int:
    redis = redis_client(settings)
    pool = await pg_pool(settings)
    try:
        if activity is not None:
            done = await rebuild_activity(redis, pool, activity, force=force)
        else:
            assert campaign is not None
            done = await rebuild_campaign(redis, pool, campaign, force=force)
    except (RebuildRefused, UnknownSale) as exc:
        print(f"refused: {exc}", file=sys.stderr, flush=True)
        return EXIT_REFUSED
    finally:
        await pool.close()
        await redis.aclose()
    print(done.describe(), flush=True)
    return 1 if done.plan.oversold else 0


async def forever(settings: Settings) -> None:
    registry = CollectorRegistry()
    metrics = ReconcileMetrics(registry)
    async with reconciler(settings, metrics) as job:

        async def loop() -> None:
            while True:
                try:
                    await job.run_once()  # counts its own failures
                except Exception:
                    metrics.runs.labels("failed").inc()
                    log.exception("reconciliation run failed")
                await asyncio.sleep(settings.reconcile_interval_seconds)

        async def ready() -> None:
            await job.ping()

        task = asyncio.create_task(loop())
        # Kafka is informational: while it is down the job still compares and reports,
        # only its republishing fails (and is counted).
        ops: web.Application = create_ops_app(
            registry,
            {"dependencies": ready, "kafka": job.ping_kafka},
            informational=frozenset({"kafka"}),
        )
        try:
            await serve([(ops, settings.reconcile_ops_port)], settings)
        finally:
            task.cancel()


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.reconcile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="run once, print a report, exit")
    mode.add_argument("--rebuild-activity", type=int, metavar="ID", help="rebuild an activity")
    mode.add_argument("--rebuild-campaign", type=int, metavar="ID", help="rebuild a campaign")
    parser.add_argument(
        "--force",
        action="store_true",
        help="rebuild even though the sale's Redis state exists (stop its traffic first)",
    )
    args = parser.parse_args()
    rebuilding = args.rebuild_activity is not None or args.rebuild_campaign is not None
    if args.force and not rebuilding:
        parser.error("--force only applies to --rebuild-activity / --rebuild-campaign")
    settings = Settings.from_env()
    configure_logging("reconcile", settings.log_level)
    if rebuilding:
        return asyncio.run(
            rebuild(
                settings,
                activity=args.rebuild_activity,
                campaign=args.rebuild_campaign,
                force=args.force,
            )
        )
    if args.once:
        return asyncio.run(once(settings))
    run(lambda: forever(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
