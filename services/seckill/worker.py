"""flashsale-seckill-worker or python -m services.seckill.worker: the seckill background work
in its own process.

Runs what background.py describes (outbox relay, stock returns, warm-up, live gauges) and
serves /healthz, /readyz and /metrics on SECKILL_WORKER_OPS_PORT. Run it beside API
processes started with SECKILL_EMBEDDED_WORKER=false; several workers may run at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry

from services.common.cli import run_service
from services.common.logs import configure_logging
from services.common.observability import create_ops_app
from services.common.resources import pg_pool, redis_client
from services.common.runner import serve
from services.common.settings import Settings
from services.common.shutdown import close_pool, stop_tasks
from services.seckill.activities import ActivityRepository
from services.seckill.background import BackgroundMetrics, start_background
from services.seckill.outbox_relay import OutboxRelay
from services.seckill.sold_out import SoldOutFlags
from services.seckill.stock import StockStore


@dataclass
class Worker:
    """What the readiness checks look at, wired when the worker starts."""

    activities: ActivityRepository
    stock: StockStore
    relay: OutboxRelay


WORKER: web.AppKey[Worker] = web.AppKey("worker", Worker)


def create_worker(settings: Settings) -> web.Application:
    """The worker's ops app; its cleanup context runs the background work."""
    registry = CollectorRegistry()
    metrics = BackgroundMetrics(registry)

    async def redis_ready() -> None:
        await app[WORKER].stock.probe()

    async def postgres_ready() -> None:
        await app[WORKER].activities.get(0)

    async def kafka_ready() -> None:
        await app[WORKER].relay.check_kafka()

    app = create_ops_app(
        registry,
        {"redis": redis_ready, "postgres": postgres_ready, "kafka": kafka_ready},
        # As in the API: while Kafka is down reservations queue in the outbox.
        informational=frozenset({"kafka"}),
    )

    async def resources(app: web.Application) -> AsyncIterator[None]:
        redis = redis_client(settings)
        pool = await pg_pool(settings)
        activities = ActivityRepository(pool)
        stock = StockStore(redis, None, settings.user_rate_limit_per_second)
        relay = OutboxRelay(redis, settings, metrics.relay)
        app[WORKER] = Worker(activities, stock, relay)
        tasks = start_background(
            settings,
            redis,
            activities,
            stock,
            SoldOutFlags(settings.sold_out_recheck_seconds),
            metrics,
            relay,
        )
        try:
            yield
        finally:
            await stop_tasks(tasks)
            await close_pool(pool)
            await redis.aclose()

    app.cleanup_ctx.append(resources)
    return app


async def run_forever() -> None:
    settings = Settings.from_env()
    configure_logging("seckill-worker", settings.log_level)
    await serve([(create_worker(settings), settings.seckill_worker_ops_port)], settings)


def main() -> None:
    run_service("flashsale-seckill-worker", __doc__, run_forever)


if __name__ == "__main__":
    main()
