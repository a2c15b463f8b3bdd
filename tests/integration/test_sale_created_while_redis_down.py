"""An operator creates a sale while Redis is down: the sale is recorded once, answered 202
(its stock goes to Redis later), and sells as soon as Redis is back, without a second
create. A 5xx here would make the operator create it again: a duplicate sale."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from services.common.settings import Settings
from tests.helpers import activity_body, campaign_body, started_client, wait_for
from tests.redis_server import RedisServer

Token = Callable[..., dict[str, str]]
Client = TestClient[Any, Any]


@pytest.fixture
def quick(own_settings: Settings) -> Settings:
    # Pending sales are warmed by the background refresh; make it come often.
    return dataclasses.replace(own_settings, metrics_refresh_seconds=0.2)


@pytest.fixture
async def seckill_api(quick: Settings) -> AsyncIterator[Client]:
    from services.seckill.app import create_app

    client = await started_client(create_app(quick, run_relay=False, run_stock_return=False))
    yield client
    await client.close()


@pytest.fixture
async def groupbuy_api(quick: Settings) -> AsyncIterator[Client]:
    from services.groupbuy.app import create_app

    client = await started_client(
        create_app(quick, run_relay=False, run_sweeper=False, run_consumers=False)
    )
    yield client
    await client.close()


async def test_an_activity_created_while_redis_is_down_is_recorded_once_and_sells_later(
    seckill_api: Client, redis_server: RedisServer, db: asyncpg.Connection, token: Token
) -> None:
    redis_server.kill()
    resp = await seckill_api.post(
        "/api/seckill/admin/activities",
        json=activity_body(stock=3),
        headers=token("ops", admin=True),
    )
    body = await resp.json()
    assert resp.status == 202, body
    assert body["warm_up"] == "pending" and body["stock"] == 3
    assert resp.headers["Location"] == f"/api/seckill/activities/{body['id']}"
    rows = await db.fetch("SELECT id, warmed_at FROM seckill.activities")
    assert [(r["id"], r["warmed_at"]) for r in rows] == [(body["id"], None)]

    await redis_server.start()
    press = f"/api/seckill/activities/{body['id']}/reservations"

    async def pressed() -> int:
        return (await seckill_api.post(press, headers=token("u1"))).status

    assert await wait_for(pressed, 201, within=15) == 201
    assert await db.fetchval("SELECT count(*) FROM seckill.activities") == 1
    assert await db.fetchval("SELECT warmed_at IS NOT NULL FROM seckill.activities")
    # Warmed once: the stock was not reset by a second warm-up.
    assert (await seckill_api.post(press, headers=token("u2"))).status == 201
    got = await seckill_api.get(f"/api/seckill/activities/{body['id']}", headers=token("u3"))
    page = await got.json()
    assert (got.status, page["remaining_stock"]) == (200, 1), page


async def test_a_campaign_created_while_redis_is_down_is_recorded_once_and_opens_later(
    groupbuy_api: Client, redis_server: RedisServer, db: asyncpg.Connection, token: Token
) -> None:
    redis_server.kill()
    resp = await groupbuy_api.post(
        "/api/groupbuy/admin/campaigns",
        json=campaign_body(),
        headers=token("ops", admin=True),
    )
    body = await resp.json()
    assert resp.status == 202, body
    assert body["warm_up"] == "pending"
    assert await db.fetchval("SELECT count(*) FROM groupbuy.campaigns") == 1

    await redis_server.start()
    url = f"/api/groupbuy/campaigns/{body['id']}/groups"

    async def opened() -> int:
        return (await groupbuy_api.post(url, json={}, headers=token("leader"))).status

    assert await wait_for(opened, 201, within=15) == 201
    assert await db.fetchval("SELECT count(*) FROM groupbuy.campaigns") == 1
    assert await db.fetchval("SELECT warmed_at IS NOT NULL FROM groupbuy.campaigns")
