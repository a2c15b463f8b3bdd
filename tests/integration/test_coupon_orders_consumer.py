"""The coupon lifecycle end to end through Kafka: order events produced to the orders
topic (each twice), consumed by the coupon-orders group, and the coupon events the relay
publishes to the coupons topic."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from services.common.events import (
    COUPON_LOCKED,
    COUPON_RELEASED,
    COUPON_REVOKED,
    COUPON_USED,
    ORDER_CANCELLED,
    ORDER_CREATED,
    ORDER_PAID,
)
from services.common.kafka import BatchConsumer, ConsumerMetrics, publish_all, start_producer
from services.common.resources import PG_TRANSIENT
from services.common.settings import Settings
from services.common.shutdown import stop_tasks
from services.common.topics import COUPONS, ORDERS
from services.coupon.announce import EventRelay, coupon_outbox
from services.coupon.grant_store import GrantStore
from services.coupon.keys import template_keys
from services.coupon.lifecycle import ORDERS_GROUP, OrdersHandler
from services.coupon.lifecycle_metrics import LifecycleMetrics
from services.coupon.lifecycle_repository import LifecycleRepository
from services.coupon.redemption import Redemption
from tests.coupon_helpers import create_template, issue_coupon, order_event
from tests.helpers import read_topic, wait_for


async def test_order_events_through_kafka_settle_coupons_and_grant_once(
    settings: Settings, redis: Redis, db: asyncpg.Connection
) -> None:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=10)
    assert pool is not None
    registry = CollectorRegistry()
    metrics = LifecycleMetrics(registry)
    relay = EventRelay(pool, settings, metrics.outbox)
    announcer = coupon_outbox(pool, settings.kafka_topic_prefix, relay.wake)
    handler = OrdersHandler(LifecycleRepository(announcer), GrantStore(redis), metrics)
    producer = await start_producer(settings)
    consumer = BatchConsumer(
        settings, ORDERS, ORDERS_GROUP, handler, producer, ConsumerMetrics(registry), PG_TRANSIENT
    )
    tasks = [asyncio.create_task(consumer.run()), asyncio.create_task(relay.run())]
    try:
        template = await create_template(db, redis, quantity=4)
        await db.execute(
            "INSERT INTO coupon.grant_rules (name, trigger, template_id, created_by)"
            " VALUES ('every order', 'any', $1, 'merchant:1')",
            template,
        )
        redemption = Redemption(announcer, metrics)
        used_coupon = await issue_coupon(db, template, "u1")
        released_coupon = await issue_coupon(db, template, "u2")
        cancelled_coupon = await issue_coupon(db, template, "u3")
        orders = {u: uuid.uuid4() for u in ("u1", "u2", "u3", "u4", "u5")}
        created = [order_event(ORDER_CREATED, o, u) for u, o in orders.items()]
        await publish_all(producer, settings.topic(ORDERS), created)
        read_model = "SELECT count(*) FROM coupon.orders"
        assert await wait_for(lambda: db.fetchval(read_model), 5) == 5
        for user, coupon in (
            ("u1", used_coupon),
            ("u2", released_coupon),
            ("u3", cancelled_coupon),
        ):
            await redemption.lock(orders[user], coupon, user)
        settled = [
            order_event(
                ORDER_PAID,
                orders["u1"],
                "u1",
                amount_cents=19_000,
                coupon_id=used_coupon,
                discount_cents=1_000,
            ),
            order_event(ORDER_PAID, orders["u2"], "u2"),  # paid before the lock reached it
            order_event(ORDER_CANCELLED, orders["u3"], "u3"),
            order_event(ORDER_PAID, orders["u4"], "u4"),
            order_event(ORDER_PAID, orders["u5"], "u5"),
            order_event(ORDER_CANCELLED, orders["u5"], "u5"),  # refunded
        ]
        # Every event twice: a producer retry, a relay that re-published.
        await publish_all(producer, settings.topic(ORDERS), settled + settled)
        decided = "SELECT count(*) FROM coupon.grants"
        assert await wait_for(lambda: db.fetchval(decided), 4) == 4

        def done(events: list[Any]) -> bool:
            return len(events) >= 7

        events = await read_topic(settings, COUPONS, done)
        kinds = Counter((e.type, e.data["coupon_id"]) for e in events)
        [revoked] = [e.data["coupon_id"] for e in events if e.type == COUPON_REVOKED]
        assert kinds == {
            (COUPON_LOCKED, used_coupon): 1,
            (COUPON_LOCKED, released_coupon): 1,
            (COUPON_LOCKED, cancelled_coupon): 1,
            (COUPON_USED, used_coupon): 1,
            (COUPON_RELEASED, released_coupon): 1,
            (COUPON_RELEASED, cancelled_coupon): 1,
            (COUPON_REVOKED, revoked): 1,
        }
        assert {e.key for e in events} == {"u1", "u2", "u3", "u5"}
        # One grant per paid order: u1, u2, u4 and u5 (whose was revoked by its refund).
        grants = await db.fetch("SELECT order_id, outcome, revoked_at FROM coupon.grants")
        assert {r["order_id"] for r in grants} == {orders[u] for u in ("u1", "u2", "u4", "u5")}
        assert {r["outcome"] for r in grants} == {"granted"}
        assert [r["order_id"] for r in grants if r["revoked_at"]] == [orders["u5"]]
        assert await db.fetchval("SELECT count(*) FROM coupon.coupons WHERE origin = 'grant'") == 4
        assert await redis.get(template_keys(template).stock) == b"0"
        states = await db.fetch("SELECT id, state FROM coupon.coupons WHERE origin = 'claim'")
        assert {r["id"]: r["state"] for r in states} == {
            used_coupon: "used",
            released_coupon: "available",
            cancelled_coupon: "available",
        }
        outbox = "SELECT count(*) FROM coupon.outbox"
        assert await wait_for(lambda: db.fetchval(outbox), 0) == 0
    finally:
        await stop_tasks(tasks)
        await producer.stop()
        await pool.close()
