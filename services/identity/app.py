"""Wiring of the identity service: PostgreSQL, Redis, the WeChat API client, the users
outbox relay, the access_token keeper and the expired-token purge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from services.common.http import HttpMetrics, auth_middleware, errors_and_metrics_middleware
from services.common.kafka import kafka_reachable, start_producer
from services.common.observability import create_ops_app
from services.common.openapi.serve import add_openapi_route
from services.common.periodic import every
from services.common.pg_outbox import PgOutboxMetrics, PgOutboxRelay
from services.common.resources import pg_pool, redis_client
from services.common.settings import Settings
from services.common.shutdown import close_pool, stop_tasks
from services.common.topics import USERS
from services.identity.access_token import AccessTokenKeeper
from services.identity.admin_routes import ADMIN_LOGIN as ADMIN_LOGIN_SERVICE
from services.identity.admin_routes import add_admin_routes
from services.identity.domain import trusted_networks
from services.identity.merchant_accounts import AdminLogin
from services.identity.metrics import IdentityMetrics
from services.identity.openapi import SPEC as OPENAPI
from services.identity.provider import WeChatApi
from services.identity.repository import OUTBOX, IdentityRepository
from services.identity.routes import AUTH, PUBLIC_PATHS, ShopperAuth, add_routes
from services.identity.throttle import LoginThrottle
from services.identity.tokens import TokenIssuer

REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("registry", CollectorRegistry)
PRODUCER: web.AppKey[AIOKafkaProducer] = web.AppKey("producer", AIOKafkaProducer)
REDIS: web.AppKey[Redis] = web.AppKey("redis", Redis)
# Refresh tokens are kept this long past their expiry (an expired token presented is
# answered "expired", not "unknown"), then purged.
PURGE_GRACE_SECONDS = 7 * 24 * 3600
PURGE_INTERVAL_SECONDS = 3600.0


def create_app(
    settings: Settings, *, run_relay: bool = True, run_keeper: bool = True
) -> web.Application:
    keys = settings.jwt_keys()  # a bad key configuration stops the start, not a request
    registry = CollectorRegistry()
    metrics = IdentityMetrics(registry)
    outbox_metrics = PgOutboxMetrics(registry, "identity")
    app = web.Application(
        middlewares=[
            errors_and_metrics_middleware(HttpMetrics(registry)),
            auth_middleware(keys, public_paths=PUBLIC_PATHS),
        ],
        client_max_size=64 * 1024,
    )
    app[REGISTRY] = registry

    async def resources(app: web.Application) -> AsyncIterator[None]:
        pool = await pg_pool(settings)
        redis = redis_client(settings)
        producer = await start_producer(settings)
        api = WeChatApi(settings, metrics.provider_seconds)
        app[PRODUCER] = producer
        app[REDIS] = redis
        repo = IdentityRepository(pool, settings.topic(USERS))
        relay = PgOutboxRelay(pool, producer, settings, outbox_metrics, OUTBOX)
        throttle = LoginThrottle(
            redis,
            settings.login_rate_limit_per_minute,
            settings.gateway_rate_limit_exempt,
            metrics,
        )
        issuer = TokenIssuer(keys, settings)
        trusted = trusted_networks(settings.trusted_proxy_cidrs)
        app[AUTH] = ShopperAuth(settings, repo, api, issuer, throttle, metrics, relay.wake, trusted)
        admin_login = AdminLogin.build(pool, issuer, settings, metrics)
        app[ADMIN_LOGIN_SERVICE] = admin_login

        async def purge() -> None:
            await repo.purge_expired(PURGE_GRACE_SECONDS)
            await admin_login.purge_stale_failures()

        tasks = [
            asyncio.create_task(
                every(PURGE_INTERVAL_SECONDS, purge, "refresh-token purge"),
                name="identity-purge",
            )
        ]
        if run_relay:
            tasks.append(asyncio.create_task(relay.run(), name="identity-outbox"))
        if run_keeper:
            keeper = AccessTokenKeeper(redis, api, settings, metrics)
            tasks.append(asyncio.create_task(keeper.run(), name="identity-access-token"))
        try:
            yield
        finally:
            await stop_tasks(tasks)
            await api.close()
            await producer.stop()
            await redis.aclose()
            await close_pool(pool)

    app.cleanup_ctx.append(resources)
    add_routes(app)
    add_admin_routes(app)
    add_openapi_route(app, OPENAPI.document())
    return app


def create_ops(api: web.Application) -> web.Application:
    async def postgres_ready() -> None:
        await api[AUTH].repo.ping()

    async def redis_ready() -> None:
        await api[REDIS].ping()

    async def kafka_ready() -> None:
        await kafka_reachable(api[PRODUCER])

    # Logins need PostgreSQL; Redis only for the login throttle and the access_token, and
    # Kafka only to announce new users (they wait in the outbox): both informational.
    return create_ops_app(
        api[REGISTRY],
        {"postgres": postgres_ready, "redis": redis_ready, "kafka": kafka_ready},
        informational=frozenset({"redis", "kafka"}),
    )
