"""Wiring of the seckill service: resources, background tasks, routes, ops endpoints."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from services.common.http import auth_middleware, errors_and_metrics_middleware
from services.common.live import SHARED_READING_SECONDS, FiguresCache, LiveStreams
from services.common.observability import create_ops_app
from services.common.openapi.serve import add_openapi_route
from services.common.openapi.spec import OPENAPI_PATH
from services.common.redis_batch import ScriptBatcher
from services.common.resources import pg_pool, redis_client
from services.common.sale_cache import SaleCache
from services.common.settings import Settings
from services.common.shutdown import close_pool, stop_tasks
from services.common.stock_view import StockView
from services.seckill.activities import ActivityRepository
from services.seckill.admin import SaleAdmin
from services.seckill.background import start_background
from services.seckill.board import PressBoard
from services.seckill.metrics import SeckillMetrics
from services.seckill.openapi import SPEC as OPENAPI
from services.seckill.outbox_relay import OutboxRelay
from services.seckill.routes import SECKILL, Seckill, add_routes
from services.seckill.sold_out import SoldOutFlags
from services.seckill.stock import StockStore

log = logging.getLogger(__name__)

RELAY: web.AppKey[OutboxRelay] = web.AppKey("relay", OutboxRelay)
METRICS: web.AppKey[SeckillMetrics] = web.AppKey("metrics", SeckillMetrics)


def create_app(
    settings: Settings, *, run_relay: bool = True, run_stock_return: bool = True
) -> web.Application:
    """The API. The background work (background.py) runs here too unless
    settings.seckill_embedded_worker is off; run_relay/run_stock_return let tests drive
    those pieces themselves."""
    embedded = settings.seckill_embedded_worker
    metrics = SeckillMetrics(embedded_background=embedded)
    app = web.Application(
        middlewares=[
            errors_and_metrics_middleware(metrics.http),
            auth_middleware(settings.jwt_keys(), public_paths=frozenset({OPENAPI_PATH})),
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
        stock = StockStore(
            redis,
            batcher,
            settings.user_rate_limit_per_second,
            settings.idempotency_key_retention_seconds,
        )
        activities = ActivityRepository(pool)
        sold_out = SoldOutFlags(settings.sold_out_recheck_seconds)
        cache = SaleCache(activities.get, settings.seckill_activity_cache_seconds)
        admin = SaleAdmin(activities, stock, sold_out, cache.forget)
        board = PressBoard(redis)
        sk = Seckill(
            activities=activities,
            stock=stock,
            stock_view=StockView(stock.remaining, settings.stock_display_max_age_seconds),
            sold_out=sold_out,
            metrics=metrics,
            cache=cache,
            board=board,
            admin=admin,
            # Half the stream's interval: a board is never shown a reading older than that.
            figures=FiguresCache(admin.figures, SHARED_READING_SECONDS),
        )
        app[SECKILL] = sk
        # The board's press counters are this API process's own: flushed from here,
        # whether or not the background work runs in this process.
        tasks: list[asyncio.Task[None]] = [asyncio.create_task(board.run(), name="board")]
        if metrics.background is not None:
            relay = OutboxRelay(redis, settings, metrics.background.relay)
            app[RELAY] = relay
            tasks += start_background(
                settings,
                redis,
                sk.activities,
                sk.stock,
                sk.sold_out,
                metrics.background,
                relay,
                run_relay=run_relay,
                run_stock_return=run_stock_return,
            )
        try:
            yield
        finally:
            await stop_tasks(tasks)
            await batcher.stop()
            await close_pool(pool)
            await redis.aclose()

    app.cleanup_ctx.append(resources)
    LiveStreams().install(app)
    add_routes(app)
    add_openapi_route(app, OPENAPI.document())
    app[METRICS] = metrics
    return app


def create_ops(api: web.Application) -> web.Application:
    metrics = api[METRICS]

    async def redis_ready() -> None:
        await api[SECKILL].stock.probe()

    async def postgres_ready() -> None:
        await api[SECKILL].activities.get(0)

    async def kafka_ready() -> None:
        await api[RELAY].check_kafka()

    checks = {"redis": redis_ready, "postgres": postgres_ready}
    if metrics.background is not None:  # the API itself talks to Kafka only via the relay
        checks["kafka"] = kafka_ready
    return create_ops_app(metrics.registry, checks, informational=frozenset({"kafka"}))
