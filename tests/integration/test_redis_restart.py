"""Redis restarts while the services are idle: the connections pooled before it died with
it. Once Redis answers again, the first presses and group opens must all be decided
(201/409/410), none answered 503 because a dead pooled connection was used.

Each test runs its own redis-server (tests/redis_server.py), SIGKILLs it and starts it
again on the same port with its AOF data."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from services.common.settings import Settings
from services.seckill.domain import new_reservation_id
from tests.helpers import create_activity, create_campaign, started_client
from tests.redis_server import RedisServer

Token = Callable[..., dict[str, str]]
Client = TestClient[Any, Any]

PRESSES = 300
OPENS = 80


@pytest.fixture
async def own_settings(settings: Settings, redis_server: RedisServer) -> Settings:
    # A small pool, all of it used before the restart: every connection is then stale.
    return dataclasses.replace(settings, redis_url=redis_server.url(), redis_pool_size=16)


@pytest.fixture
async def seckill_app(own_settings: Settings) -> AsyncIterator[Client]:
    from services.seckill.app import create_app

    client = await started_client(create_app(own_settings, run_relay=False, run_stock_return=False))
    yield client
    await client.close()


@pytest.fixture
async def groupbuy_app(own_settings: Settings) -> AsyncIterator[Client]:
    from services.groupbuy.app import create_app

    client = await started_client(
        create_app(own_settings, run_relay=False, run_sweeper=False, run_consumers=False)
    )
    yield client
    await client.close()


async def pooled_connections(redis_server: RedisServer) -> int:
    admin = Redis.from_url(redis_server.url())
    try:
        clients = await admin.client_list()
        return len(clients) - 1  # not this one
    finally:
        await admin.aclose()


async def test_after_an_idle_redis_restart_the_first_presses_are_all_decided(
    seckill_app: Client, redis_server: RedisServer, token: Token
) -> None:
    activity = await create_activity(seckill_app, token("ops", admin=True), stock=1000)
    url = f"/api/seckill/activities/{activity['id']}/reservations"
    reservation = f"/api/seckill/reservations/{new_reservation_id(activity['id'])}"
    # Traffic that holds every pooled connection at once: lookups are direct calls.
    warm = await asyncio.gather(
        *(seckill_app.get(reservation, headers=token(f"w{i}")) for i in range(64)),
        *(seckill_app.post(url, headers=token(f"w{i}")) for i in range(64)),
    )
    assert Counter(r.status for r in warm) == {404: 64, 201: 64}
    assert await pooled_connections(redis_server) >= 8

    await redis_server.restart()  # while no traffic runs

    answers = await asyncio.gather(
        *(seckill_app.post(url, headers=token(f"u{i}")) for i in range(PRESSES))
    )
    statuses = Counter(r.status for r in answers)
    assert statuses == {201: PRESSES}, statuses


async def test_after_an_idle_redis_restart_the_first_group_opens_are_all_decided(
    groupbuy_app: Client, redis_server: RedisServer, token: Token
) -> None:
    campaign = await create_campaign(
        groupbuy_app, token("ops", admin=True), group_size=2, stock=1000
    )
    url = f"/api/groupbuy/campaigns/{campaign['id']}/groups"
    warm = await asyncio.gather(
        *(groupbuy_app.post(url, headers=token(f"w{i}")) for i in range(64))
    )
    assert Counter(r.status for r in warm) == {201: 64}
    assert await pooled_connections(redis_server) >= 8

    await redis_server.restart()

    answers = await asyncio.gather(
        *(groupbuy_app.post(url, headers=token(f"u{i}")) for i in range(OPENS))
    )
    statuses = Counter(r.status for r in answers)
    assert statuses == {201: OPENS}, statuses
