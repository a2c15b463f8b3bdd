"""Wiring of the notify service: consumers of orders, groupbuy, seckill.reservations and
coupons, the consumer of users (recipients' openids), the dispatcher, the dead-letter
publisher, the sale-starting reminders."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from services.common.http import HttpMetrics, auth_middleware, errors_and_metrics_middleware
from services.common.kafka import (
    BatchConsumer,
    ConsumerMetrics,
    DlqMetrics,
    kafka_reachable,
    start_producer,
    watch_dlq_sizes,
)
from services.common.observability import create_ops_app
from services.common.openapi.serve import add_openapi_route
from services.common.openapi.spec import OPENAPI_PATH
from services.common.resources import pg_pool, redis_client
from services.common.settings import Settings
from services.common.shutdown import close_pool, stop_tasks
from services.common.topics import COUPONS, GROUPBUY, ORDERS, SECKILL_RESERVATIONS, USERS
from services.notify.channels import make_channel
from services.notify.consumer import EventHandler, RecipientHandler
from services.notify.dispatcher import Dispatcher
from services.notify.domain import parse_template_ids
from services.notify.metrics import NotifyMetrics
from services.notify.openapi import SPEC as OPENAPI
from services.notify.reminders import Reminders
from services.notify.repository import NotifyRepository
from services.notify.routes import REPO, TEMPLATE_IDS, add_routes
from services.notify.templates import TemplateIds

CONSUMER_GROUP = "notify"
MESSAGE_TOPICS = (ORDERS, GROUPBUY, SECKILL_RESERVATIONS)
# Registrations have a group of their own: the compacted `users` topic is read from its
# beginning by a new group (every user's openid), and its offsets can be reset to rebuild
# notify.recipients without touching the message topics' offsets; its members joining
# and leaving do not stall the message consumers' partitions either.
RECIPIENTS_GROUP = "notify-recipients"
# Coupons too: a claim rush puts thousands of coupon.claimed on the topic, of which notify
# wants none (only coupon.expiring). Its own group keeps that burst's lag and rebalances
# away from the order messages' partitions, and lets its offsets be reset on their own.
COUPONS_GROUP = "notify-coupons"
CONSUMED_TOPICS = (*MESSAGE_TOPICS, COUPONS, USERS)
GROUP_OF_TOPIC = {USERS: RECIPIENTS_GROUP, COUPONS: COUPONS_GROUP}
PG_TRANSIENT = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.TooManyConnectionsError,
    # Two batches queueing for the same users in opposite order cannot deadlock (users
    # are locked sorted), but a serialization hiccup is still only worth a retry.
    asyncpg.DeadlockDetectedError,
)
PRODUCER: web.AppKey[AIOKafkaProducer] = web.AppKey("producer", AIOKafkaProducer)
REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("registry", CollectorRegistry)
DISPATCHER: web.AppKey[Dispatcher] = web.AppKey("dispatcher", Dispatcher)
REDIS: web.AppKey[Redis] = web.AppKey("redis", Redis)
SENDS_WITH_REDIS_TOKEN: web.AppKey[bool] = web.AppKey("sends_with_redis_token", bool)


def create_app(
    settings: Settings,
    *,
    run_consumers: bool = True,
    run_dispatcher: bool = True,
    run_reminders: bool = True,
) -> web.Application:
    registry = CollectorRegistry()
    http_metrics = HttpMetrics(registry)
    consumer_metrics = ConsumerMetrics(registry)
    dlq_metrics = DlqMetrics(registry)
    metrics = NotifyMetrics(registry)
    app = web.Application(
        middlewares=[
            errors_and_metrics_middleware(http_metrics),
            auth_middleware(settings.jwt_keys(), public_paths=frozenset({OPENAPI_PATH})),
        ],
        client_max_size=64 * 1024,
    )
    app[REGISTRY] = registry
    # Parsed here: a bad NOTIFY_TEMPLATE_IDS stops the start, not the first send.
    template_defaults = parse_template_ids(settings.notify_template_ids)
    app[SENDS_WITH_REDIS_TOKEN] = settings.notify_channel == "http" and not (
        settings.notify_access_token
    )

    async def resources(app: web.Application) -> AsyncIterator[None]:
        pool = await pg_pool(settings)
        # The WeChat access_token identity keeps (services/common/wechat_token.py).
        redis = redis_client(settings)
        producer = await start_producer(settings)
        channel = make_channel(settings, redis, metrics)
        app[PRODUCER] = producer
        app[REDIS] = redis
        repo = NotifyRepository(pool)
        app[REPO] = repo
        templates = TemplateIds(repo, template_defaults, settings.notify_template_cache_seconds)
        app[TEMPLATE_IDS] = templates
        dispatcher = Dispatcher(repo, channel, settings, metrics, producer, templates)
        app[DISPATCHER] = dispatcher
        refresh = settings.metrics_refresh_seconds
        tasks = [
            asyncio.create_task(metrics.run_gauges(repo, refresh), name="notify-gauges"),
            asyncio.create_task(
                # notify.dlq is dlq("notify"); the consumers' own dead letters go to the
                # <topic>.dlq of what they consume.
                watch_dlq_sizes(settings, ["notify", *CONSUMED_TOPICS], dlq_metrics, refresh),
                name="dlq-sizes",
            ),
        ]
        if run_dispatcher:
            tasks.append(asyncio.create_task(dispatcher.run(), name="notify-dispatcher"))
            tasks.append(
                asyncio.create_task(dispatcher.run_dlq_publisher(), name="notify-dlq-publisher")
            )
            tasks.append(asyncio.create_task(dispatcher.run_waiting(), name="notify-waiting"))
        if run_reminders:
            reminders = Reminders(repo, settings, metrics, dispatcher.wake)
            tasks.append(asyncio.create_task(reminders.run(), name="notify-reminders"))
        if run_consumers:
            handler = EventHandler(repo, settings, metrics, dispatcher.wake)
            recipients = RecipientHandler(repo, settings, metrics, dispatcher.wake)
            for topic in CONSUMED_TOPICS:
                consumer = BatchConsumer(
                    settings,
                    topic,
                    GROUP_OF_TOPIC.get(topic, CONSUMER_GROUP),
                    recipients if topic == USERS else handler,
                    producer,
                    consumer_metrics,
                    transient_errors=PG_TRANSIENT,
                )
                tasks.append(asyncio.create_task(consumer.run(), name=f"notify-{topic}"))
        try:
            yield
        finally:
            await stop_tasks(tasks)
            await channel.close()
            await producer.stop()
            await redis.aclose()
            await close_pool(pool)

    app.cleanup_ctx.append(resources)
    add_routes(app)
    add_openapi_route(app, OPENAPI.document())
    return app


def create_ops(api: web.Application) -> web.Application:
    async def postgres_ready() -> None:
        await api[REPO].ping()

    async def kafka_ready() -> None:
        await kafka_reachable(api[PRODUCER])

    async def redis_ready() -> None:
        await api[REDIS].ping()

    # Redis only holds the shared access_token: without it (log channel, fixed token)
    # an outage degrades nothing notify does.
    informational = frozenset() if api[SENDS_WITH_REDIS_TOKEN] else frozenset({"redis"})
    return create_ops_app(
        api[REGISTRY],
        {"postgres": postgres_ready, "kafka": kafka_ready, "redis": redis_ready},
        informational,
    )
