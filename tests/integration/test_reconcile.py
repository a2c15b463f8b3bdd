"""Reconciliation on real Redis, PostgreSQL and the broker: lost events are found and
repaired, and a second run finds nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from services.common.settings import Settings
from services.reconcile.__main__ import reconciler
from services.reconcile.domain import Kind
from services.reconcile.job import ReconcileMetrics, Reconciler
from services.seckill.keys import RELAY_GROUP, activity_keys
from tests.helpers import create_activity, running_relay, wait_for

Token = Callable[..., dict[str, str]]


@pytest.fixture
async def job(settings: Settings) -> AsyncIterator[tuple[Reconciler, CollectorRegistry]]:
    registry = CollectorRegistry()
    no_grace = dataclasses.replace(settings, reconcile_grace_seconds=0)
    async with reconciler(no_grace, ReconcileMetrics(registry)) as r:
        yield r, registry


def counts(reports: list[Any]) -> dict[str, int]:
    return {
        k.value: sum(r.count(k) for r in reports) for k in Kind if any(r.count(k) for r in reports)
    }


async def reserve(seckill: TestClient[Any, Any], token: Token, activity_id: int, user: str) -> str:
    resp = await seckill.post(
        f"/api/seckill/activities/{activity_id}/reservations", headers=token(user)
    )
    assert resp.status == 201
    return str((await resp.json())["reservation_id"])


async def test_a_reservation_whose_event_was_lost_becomes_an_order(
    seckill: TestClient[Any, Any],
    orders: TestClient[Any, Any],
    token: Token,
    redis: Redis,
    db: asyncpg.Connection,
    settings: Settings,
    job: tuple[Reconciler, CollectorRegistry],
) -> None:
    reconcile, registry = job
    activity = await create_activity(seckill, token("ops", admin=True), stock=5)
    kept = await reserve(seckill, token, activity["id"], "u1")
    lost = await reserve(seckill, token, activity["id"], "u2")
    stream = activity_keys(activity["id"]).outbox
    # The entry of `lost` is acknowledged without being published: what a broker that
    # restarted with the message unconsumed (memory only) amounts to.
    entries = await redis.xrange(stream)
    lost_id = next(i for i, f in entries if f[b"rid"] == lost.encode())
    await redis.xreadgroup(RELAY_GROUP, "x", {stream: ">"}, count=10)
    await redis.xack(stream, RELAY_GROUP, lost_id)
    await redis.xdel(stream, lost_id)
    async with running_relay(redis, settings):
        count = lambda: db.fetchval("SELECT count(*) FROM orders.orders")  # noqa: E731
        assert await wait_for(count, 1) == 1  # only `kept`
        assert counts(await reconcile.run_once()) == {"reservation_without_order": 1}
        assert (
            registry.get_sample_value(
                "reconciliation_mismatches", {"kind": "reservation_without_order"}
            )
            == 1.0
        )
        assert await wait_for(count, 2) == 2
    rids = {r["reservation_id"] for r in await db.fetch("SELECT reservation_id FROM orders.orders")}
    assert rids == {kept, lost}
    assert counts(await reconcile.run_once()) == {}
    assert (
        registry.get_sample_value(
            "reconciliation_mismatches", {"kind": "reservation_without_order"}
        )
        == 0.0
    )


async def test_a_cancelled_order_whose_stock_was_not_returned_gets_it_back_once(
    seckill: TestClient[Any, Any],
    orders: TestClient[Any, Any],
    token: Token,
    redis: Redis,
    db: asyncpg.Connection,
    settings: Settings,
    job: tuple[Reconciler, CollectorRegistry],
) -> None:
    reconcile, _ = job
    activity = await create_activity(seckill, token("ops", admin=True), stock=3)
    rid = await reserve(seckill, token, activity["id"], "u1")
    async with running_relay(redis, settings):
        count = lambda: db.fetchval("SELECT count(*) FROM orders.orders")  # noqa: E731
        assert await wait_for(count, 1) == 1
    # Cancelled, but the order.cancelled event never left (written behind the outbox).
    await db.execute(
        "UPDATE orders.orders SET state='cancelled', cancel_reason='timeout', "
        "cancelled_at=now() - interval '1 minute' WHERE reservation_id=$1",
        rid,
    )
    stock = activity_keys(activity["id"]).stock
    assert await redis.get(stock) == b"2"
    assert counts(await reconcile.run_once()) == {"cancelled_not_released": 1}
    assert await redis.get(stock) == b"3"
    assert counts(await reconcile.run_once()) == {}
    assert await redis.get(stock) == b"3"


async def test_unrepairable_differences_are_reported(
    seckill: TestClient[Any, Any],
    orders: TestClient[Any, Any],
    token: Token,
    redis: Redis,
    db: asyncpg.Connection,
    settings: Settings,
    job: tuple[Reconciler, CollectorRegistry],
) -> None:
    reconcile, _ = job
    activity = await create_activity(seckill, token("ops", admin=True), stock=3)
    rid = await reserve(seckill, token, activity["id"], "u1")
    async with running_relay(redis, settings):
        count = lambda: db.fetchval("SELECT count(*) FROM orders.orders")  # noqa: E731
        assert await wait_for(count, 1) == 1
    keys = activity_keys(activity["id"])
    # Stock handed back while the order is still payable, and a unit gone missing.
    await redis.eval(
        "local r = cjson.decode(redis.call('HGET', KEYS[1], ARGV[1])); r.state = 'released';"
        "redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(r))",
        1,
        keys.reservations,
        rid,
    )
    await redis.decr(keys.stock)
    await db.execute(
        "INSERT INTO orders.orders (id, reservation_id, activity_id, user_id, sku, quantity,"
        " unit_price_cents, amount_cents, reserved_at, pay_before) VALUES"
        " ($1, 'ghost', $2, 'u9', 's', 1, 1, 1, now(), now() + interval '1 hour')",
        uuid.uuid4(),
        activity["id"],
    )
    found = counts(await reconcile.run_once())
    assert found == {
        "released_but_order_live": 1,
        "order_without_reservation": 1,
        "stock_drift": 1,
    }
    await asyncio.sleep(0)
