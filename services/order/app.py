"""Wiring of the order service: resources, the reservation consumer, the outbox relay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from services.common.http import HttpMetrics, auth_middleware, errors_and_metrics_middleware
from services.common.kafka import (
    BatchConsumer,
    ConsumerMetrics,
    DlqMetrics,
    kafka_reachable,
    start_producer,
    watch_dlq_sizes,
)
from services.common.live import SHARED_READING_SECONDS, FiguresCache, LiveStreams
from services.common.observability import create_ops_app
from services.common.openapi.serve import add_openapi_route
from services.common.openapi.spec import OPENAPI_PATH
from services.common.pg_outbox import PgOutboxMetrics, PgOutboxRelay
from services.common.resources import PG_TRANSIENT, pg_pool
from services.common.settings import Settings
from services.common.shutdown import close_pool, stop_tasks
from services.common.topics import COUPONS, GROUPBUY, SECKILL_RESERVATIONS
from services.common.topics import ORDERS as ORDERS_TOPIC
from services.order.consumer import (
    CouponLockHandler,
    CouponLockMetrics,
    GroupEventHandler,
    OrderCreationMetrics,
    ReservationHandler,
)
from services.order.domain import SaleRef
from services.order.openapi import SPEC as OPENAPI
from services.order.repository import OUTBOX, OrderRepository
from services.order.routes import (
    FIGURES,
    ORDERS,
    PAYMENT_CALLBACK,
    PAYMENTS,
    PaymentCallbackContext,
    PaymentMetrics,
    add_routes,
    read_figures,
)
from services.order.state_metrics import OrderStateMetrics
from services.order.sweeper import Sweeper, SweeperMetrics

CONSUMER_GROUP = "order"
# Its own consumer group: members of one group subscribing to different topics would
# rebalance each other.
GROUP_CONSUMER_GROUP = "order-groupbuy"
# coupon.locked discounts its order (docs/coupons.md): the payment must then match it.
COUPON_CONSUMER_GROUP = "order-coupons"
PRODUCER: web.AppKey[AIOKafkaProducer] = web.AppKey("producer", AIOKafkaProducer)
REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("registry", CollectorRegistry)


def create_app(
    settings: Settings, *, run_consumer: bool = True, run_sweeper: bool = True
) -> web.Application:
    registry = CollectorRegistry()
    http_metrics = HttpMetrics(registry)
    consumer_metrics = ConsumerMetrics(registry)
    creation_metrics = OrderCreationMetrics(registry)
    outbox_metrics = PgOutboxMetrics(registry, "order")
    state_metrics = OrderStateMetrics(registry)
    dlq_metrics = DlqMetrics(registry)
    sweeper_metrics = SweeperMetrics(registry)
    coupon_metrics = CouponLockMetrics(registry)
    app = web.Application(
        middlewares=[
            errors_and_metrics_middleware(http_metrics),
            # The payment callback is authenticated by the provider's signature instead.
            auth_middleware(
                settings.jwt_keys(), public_paths=frozenset({PAYMENT_CALLBACK, OPENAPI_PATH})
            ),
        ],
        client_max_size=64 * 1024,
    )
    app[REGISTRY] = registry
    app[PAYMENTS] = PaymentCallbackContext(settings, PaymentMetrics(registry))
    LiveStreams().install(app)

    async def sale_figures(sale: SaleRef) -> dict[str, Any]:
        return await read_figures(app[ORDERS], sale)

    app[FIGURES] = FiguresCache(sale_figures, SHARED_READING_SECONDS)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        pool = await pg_pool(settings)
        producer = await start_producer(settings)
        app[PRODUCER] = producer
        relay = PgOutboxRelay(pool, producer, settings, outbox_metrics, OUTBOX)
        orders = OrderRepository(pool, settings.kafka_topic_prefix, on_announced=relay.wake)
        app[ORDERS] = orders
        tasks = [asyncio.create_task(relay.run(), name="order-outbox-relay")]
        if run_sweeper:
            sweeper = Sweeper(orders, settings, sweeper_metrics)
            tasks.append(asyncio.create_task(sweeper.run(), name="sweeper"))
        refresh = settings.metrics_refresh_seconds
        dead_letters = [SECKILL_RESERVATIONS, ORDERS_TOPIC, GROUPBUY, COUPONS]
        tasks.append(asyncio.create_task(state_metrics.run(pool, refresh), name="order-gauges"))
        tasks.append(
            asyncio.create_task(
                watch_dlq_sizes(settings, dead_letters, dlq_metrics, refresh),
                name="dlq-sizes",
            )
        )
        if run_consumer:
            reservations = ReservationHandler(orders, creation_metrics)
            consumed = (
                (SECKILL_RESERVATIONS, CONSUMER_GROUP, reservations),
                (GROUPBUY, GROUP_CONSUMER_GROUP, GroupEventHandler(orders, creation_metrics)),
                (COUPONS, COUPON_CONSUMER_GROUP, CouponLockHandler(orders, coupon_metrics)),
            )
            for topic, group, handler in consumed:
                consumer = BatchConsumer(
                    settings,
                    topic,
                    group,
                    handler,
                    producer,
                    consumer_metrics,
                    transient_errors=PG_TRANSIENT,
                )
                tasks.append(asyncio.create_task(consumer.run(), name=f"{group}-consumer"))
        try:
            yield
        finally:
            await stop_tasks(tasks)
            await producer.stop()
            await close_pool(pool)

    app.cleanup_ctx.append(resources)
    add_routes(app)
    add_openapi_route(app, OPENAPI.document())
    return app


def create_ops(api: web.Application) -> web.Application:
    async def postgres_ready() -> None:
        await api[ORDERS].ping()

    async def kafka_ready() -> None:
        await kafka_reachable(api[PRODUCER])

    return create_ops_app(api[REGISTRY], {"postgres": postgres_ready, "kafka": kafka_ready})
