"""Fixtures on the real Redis, PostgreSQL and Kafka broker (`make infra` starts them).

Isolation: tests use their own database (<DATABASE_URL's name>_test) and Redis database
(15, or REDIS_URL's if not 0), both reset before each test, and a unique topic and group
prefix per test on the shared broker, deleted after the test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from services.common.auth import mint_token
from services.common.kafka import delete_topics, ensure_topics
from services.common.migrations import ensure_database, migrate
from services.common.resources import redis_client
from services.common.settings import Settings
from tests.helpers import free_port, reset_stores, started_client
from tests.redis_server import RedisServer
from tests.redis_server import redis_server as own_redis_server
from tools.fake_wechat import FakeWeChat, running_fake_wechat


def _test_settings() -> Settings:
    # <database>_test, and Redis database 15 unless REDIS_URL names another non-zero one:
    # concurrent runs with different DATABASE_URL/REDIS_URL do not reset each other.
    return dataclasses.replace(
        Settings.from_env().set_apart("test", 15),
        relay_reclaim_idle_ms=1_000,
        relay_reclaim_interval_seconds=0.5,
        consumer_max_attempts=2,
        order_outbox_poll_seconds=0.05,
        # Short sessions speed up rebalances after a SIGKILL; the local broker accepts them
        # (its group.min.session.timeout.ms is 500, Kafka's default 6 s would refuse).
        kafka_session_timeout_ms=2_000,
        kafka_heartbeat_interval_ms=300,
        sweep_interval_seconds=0.1,
        groupbuy_sweep_interval_seconds=0.1,
        # In-process tests run thousands of client requests and the server on one event
        # loop: its lag counts against the Redis deadline, which then fires on a healthy
        # Redis (a loaded CI machine saw a 2 s batch time out). Tests that want the deadline
        # to fire set their own (test_unanswered_calls.py).
        redis_timeout_seconds=10.0,
    )


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    settings = _test_settings()

    async def prepare() -> None:
        await ensure_database(settings.database_url)
        await migrate(settings.database_url)

    asyncio.run(prepare())
    return settings


@pytest.fixture
async def settings(base_settings: Settings) -> AsyncIterator[Settings]:
    """Per-test settings: clean Redis and PostgreSQL, fresh topics, free ports."""
    s = dataclasses.replace(
        base_settings,
        kafka_topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        instance_id=f"test-{uuid.uuid4().hex[:6]}",
        seckill_port=free_port(),
        seckill_ops_port=free_port(),
        seckill_worker_ops_port=free_port(),
        order_port=free_port(),
        order_ops_port=free_port(),
        groupbuy_port=free_port(),
        groupbuy_ops_port=free_port(),
        notify_port=free_port(),
        notify_ops_port=free_port(),
        identity_port=free_port(),
        identity_ops_port=free_port(),
        coupon_port=free_port(),
        coupon_ops_port=free_port(),
    )
    await reset_stores(s)
    await ensure_topics(s, partitions=2)
    yield s
    # Apache Kafka keeps topics on disk: without this every test's seven would pile up.
    await delete_topics(s)


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(settings.database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A connection pool on the test's database, for repositories driven directly."""
    created = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=10)
    assert created is not None
    yield created
    await created.close()


@pytest.fixture
def token(settings: Settings) -> Callable[..., dict[str, str]]:
    """Authorization headers for a user: token("u1") or token("ops", admin=True)."""

    def make(user: str, admin: bool = False) -> dict[str, str]:
        roles = ["admin"] if admin else []
        return {"Authorization": f"Bearer {mint_token(settings.jwt_keys(), user, roles)}"}

    return make


@pytest.fixture
async def fake() -> AsyncIterator[FakeWeChat]:
    """The WeChat-shaped fake provider (tools/fake_wechat.py) on a free loopback port."""
    async with running_fake_wechat() as provider:
        yield provider


@pytest.fixture
async def seckill(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The seckill API in-process, without its outbox relay (tests drive the relay)."""
    from services.seckill.app import create_app

    client = await started_client(create_app(settings, run_relay=False))
    yield client
    await client.close()


@pytest.fixture
async def orders(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The order service in-process, consuming seckill.reservations."""
    from services.order.app import create_app

    client = await started_client(create_app(settings))
    yield client
    await client.close()


@pytest.fixture
async def groupbuy(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The groupbuy API in-process, without relay, sweeper or consumers (tests drive them,
    or start the whole service with groupbuy_service)."""
    from services.groupbuy.app import create_app

    client = await started_client(
        create_app(settings, run_relay=False, run_sweeper=False, run_consumers=False)
    )
    yield client
    await client.close()


@pytest.fixture
async def coupon(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The coupon API in-process, without its relays, consumers or sweeper (tests drive
    them)."""
    from services.coupon.app import create_app

    client = await started_client(
        create_app(settings, run_relay=False, run_consumers=False, run_sweeper=False)
    )
    yield client
    await client.close()


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A redis-server of this test's own (tests/redis_server.py), to kill and restart."""
    async with own_redis_server(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def own_settings(settings: Settings, redis_server: RedisServer) -> Settings:
    """Per-test settings on the test's own redis-server. The activity pages read Redis on
    every request (no display cache), so what they answer follows Redis at once."""
    return dataclasses.replace(
        settings, redis_url=redis_server.url(), stock_display_max_age_seconds=0.0
    )


@pytest.fixture
async def own_redis(own_settings: Settings) -> AsyncIterator[Redis]:
    """A client of the test's own redis-server, pooled as the services pool theirs."""
    client = redis_client(own_settings)
    yield client
    await client.aclose()


@pytest.fixture
async def seckill_on_own_redis(own_settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The seckill API in-process on the test's own redis-server, no background work."""
    from services.seckill.app import create_app

    client = await started_client(create_app(own_settings, run_relay=False, run_stock_return=False))
    yield client
    await client.close()


@pytest.fixture
async def groupbuy_on_own_redis(own_settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The groupbuy API in-process on the test's own redis-server, no background work."""
    from services.groupbuy.app import create_app

    client = await started_client(
        create_app(own_settings, run_relay=False, run_sweeper=False, run_consumers=False)
    )
    yield client
    await client.close()
