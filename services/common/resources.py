"""Connections to Redis and PostgreSQL, configured the same way by every service."""

from __future__ import annotations

import asyncpg
from redis.asyncio import Redis
from redis.maint_notifications import MaintNotificationsConfig

from services.common.redis_faults import REDIS_DOWN, NotSentReportingPool
from services.common.settings import Settings

# Errors of a database that is down or restarting: consumers retry them until it is back,
# never dead-letter them.
PG_TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.TooManyConnectionsError,
    # The pool opening a connection while PostgreSQL is down or restarting: asyncpg lets
    # the socket's error through (seen by the contract fuzzer during a restart, as a 500).
    ConnectionRefusedError,
)

# A Redis call that got no answer: timed out (ours or the socket's), the connection
# broke, or Redis was not reached. Whether its command may have run is for
# services.common.redis_faults to tell.
REDIS_UNANSWERED: tuple[type[BaseException], ...] = (TimeoutError, ConnectionError, *REDIS_DOWN)


def redis_client(settings: Settings) -> Redis:
    # Bounded, blocking pool: under a spike callers wait for a connection instead of
    # opening thousands; socket timeouts cap a call stuck on a dead server. Failing to
    # hand out a connection is reported as RedisNotReached (the command was not sent).
    pool = NotSentReportingPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_pool_size,
        timeout=settings.redis_timeout_seconds,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        # The pool checks a connection before handing it out and replaces one the server
        # closed (Redis restarted while it sat idle) -- except, in redis-py 8.1, when
        # maintenance notifications are on, which they are by default ("auto", RESP3):
        # every pooled connection then failed on first use after a restart (redis-py
        # issue 4252). We use no maintenance notifications (a single Redis, no managed
        # failover endpoints), so turning them off restores the check.
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )
    # from_pool: the client owns the pool, so aclose() also closes its connections.
    return Redis.from_pool(pool)


async def pg_pool(settings: Settings) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=1,
        max_size=settings.db_pool_size,
        command_timeout=10,
    )
    assert pool is not None
    return pool
