"""Redis restarts while the services are idle: the connections pooled before it died with
it. Once Redis answers again, the first presses and group opens must all be decided
(201/409/410), none answered 503 because a dead pooled connection was used.

Each test runs its own redis-server (tests/redis_server.py), SIGKILLs it and starts it
again on the same port with its AOF data."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from services.seckill.domain import new_reservation_id
from tests.helpers import create_activity, create_campaign
from tests.redis_server import RedisServer

Token = Callable[..., dict[str, str]]
Client = TestClient[Any, Any]

PRESSES = 300
OPENS = 80


async def pooled_connections(redis: Redis) -> int:
    return len(await redis.client_list()) - 1  # not the one asking


async def test_after_an_idle_redis_restart_the_first_presses_are_all_decided(
    seckill_on_own_redis: Client, redis_server: RedisServer, own_redis: Redis, token: Token
) -> None:
    activity = await create_activity(seckill_on_own_redis, token("ops", admin=True), stock=1000)
    url = f"/api/seckill/activities/{activity['id']}/reservations"
    reservation = f"/api/seckill/reservations/{new_reservation_id(activity['id'])}"
    # Traffic that holds every pooled connection at once: lookups are direct calls.
    warm = await asyncio.gather(
        *(seckill_on_own_redis.get(reservation, headers=token(f"w{i}")) for i in range(64)),
        *(seckill_on_own_redis.post(url, headers=token(f"w{i}")) for i in range(64)),
    )
    assert Counter(r.status for r in warm) == {404: 64, 201: 64}
    assert await pooled_connections(own_redis) >= 16

    await redis_server.restart()  # while no traffic runs

    answers = await asyncio.gather(
        *(seckill_on_own_redis.post(url, headers=token(f"u{i}")) for i in range(PRESSES))
    )
    statuses = Counter(r.status for r in answers)
    assert statuses == {201: PRESSES}, statuses


async def test_after_an_idle_redis_restart_the_first_group_opens_are_all_decided(
    groupbuy_on_own_redis: Client, redis_server: RedisServer, own_redis: Redis, token: Token
) -> None:
    campaign = await create_campaign(
        groupbuy_on_own_redis, token("ops", admin=True), group_size=2, stock=1000
    )
    url = f"/api/groupbuy/campaigns/{campaign['id']}/groups"
    warm = await asyncio.gather(
        *(groupbuy_on_own_redis.post(url, headers=token(f"w{i}")) for i in range(64))
    )
    assert Counter(r.status for r in warm) == {201: 64}
    assert await pooled_connections(own_redis) >= 16

    await redis_server.restart()

    answers = await asyncio.gather(
        *(groupbuy_on_own_redis.post(url, headers=token(f"u{i}")) for i in range(OPENS))
    )
    statuses = Counter(r.status for r in answers)
    assert statuses == {201: OPENS}, statuses
