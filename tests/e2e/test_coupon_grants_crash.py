"""SIGKILL the coupon service while it grants coupons for paid orders (下单返券): after a
restart every paid order has exactly one grant, and exactly one coupon."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from services.common.events import ORDER_CREATED, ORDER_PAID
from services.common.kafka import publish_all, start_producer
from services.common.settings import Settings
from services.common.topics import ORDERS
from services.coupon.keys import template_keys
from tests.coupon_helpers import create_template, order_event
from tests.e2e.processes import service
from tests.helpers import wait_for

pytestmark = pytest.mark.slow


def count(db: asyncpg.Connection, sql: str) -> Callable[[], Any]:
    return lambda: db.fetchval(sql)


async def test_killing_the_coupon_service_mid_grants_leaves_one_grant_per_paid_order(
    redis: Redis, db: asyncpg.Connection, settings: Settings, tmp_path: Path
) -> None:
    n = 1500
    template = await create_template(db, redis, quantity=n + 100)
    # Warmed above: the service's warm-up leaves it as it is.
    await db.execute("UPDATE coupon.templates SET warmed_at = now() WHERE id = $1", template)
    await db.execute(
        "INSERT INTO coupon.grant_rules (name, trigger, template_id, created_by)"
        " VALUES ('after every order', 'any', $1, 'merchant:1')",
        template,
    )
    orders = [uuid.uuid4() for _ in range(n)]
    producer: AIOKafkaProducer = await start_producer(settings)
    try:
        events = [order_event(ORDER_CREATED, o, f"u{i}") for i, o in enumerate(orders)]
        events += [order_event(ORDER_PAID, o, f"u{i}") for i, o in enumerate(orders)]
        await publish_all(producer, settings.topic(ORDERS), events)
    finally:
        await producer.stop()
    grants = count(db, "SELECT count(*) FROM coupon.grants")
    async with service("coupon", settings, tmp_path) as coupon:
        landed = await wait_for(lambda: _positive(grants), True, 60, 0.005)
        assert landed
        coupon.kill()  # mid-batch: grant.lua may have run for orders not yet recorded
        at_kill = await grants()
        assert at_kill < n, "every grant was done before the kill; the test proves nothing"
        await coupon.start()
        assert await wait_for(grants, n, 90) == n
        coupons = count(db, "SELECT count(*) FROM coupon.coupons WHERE origin = 'grant'")
        # Grants recorded by a redelivery after the kill get their coupon row from the
        # record consumer (coupon.granted through the relay).
        assert await wait_for(coupons, n, 60) == n
    rows = await db.fetch("SELECT order_id, outcome, coupon_id FROM coupon.grants")
    assert {r["order_id"] for r in rows} == set(orders)
    assert {r["outcome"] for r in rows} == {"granted"}
    coupon_rows = await db.fetch(
        "SELECT id, grant_order_id, user_id FROM coupon.coupons WHERE origin = 'grant'"
    )
    assert {r["id"] for r in coupon_rows} == {r["coupon_id"] for r in rows}
    assert len({r["grant_order_id"] for r in coupon_rows}) == n
    # Redis took exactly one coupon per paid order.
    assert int(await redis.get(template_keys(template).stock)) == 100
    assert await redis.hlen(template_keys(template).grants) == n


async def _positive(probe: Callable[[], Any]) -> bool:
    return bool(await probe() > 0)
