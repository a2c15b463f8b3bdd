"""Wiring of the groupbuy service: resources, relay, sweeper, consumers, routes, ops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from services.common.http import auth_middleware, errors_and_metrics_middleware
from services.common.kafka import BatchHandler
from services.common.kafka import consume as run_consumer
from services.common.live import SHARED_READING_SECONDS, FiguresCache, LiveStreams
from services.common.observability import create_ops_app
from services.common.openapi.serve import add_openapi_route
from services.common.openapi.spec import OPENAPI_PATH
from services.common.periodic import every
from services.common.resources import PG_TRANSIENT, pg_pool, redis_client
from services.common.sale_cache import SaleCache
from services.common.settings import Settings
from services.common.shutdown import close_pool, stop_tasks
from services.common.stream_outbox import StreamOutbox, StreamOutboxRelay
from services.common.topics import GROUPBUY as GROUPBUY_TOPIC
from services.common.topics import ORDERS
from services.groupbuy.admin import CampaignAdmin
from services.groupbuy.consumer import GroupRecordHandler, UnitReturnHandler
from services.groupbuy.domain import outbox_event
from services.groupbuy.keys import CAMPAIGNS, campaign_keys, campaign_of_outbox
from services.groupbuy.metrics import GroupbuyMetrics
from services.groupbuy.openapi import SPEC as OPENAPI
from services.groupbuy.repository import CampaignRepository, GroupRecord
from services.groupbuy.routes import GROUPBUY, Groupbuy, add_routes
from services.groupbuy.store import GroupStore
from services.groupbuy.sweeper import GroupSweeper

log = logging.getLogger(__name__)

# Two consumer groups: the record of groups (own topic) and unit returns (orders topic).
RECORD_GROUP = "groupbuy-record"
UNIT_RETURN_GROUP = "groupbuy"
GROUPBUY_OUTBOX = StreamOutbox(
    registry=CAMPAIGNS,
    stream_of=lambda campaign_id: campaign_keys(campaign_id).outbox,
    id_of=campaign_of_outbox,
    to_event=outbox_event,
    topic=GROUPBUY_TOPIC,
)
RELAY: web.AppKey[StreamOutboxRelay] = web.AppKey("relay", StreamOutboxRelay)
METRICS: web.AppKey[GroupbuyMetrics] = web.AppKey("metrics", GroupbuyMetrics)
# How stale the shoppers' campaign page may be after an admin change made through another
# process (docs/groupbuy.md, "Ending and cancelling"); opens and joins never read it.
CAMPAIGN_CACHE_SECONDS = 1.0


async def warm_pending(gb: Groupbuy) -> None:
    """Warm campaigns created while Redis was unreachable (their create answered 202);
    run every METRICS_REFRESH_SECONDS, so they sell as soon as Redis is back."""
    for campaign in await gb.campaigns.unwarmed():
        await gb.store.warm_up(campaign)
        await gb.campaigns.mark_warmed(campaign.id)
        log.info("warmed campaign %d", campaign.id)


async def consume(
    settings: Settings, topic: str, group: str, handler: BatchHandler, gb: Groupbuy
) -> None:
    await run_consumer(settings, topic, group, handler, gb.metrics.consumer, PG_TRANSIENT)


def create_app(
    settings: Settings,
    *,
    run_relay: bool = True,
    run_sweeper: bool = True,
    run_consumers: bool = True,
) -> web.Application:
    metrics = GroupbuyMetrics()
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
        store = GroupStore(redis, settings.idempotency_key_retention_seconds)
        campaigns = CampaignRepository(pool)
        cache = SaleCache(campaigns.get, CAMPAIGN_CACHE_SECONDS)
        sweeper = GroupSweeper(store, settings, metrics)
        admin = CampaignAdmin(campaigns, store, sweeper, cache)
        gb = Groupbuy(
            campaigns=campaigns,
            groups=GroupRecord(pool),
            store=store,
            metrics=metrics,
            cache=cache,
            admin=admin,
            # Half the streams' interval: each tick of a board gets a fresh reading.
            figures=FiguresCache(admin.figures, SHARED_READING_SECONDS),
        )
        app[GROUPBUY] = gb
        relay = StreamOutboxRelay(redis, settings, metrics.relay, GROUPBUY_OUTBOX)
        app[RELAY] = relay
        tasks = [
            asyncio.create_task(
                every(settings.metrics_refresh_seconds, lambda: warm_pending(gb), "warm-up"),
                name="warm-up",
            ),
            asyncio.create_task(
                metrics.states.run(pool, settings.metrics_refresh_seconds), name="group-gauges"
            ),
        ]
        if run_relay:
            tasks.append(asyncio.create_task(relay.run(), name="outbox-relay"))
        if run_sweeper:
            tasks.append(asyncio.create_task(sweeper.run(), name="group-sweeper"))
        if run_consumers:
            record = GroupRecordHandler(gb.groups)
            returns = UnitReturnHandler(store, metrics)
            tasks += [
                asyncio.create_task(
                    consume(settings, GROUPBUY_TOPIC, RECORD_GROUP, record, gb), name="record"
                ),
                asyncio.create_task(
                    consume(settings, ORDERS, UNIT_RETURN_GROUP, returns, gb), name="unit-return"
                ),
            ]
        try:
            yield
        finally:
            await stop_tasks(tasks)
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
        await api[GROUPBUY].store.probe()

    async def postgres_ready() -> None:
        await api[GROUPBUY].campaigns.ping()

    async def kafka_ready() -> None:
        await api[RELAY].check_kafka()

    # Kafka is informational: opens and joins keep succeeding and queue in the outbox.
    return create_ops_app(
        metrics.registry,
        {"redis": redis_ready, "postgres": postgres_ready, "kafka": kafka_ready},
        informational=frozenset({"kafka"}),
    )
