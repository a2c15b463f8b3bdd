"""Wiring of the coupon service: resources, the outbox relay, consumers, background tasks,
routes, ops.

Each part is added in its own place below (resources, the Coupons the views share,
background tasks, consumers as (topic, group, handler, transient errors), routes), so a
new consumer, task or set of routes is one line in the list it belongs to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from services.common.http import auth_middleware, errors_and_metrics_middleware
from services.common.kafka import BatchHandler, consume
from services.common.live import SHARED_READING_SECONDS, FiguresCache, LiveStreams
from services.common.observability import create_ops_app
from services.common.openapi.serve import add_openapi_route
from services.common.openapi.spec import OPENAPI_PATH
from services.common.periodic import every
from services.common.redis_batch import ScriptBatcher
from services.common.resources import PG_TRANSIENT, REDIS_UNANSWERED, pg_pool, redis_client
from services.common.sale_cache import SaleCache
from services.common.settings import Settings
from services.common.shutdown import close_pool, stop_tasks
from services.common.stock_view import StockView
from services.common.stream_outbox import StreamOutbox, StreamOutboxRelay
from services.common.topics import COUPONS as COUPONS_TOPIC
from services.common.topics import ORDERS as ORDERS_TOPIC
from services.coupon.admin import TemplateAdmin
from services.coupon.announce import EventRelay, coupon_outbox
from services.coupon.consumer import RECORD_GROUP, CouponRecordHandler
from services.coupon.domain import outbox_event
from services.coupon.grant_store import GrantStore
from services.coupon.keys import TEMPLATES, template_keys, template_of_outbox
from services.coupon.lifecycle import ORDERS_GROUP, OrdersHandler
from services.coupon.lifecycle_metrics import LifecycleMetrics
from services.coupon.lifecycle_repository import LifecycleRepository
from services.coupon.metrics import CouponMetrics
from services.coupon.openapi import SPEC as OPENAPI
from services.coupon.redemption import Redemption
from services.coupon.redemption_routes import REDEMPTION
from services.coupon.redemption_routes import add_routes as add_redemption_routes
from services.coupon.repository import CouponRecord, TemplateRepository
from services.coupon.routes import COUPONS, Coupons, add_routes
from services.coupon.rule_routes import RULES
from services.coupon.rule_routes import add_routes as add_rule_routes
from services.coupon.rules import RuleRepository
from services.coupon.store import CouponStore
from services.coupon.sweeper import CouponSweeper

log = logging.getLogger(__name__)

# The outboxes of claim.lua and grant.lua, one stream per template, to the coupons topic.
COUPON_OUTBOX = StreamOutbox(
    registry=TEMPLATES,
    stream_of=lambda template_id: template_keys(template_id).outbox,
    id_of=template_of_outbox,
    to_event=outbox_event,
    topic=COUPONS_TOPIC,
)
RELAY: web.AppKey[StreamOutboxRelay] = web.AppKey("relay", StreamOutboxRelay)
METRICS: web.AppKey[CouponMetrics] = web.AppKey("metrics", CouponMetrics)
GRANTS: web.AppKey[GrantStore] = web.AppKey("grants", GrantStore)
# How stale the shoppers' template page may be after an admin change made through another
# process; claims never read it (claim.lua decides on the settings in Redis).
TEMPLATE_CACHE_SECONDS = 1.0


async def warm_pending(cp: Coupons) -> None:
    """Warm templates created while Redis was unreachable (their create answered 202);
    run every METRICS_REFRESH_SECONDS, so they are claimable as soon as Redis is back."""
    for template in await cp.templates.unwarmed():
        await cp.store.warm_up(template)
        await cp.templates.mark_warmed(template.id)
        log.info("warmed coupon template %d", template.id)


def create_app(
    settings: Settings,
    *,
    run_relay: bool = True,
    run_consumers: bool = True,
    run_sweeper: bool = True,
) -> web.Application:
    """The API, with its relays, consumers and background tasks; run_relay (both
    outboxes'), run_consumers and run_sweeper let tests drive those themselves."""
    metrics = CouponMetrics()
    life_metrics = LifecycleMetrics(metrics.registry)
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
        # Claims of one template in one round trip become one script call (a rush).
        batcher = ScriptBatcher(redis, settings.reserve_batch_max, settings.redis_timeout_seconds)
        batcher.start()
        store = CouponStore(
            redis,
            batcher,
            settings.user_rate_limit_per_second,
            settings.idempotency_key_retention_seconds,
        )
        templates = TemplateRepository(pool)
        record = CouponRecord(pool)
        cache = SaleCache(templates.get, TEMPLATE_CACHE_SECONDS)
        admin = TemplateAdmin(templates, record, store, cache)
        cp = Coupons(
            templates=templates,
            coupons=record,
            store=store,
            metrics=metrics,
            cache=cache,
            stock_view=StockView(store.remaining, settings.coupon_view_max_age_seconds),
            admin=admin,
            # Half the streams' interval: each tick of a board gets a fresh reading.
            figures=FiguresCache(admin.figures, SHARED_READING_SECONDS),
        )
        app[COUPONS] = cp
        relay = StreamOutboxRelay(redis, settings, metrics.relay, COUPON_OUTBOX)
        app[RELAY] = relay
        # A coupon's life after issue: events through coupon.outbox and its own relay.
        events = EventRelay(pool, settings, life_metrics.outbox)
        lifecycle = coupon_outbox(pool, settings.kafka_topic_prefix, events.wake)
        grants = GrantStore(redis)
        app[GRANTS] = grants
        app[REDEMPTION] = Redemption(lifecycle, life_metrics)
        app[RULES] = RuleRepository(pool)

        tasks = [
            asyncio.create_task(
                every(settings.metrics_refresh_seconds, lambda: warm_pending(cp), "warm-up"),
                name="warm-up",
            ),
            asyncio.create_task(
                metrics.remaining.run(templates, store, settings.metrics_refresh_seconds),
                name="remaining-gauge",
            ),
        ]
        if run_relay:
            tasks.append(asyncio.create_task(relay.run(), name="outbox-relay"))
            tasks.append(asyncio.create_task(events.run(), name="coupon-event-relay"))
        if run_sweeper:
            sweeper = CouponSweeper(lifecycle, settings, life_metrics)
            tasks.append(asyncio.create_task(sweeper.run(), name="coupon-sweeper"))

        # (topic, consumer group, handler, errors retried until they pass): each runs in
        # its own task with its own producer for dead letters.
        consumers: list[tuple[str, str, BatchHandler, tuple[type[BaseException], ...]]] = [
            (COUPONS_TOPIC, RECORD_GROUP, CouponRecordHandler(record, metrics), PG_TRANSIENT),
            # Grants run grant.lua: Redis being down stalls them, never dead-letters them.
            (
                ORDERS_TOPIC,
                ORDERS_GROUP,
                OrdersHandler(LifecycleRepository(lifecycle), grants, life_metrics),
                (*PG_TRANSIENT, *REDIS_UNANSWERED),
            ),
        ]
        if run_consumers:
            tasks += [
                asyncio.create_task(
                    consume(settings, topic, group, handler, metrics.consumer, transient),
                    name=group,
                )
                for topic, group, handler, transient in consumers
            ]
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
    add_redemption_routes(app)
    add_rule_routes(app)
    add_openapi_route(app, OPENAPI.document())
    app[METRICS] = metrics
    return app


def create_ops(api: web.Application) -> web.Application:
    metrics = api[METRICS]

    async def redis_ready() -> None:
        await api[COUPONS].store.probe()
        await api[GRANTS].probe()

    async def postgres_ready() -> None:
        await api[COUPONS].templates.ping()

    async def kafka_ready() -> None:
        await api[RELAY].check_kafka()

    # Kafka is informational: claims keep succeeding and queue in the outbox.
    return create_ops_app(
        metrics.registry,
        {"redis": redis_ready, "postgres": postgres_ready, "kafka": kafka_ready},
        informational=frozenset({"kafka"}),
    )
