"""The seckill service's background work: the outbox relay, stock returns of cancelled
orders, warm-up of pending activities and the live gauges.

It runs inside the API process (SECKILL_EMBEDDED_WORKER=true, the default: one process
for local runs and tests) or as its own process, `python -m services.seckill.worker`,
which is how production, `make up` and the benchmark run it. In the API process it shares
the event loop with the request handlers: at peak the relay then waits behind them, and
relay and stock returns take about a quarter of the process's CPU from the hot path
(py-spy during make bench). Every piece is safe with several instances: the relay reads
the outbox through a Redis consumer group, stock returns are a Kafka consumer group.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CollectorRegistry, Gauge
from redis.asyncio import Redis

from services.common.kafka import BatchConsumer, ConsumerMetrics, start_producer
from services.common.periodic import every
from services.common.settings import Settings
from services.common.topics import ORDERS
from services.seckill.activities import ActivityRepository
from services.seckill.live_metrics import LiveMetrics
from services.seckill.outbox_relay import OutboxRelay, RelayMetrics
from services.seckill.sold_out import SoldOutFlags
from services.seckill.stock import StockStore
from services.seckill.stock_return import StockReturnHandler, StockReturnMetrics

log = logging.getLogger(__name__)

CONSUMER_GROUP = "seckill"


class BackgroundMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.relay = RelayMetrics(registry)
        self.live = LiveMetrics(registry)
        self.consumer = ConsumerMetrics(registry)
        self.stock_returns = StockReturnMetrics(registry)
        self.missing_state = Gauge(
            "seckill_activities_missing_redis_state",
            "Live activities whose Redis state is missing (Redis data loss); needs a rebuild.",
            registry=registry,
        )


async def warm_pending(activities: ActivityRepository, stock: StockStore, missing: Gauge) -> None:
    """Warm activities created while Redis was unreachable (their create answered 202),
    and flag activities whose Redis state is gone (Redis lost data): those must be rebuilt
    from the order record, never re-warmed with their full stock, which would oversell.
    Runs every METRICS_REFRESH_SECONDS: a pending activity sells as soon as Redis is back,
    and the gauge follows a rebuild without a restart."""
    for activity in await activities.unwarmed():
        await stock.warm_up(activity)
        await activities.mark_warmed(activity.id)
        log.info("warmed activity %d", activity.id)
    lost = [a.id for a in await activities.warmed_live() if not await stock.is_warm(a.id)]
    missing.set(len(lost))
    if lost:
        log.error("activities with lost Redis state, refusing to re-warm: %s", lost)


async def return_stock(
    settings: Settings, stock: StockStore, sold_out: SoldOutFlags, metrics: BackgroundMetrics
) -> None:
    """Consume order.cancelled and return the stock (its own producer, for dead letters).

    In a worker process `sold_out` is its own: an API process trusts its "sold out" flag
    for sold_out_recheck_seconds at most, then asks Redis again, so returned stock is
    offered again within that time."""
    producer = await start_producer(settings)
    try:
        handler = StockReturnHandler(stock, sold_out, metrics.stock_returns)
        consumer = BatchConsumer(
            settings, ORDERS, CONSUMER_GROUP, handler, producer, metrics.consumer
        )
        await consumer.run()
    finally:
        await producer.stop()


def start_background(
    settings: Settings,
    redis: Redis,
    activities: ActivityRepository,
    stock: StockStore,
    sold_out: SoldOutFlags,
    metrics: BackgroundMetrics,
    relay: OutboxRelay,
    *,
    run_relay: bool = True,
    run_stock_return: bool = True,
) -> list[asyncio.Task[None]]:
    tasks = [
        asyncio.create_task(
            every(
                settings.metrics_refresh_seconds,
                lambda: warm_pending(activities, stock, metrics.missing_state),
                "warm-up",
            ),
            name="warm-up",
        ),
        asyncio.create_task(
            metrics.live.run(redis, activities, stock, settings.metrics_refresh_seconds),
            name="live-gauges",
        ),
    ]
    if run_relay:
        tasks.append(asyncio.create_task(relay.run(), name="outbox-relay"))
    if run_stock_return:
        tasks.append(
            asyncio.create_task(
                return_stock(settings, stock, sold_out, metrics), name="stock-return"
            )
        )
    return tasks
