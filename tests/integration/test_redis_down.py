"""While Redis is down (connection refused) or loading its data after a restart (LOADING),
a press, a group open or a join did not run: the answer is 503 redis_unavailable with
Retry-After (not outcome_unknown), nothing changes, and once Redis is back the same
request succeeds. Every other seckill and groupbuy route answers 503 too, never a bare
500; the check links of outcome_unknown answers tell the right state once Redis is back.

Each test runs its own redis-server (tests/redis_server.py) and kills it for real."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from services.groupbuy.keys import campaign_keys
from services.seckill.keys import activity_keys
from tests.helpers import create_activity, create_campaign
from tests.redis_server import RedisServer

Token = Callable[..., dict[str, str]]
Client = TestClient[Any, Any]
Outage = Callable[[RedisServer], Awaitable[None]]


async def refusing(server: RedisServer) -> None:
    server.kill()  # nothing listens on its port: connections are refused


async def loading(server: RedisServer) -> None:
    await server.restart_loading(seconds=4.0)  # returns while Redis answers LOADING


OUTAGES = [pytest.param(refusing, id="refused"), pytest.param(loading, id="loading")]


async def assert_unavailable(resp: ClientResponse) -> dict[str, Any]:
    body: dict[str, Any] = await resp.json()
    assert (resp.status, body["error"]) == (503, "redis_unavailable"), body
    assert body["message"] and "check" not in body
    assert resp.headers["Retry-After"] == "1"
    return body


@pytest.mark.parametrize("outage", OUTAGES)
async def test_a_press_while_redis_is_unavailable_is_refused_retryable_and_takes_no_stock(
    seckill_on_own_redis: Client,
    redis_server: RedisServer,
    own_redis: Redis,
    token: Token,
    outage: Outage,
) -> None:
    activity = await create_activity(seckill_on_own_redis, token("ops", admin=True), stock=5)
    url = f"/api/seckill/activities/{activity['id']}/reservations"
    first = await seckill_on_own_redis.post(url, headers=token("u1"))
    assert first.status == 201
    check = f"/api/seckill/reservations/{(await first.json())['reservation_id']}"

    await outage(redis_server)
    await assert_unavailable(await seckill_on_own_redis.post(url, headers=token("u2")))
    # The check link and the pages: 503 with Retry-After, not 500.
    await assert_unavailable(await seckill_on_own_redis.get(check, headers=token("u1")))
    page = f"/api/seckill/activities/{activity['id']}"
    await assert_unavailable(await seckill_on_own_redis.get(page, headers=token("u2")))
    await assert_unavailable(
        await seckill_on_own_redis.get("/api/seckill/activities", headers=token("u2"))
    )

    if redis_server.proc is not None and redis_server.proc.poll() is None:
        await redis_server.wait_ready()  # done loading
    else:
        await redis_server.start()
    keys = activity_keys(activity["id"])
    assert await own_redis.get(keys.stock) == b"4"
    assert await own_redis.hkeys(keys.users) == [b"u1"]
    assert await own_redis.hlen(keys.reservations) == 1
    assert await own_redis.xlen(keys.outbox) == 1
    state = await seckill_on_own_redis.get(check, headers=token("u1"))
    assert state.status == 200 and (await state.json())["state"] == "reserved"
    again = await seckill_on_own_redis.post(url, headers=token("u2"))
    assert again.status == 201, await again.text()
    assert await own_redis.get(keys.stock) == b"3"


@pytest.mark.parametrize("outage", OUTAGES)
async def test_opens_and_joins_while_redis_is_unavailable_are_refused_and_change_nothing(
    groupbuy_on_own_redis: Client,
    redis_server: RedisServer,
    own_redis: Redis,
    token: Token,
    outage: Outage,
) -> None:
    campaign = await create_campaign(
        groupbuy_on_own_redis, token("ops", admin=True), group_size=3, stock=30
    )
    groups = f"/api/groupbuy/campaigns/{campaign['id']}/groups"
    opened = await groupbuy_on_own_redis.post(groups, headers=token("u1"))
    assert opened.status == 201
    group_id = (await opened.json())["id"]
    card = f"/api/groupbuy/groups/{group_id}"
    join = f"{card}/join"

    await outage(redis_server)
    await assert_unavailable(await groupbuy_on_own_redis.post(groups, headers=token("u2")))
    await assert_unavailable(await groupbuy_on_own_redis.post(join, headers=token("u3")))
    await assert_unavailable(await groupbuy_on_own_redis.get(card, headers=token("u3")))
    page = f"/api/groupbuy/campaigns/{campaign['id']}"
    await assert_unavailable(await groupbuy_on_own_redis.get(page, headers=token("u3")))

    if redis_server.proc is not None and redis_server.proc.poll() is None:
        await redis_server.wait_ready()
    else:
        await redis_server.start()
    keys = campaign_keys(campaign["id"])
    assert await own_redis.get(keys.stock) == b"27"  # one group of three taken
    assert await own_redis.zrange(keys.members(group_id), 0, -1) == [b"u1"]
    assert await own_redis.hkeys(keys.users) == [b"u1"]
    shown = await groupbuy_on_own_redis.get(card, headers=token("u3"))
    assert shown.status == 200 and (await shown.json())["joined"] == 1
    joined = await groupbuy_on_own_redis.post(join, headers=token("u3"))
    assert joined.status == 201, await joined.text()
    assert (await groupbuy_on_own_redis.post(groups, headers=token("u2"))).status == 201
    assert await own_redis.get(keys.stock) == b"24"
