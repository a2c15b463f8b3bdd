"""Wiring of the seckill service: resources, background tasks, routes, ops endpoints."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import Gauge

from services.common.http import auth_middleware, errors_and_metrics_middleware
from services.common.kafka import BatchConsumer, start_producer
from services.common.observability import create_ops_app
from services.common.redis_batch import ScriptBatcher
from services.common.resources import pg_pool, redis_client
from services.common.settings import Settings
from services.common.shutdown import close_pool, stop_tasks
from services.common.topics import ORDERS
from services.seckill.activities import ActivityRepository
from services.seckill.metrics import SeckillMetrics
from services.seckill.outbox_relay import OutboxRelay
from services.seckill.routes import SECKILL, Seckill, add_routes
from services.seckill.sold_out import SoldOutFlags
from services.seckill.stock import StockStore
from services.seckill.stock_return import StockReturnHandler

log = logging.getLogger(__name__)

CONSUMER_GROUP = "seckill"
RELAY: web.AppKey[OutboxRelay] = web.AppKey("relay", OutboxRelay)
METRICS: web.AppKey[SeckillMetrics] = web.AppKey("metrics", SeckillMetrics)


async def warm_pending(sk: Seckill, missing_state: Gauge) -> None:
    """Warm activities created while Redis was unreachable, and flag activities whose
    Redis state is gone (Redis lost data): those must be rebuilt from the order record,
    never re-warmed with their full stock, which would oversell."""
    for activity in await sk.activities.unwarmed():
        await sk.stock.warm_up(activity)
        await sk.activities.mark_warmed(activity.id)
        log.info("warmed activity %d", activity.id)
    lost = [a.id for a in await sk.activities.warmed_live() if not await sk.stock.is_warm(a.id)]
    missing_state.set(len(lost))
    if lost:
        log.error("activities with lost Redis state, refusing to re-warm: %s", lost)


async def return_stock(settings: Settings, sk: Seckill) -> None:
    """Consume order.cancelled and return the stock (its own producer, for dead letters)."""
    producer = await start_producer(settings)
    try:
        handler = StockReturnHandler(sk.stock, sk.sold_out, sk.metrics.stock_returns)
        consumer = BatchConsumer(
            settings, ORDERS, CONSUMER_GROUP, handler, producer, sk.metrics.consumer
        )
        await consumer.run()
    finally:
        await producer.stop()


def create_app(
    settings: Settings, *, run_relay: bool = True, run_stock_return: bool = True
) -> web.Application:
    metrics = SeckillMetrics()
    missing_state = Gauge(
        "seckill_activities_missing_redis_state",
        "Live activities whose Redis state is missing (Redis data loss); needs a rebuild.",
        registry=metrics.registry,
    )
    app = web.Application(
        middlewares=[
            errors_and_metrics_middleware(metrics.http),
            auth_middleware(settings.jwt_secret),
        ],
        client_max_size=64 * 1024,
    )

    async def resources(app: web.Application) -> AsyncIterator[None]:
        redis = redis_client(settings)
        pool = await pg_pool(settings)
        batcher = ScriptBatcher(
            redis,
            settings.reserve_batch_max,
            settings.redis_timeout_seconds,
            on_batch=metrics.batch_size.observe,
        )
        batcher.start()
        sk = Seckill(
            activities=ActivityRepository(pool),
            stock=StockStore(redis, batcher, settings.user_rate_limit_per_second),
            sold_out=SoldOutFlags(settings.sold_out_recheck_seconds),
            metrics=metrics,
            cache={},
        )
        app[SECKILL] = sk
        relay = OutboxRelay(redis, settings, metrics.relay)
        app[RELAY] = relay
        tasks = [asyncio.create_task(warm_pending(sk, missing_state), name="warm-up")]
        tasks.append(
            asyncio.create_task(
                metrics.live.run(redis, sk.activities, sk.stock, settings.metrics_refresh_seconds),
                name="live-gauges",
            )
        )
        if run_relay:
            tasks.append(asyncio.create_task(relay.run(), name="outbox-relay"))
        if run_stock_return:
            tasks.append(asyncio.create_task(return_stock(settings, sk), name="stock-return"))
        try:
            yield
        finally:
            await stop_tasks(tasks)
            await batcher.stop()
            await close_pool(pool)
            await redis.aclose()

    app.cleanup_ctx.append(resources)
    add_routes(app)
    app[METRICS] = metrics
    return app


def create_ops(api: web.Application) -> web.Application:
    metrics = api[METRICS]

    async def redis_ready() -> None:
        await api[SECKILL].stock.probe()

    async def postgres_ready() -> None:
        await api[SECKILL].activities.get(0)

    async def kafka_ready() -> None:
        api[RELAY].check_kafka()

    return create_ops_app(
        metrics.registry,
        {"redis": redis_ready, "postgres": postgres_ready, "kafka": kafka_ready},
        informational=frozenset({"kafka"}),
    )
