"""Coupons on orders (docs/coupons.md, "Redemption"): coupon.locked on the real broker,
applied by the order service's `order-coupons` consumer to orders in the real PostgreSQL,
and the payment callback that must then match the discounted amount."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from aiokafka import AIOKafkaProducer

from services.common.events import (
    COUPON_CLAIMED,
    COUPON_LOCKED,
    Envelope,
    event_id_for,
    order_id_for,
)
from services.common.kafka import make_producer, publish_all
from services.common.settings import Settings
from services.common.topics import COUPONS, ORDERS, SECKILL_RESERVATIONS
from services.order.app import REGISTRY
from services.order.coupons import LockResult
from tests.helpers import (
    constant,
    payment_body,
    post_payment,
    read_dead_letters,
    read_topic,
    reserved_event,
    wait_for,
)

Token = Callable[..., dict[str, str]]
Client = TestClient[Any, Any]
UNIT_PRICE = 2500
QUANTITY = 2
PRICE = UNIT_PRICE * QUANTITY


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    started = make_producer(settings)
    await started.start()
    yield started
    await started.stop()


def coupon_locked(
    order_id: str, user: str, coupon_id: str, discount: int = 1000, **overrides: Any
) -> Envelope:
    """coupon.locked as the coupon service publishes it (docs/coupons.md, "Events")."""
    data: dict[str, Any] = {
        "coupon_id": coupon_id,
        "template_id": 7,
        "user_id": user,
        "order_id": order_id,
        "amount_cents": PRICE,
        "discount_cents": discount,
        "amount_due_cents": PRICE - discount,
    }
    data.update(overrides)
    return Envelope(
        id=event_id_for(COUPON_LOCKED, f"{coupon_id}:{order_id}"),
        type=COUPON_LOCKED,
        key=user,
        data=data,
    )


def coupon(n: int) -> str:
    return f"7-{n:032x}"


async def place_orders(
    producer: AIOKafkaProducer, settings: Settings, db: asyncpg.Connection, *users: str
) -> list[str]:
    """One pending order per user, created by the order service from seckill.reserved."""
    events = [reserved_event(31, u, QUANTITY, UNIT_PRICE) for u in users]
    await publish_all(producer, settings.topic(SECKILL_RESERVATIONS), events)
    ids = [order_id_for(e.data["reservation_id"]) for e in events]
    count = "SELECT count(*) FROM orders.orders WHERE id = ANY($1::uuid[])"
    assert await wait_for(lambda: db.fetchval(count, ids), len(ids)) == len(ids)
    return [str(i) for i in ids]


def locks_counted(orders: Client) -> dict[str, float]:
    registry = orders.server.app[REGISTRY]
    return {
        r.value: registry.get_sample_value("order_coupon_locks_total", {"result": r.value})
        for r in LockResult
    }


async def settle_locks(orders: Client, total: int) -> dict[str, float]:
    """Wait until the consumer handled `total` coupon.locked events; their results."""
    handled = await wait_for(lambda: constant(sum(locks_counted(orders).values())), total)
    assert handled == total
    return {k: v for k, v in locks_counted(orders).items() if v}


async def order_row(db: asyncpg.Connection, order_id: str) -> dict[str, Any]:
    row = await db.fetchrow(
        "SELECT state, amount_cents, discount_cents, coupon_id FROM orders.orders WHERE id = $1",
        uuid.UUID(order_id),
    )
    return dict(row)


UNDISCOUNTED = {"state": "pending_payment", "amount_cents": PRICE, "discount_cents": 0}


async def test_a_lock_discounts_its_pending_order_once_however_often_it_is_delivered(
    orders: Client,
    producer: AIOKafkaProducer,
    settings: Settings,
    db: asyncpg.Connection,
    token: Token,
) -> None:
    # Every result is on /metrics before the first lock arrives.
    assert locks_counted(orders) == dict.fromkeys((r.value for r in LockResult), 0.0)
    [order_id] = await place_orders(producer, settings, db, "u1")
    lock = coupon_locked(order_id, "u1", coupon(1))
    await publish_all(producer, settings.topic(COUPONS), [lock, lock])
    await publish_all(producer, settings.topic(COUPONS), [lock])

    assert await settle_locks(orders, 3) == {"applied": 1.0, "duplicate": 2.0}
    assert await order_row(db, order_id) == {
        "state": "pending_payment",
        "amount_cents": PRICE - 1000,
        "discount_cents": 1000,
        "coupon_id": coupon(1),
    }
    resp = await orders.get(f"/api/orders/{order_id}", headers=token("u1"))
    view = await resp.json()
    assert (view["unit_price_cents"], view["quantity"]) == (UNIT_PRICE, QUANTITY)
    assert (view["amount_cents"], view["discount_cents"], view["coupon_id"]) == (
        PRICE - 1000,
        1000,
        coupon(1),
    )
    listed = (await (await orders.get("/api/orders", headers=token("u1"))).json())["orders"]
    assert [(o["id"], o["coupon_id"]) for o in listed] == [(order_id, coupon(1))]
    admin = await orders.get(f"/api/orders/admin/orders/{order_id}", headers=token("ops", True))
    assert (await admin.json())["discount_cents"] == 1000


async def test_after_a_lock_only_the_discounted_amount_pays_and_order_paid_names_the_coupon(
    orders: Client,
    producer: AIOKafkaProducer,
    settings: Settings,
    db: asyncpg.Connection,
) -> None:
    [order_id] = await place_orders(producer, settings, db, "u1")
    await publish_all(producer, settings.topic(COUPONS), [coupon_locked(order_id, "u1", coupon(1))])
    assert await settle_locks(orders, 1) == {"applied": 1.0}
    secret = settings.payment_webhook_secret

    status, body = await post_payment(orders, secret, payment_body(order_id, PRICE, "txn-full"))
    assert (status, body["error"]) == (409, "amount_mismatch")
    assert await db.fetchval("SELECT count(*) FROM orders.payments") == 0
    assert (await order_row(db, order_id))["state"] == "pending_payment"

    status, body = await post_payment(orders, secret, payment_body(order_id, PRICE - 1000, "txn"))
    assert (status, body["result"]) == (200, "paid")
    assert await order_row(db, order_id) == {
        "state": "paid",
        "amount_cents": PRICE - 1000,
        "discount_cents": 1000,
        "coupon_id": coupon(1),
    }
    paid_amount = await db.fetchval("SELECT amount_cents FROM orders.payments")
    assert paid_amount == PRICE - 1000
    events = await read_topic(settings, ORDERS, lambda es: any(e.type == "order.paid" for e in es))
    [paid] = [e for e in events if e.type == "order.paid"]
    assert paid.data["order_id"] == order_id
    assert (paid.data["amount_cents"], paid.data["discount_cents"], paid.data["coupon_id"]) == (
        PRICE - 1000,
        1000,
        coupon(1),
    )
    [created] = [e for e in events if e.type == "order.created"]
    assert created.data["amount_cents"] == PRICE and "coupon_id" not in created.data


async def test_late_locks_and_second_coupons_change_nothing_and_are_counted(
    orders: Client,
    producer: AIOKafkaProducer,
    settings: Settings,
    db: asyncpg.Connection,
    token: Token,
) -> None:
    paid, cancelled, taken = await place_orders(producer, settings, db, "u1", "u2", "u3")
    secret = settings.payment_webhook_secret
    status, _ = await post_payment(orders, secret, payment_body(paid, PRICE, "txn-paid"))
    assert status == 200
    resp = await orders.post(f"/api/orders/{cancelled}/cancel", headers=token("u2"))
    assert resp.status == 200
    await publish_all(producer, settings.topic(COUPONS), [coupon_locked(taken, "u3", coupon(3))])
    assert await settle_locks(orders, 1) == {"applied": 1.0}

    await publish_all(
        producer,
        settings.topic(COUPONS),
        [
            coupon_locked(paid, "u1", coupon(1)),
            coupon_locked(cancelled, "u2", coupon(2)),
            coupon_locked(taken, "u3", coupon(4), discount=2000),
        ],
    )
    assert await settle_locks(orders, 4) == {
        "applied": 1.0,
        "order_not_pending": 2.0,
        "order_has_coupon": 1.0,
    }
    assert await order_row(db, paid) == {**UNDISCOUNTED, "state": "paid", "coupon_id": None}
    assert await order_row(db, cancelled) == {
        **UNDISCOUNTED,
        "state": "cancelled",
        "coupon_id": None,
    }
    assert await order_row(db, taken) == {
        **UNDISCOUNTED,
        "amount_cents": PRICE - 1000,
        "discount_cents": 1000,
        "coupon_id": coupon(3),
    }
    # Cancelling the discounted order tells the coupon service which coupon to release.
    resp = await orders.post(f"/api/orders/{taken}/cancel", headers=token("u3"))
    assert resp.status == 200
    events = await read_topic(
        settings,
        ORDERS,
        lambda es: sum(e.type == "order.cancelled" for e in es) == 2,
    )
    by_order = {e.data["order_id"]: e.data for e in events if e.type == "order.cancelled"}
    assert (by_order[taken]["coupon_id"], by_order[taken]["amount_cents"]) == (coupon(3), 4000)
    assert "coupon_id" not in by_order[cancelled]
    [paid_event] = [e for e in events if e.type == "order.paid"]
    assert "coupon_id" not in paid_event.data and paid_event.data["amount_cents"] == PRICE


async def test_locks_that_do_not_describe_their_order_change_nothing_and_are_counted(
    orders: Client,
    producer: AIOKafkaProducer,
    settings: Settings,
    db: asyncpg.Connection,
) -> None:
    [order_id] = await place_orders(producer, settings, db, "u1")
    unknown = str(uuid.uuid4())
    await publish_all(
        producer,
        settings.topic(COUPONS),
        [
            coupon_locked(order_id, "u2", coupon(1)),  # someone else's order
            coupon_locked(order_id, "u1", coupon(2), amount_cents=PRICE + 1),  # another price
            coupon_locked(order_id, "u1", coupon(3), amount_due_cents=1),  # figures disagree
            coupon_locked(order_id, "u1", coupon(4), discount=PRICE),  # nothing left to pay
            coupon_locked(unknown, "u1", coupon(5)),
        ],
    )
    assert await settle_locks(orders, 5) == {"mismatch": 4.0, "unknown_order": 1.0}
    assert await order_row(db, order_id) == {**UNDISCOUNTED, "coupon_id": None}
    assert await db.fetchval("SELECT count(*) FROM orders.orders") == 1
    # Still open to a lock that fits it.
    await publish_all(producer, settings.topic(COUPONS), [coupon_locked(order_id, "u1", coupon(6))])
    assert (await settle_locks(orders, 6))["applied"] == 1.0
    assert (await order_row(db, order_id))["coupon_id"] == coupon(6)


async def test_a_malformed_lock_is_dead_lettered_alone_and_other_coupon_events_are_ignored(
    orders: Client,
    producer: AIOKafkaProducer,
    settings: Settings,
    db: asyncpg.Connection,
) -> None:
    [order_id] = await place_orders(producer, settings, db, "u1")
    bad = coupon_locked(order_id, "u1", coupon(1), discount_cents="lots")
    bad = dataclasses.replace(bad, id="bad-lock")
    claimed = Envelope(
        id=event_id_for(COUPON_CLAIMED, coupon(9)),
        type=COUPON_CLAIMED,
        key="u1",
        data={"coupon_id": coupon(9), "template_id": 7, "user_id": "u1"},
    )
    # One partition (key u1): the three arrive in one batch, the bad one first.
    await publish_all(
        producer,
        settings.topic(COUPONS),
        [bad, claimed, coupon_locked(order_id, "u1", coupon(2))],
    )
    assert await settle_locks(orders, 1) == {"applied": 1.0}
    assert (await order_row(db, order_id))["coupon_id"] == coupon(2)

    dead = await read_dead_letters(settings, COUPONS, 1)
    assert [Envelope.decode(r.value).id for r in dead] == ["bad-lock"]
    assert "discount_cents" in dict(dead[0].headers)["dlq.reason"].decode()


async def test_a_lock_racing_the_full_payment_either_discounts_the_order_or_loses_to_it(
    orders: Client,
    producer: AIOKafkaProducer,
    settings: Settings,
    db: asyncpg.Connection,
) -> None:
    """The shopper pays the full price while the lock travels: whichever locks the order
    row first wins, and the other is refused (409) or a counted no-op. Never a paid order
    at the full price that also has the coupon, nor one paid at a price it does not say."""
    users = [f"u{i}" for i in range(12)]
    ids = await place_orders(producer, settings, db, *users)
    secret = settings.payment_webhook_secret
    locks = [
        coupon_locked(o, u, coupon(i)) for i, (o, u) in enumerate(zip(ids, users, strict=True))
    ]
    payments = [
        post_payment(orders, secret, payment_body(o, PRICE, f"txn-{i}")) for i, o in enumerate(ids)
    ]
    _, answers = await asyncio.gather(
        publish_all(producer, settings.topic(COUPONS), locks), asyncio.gather(*payments)
    )
    results = await settle_locks(orders, len(ids))
    assert set(results) <= {"applied", "order_not_pending"}
    rows = [await order_row(db, o) for o in ids]
    paid_full = [r for r in rows if r["state"] == "paid"]
    discounted = [r for r in rows if r["coupon_id"] is not None]
    assert len(paid_full) == results.get("order_not_pending", 0)
    assert len(discounted) == results.get("applied", 0)
    assert len(paid_full) + len(discounted) == len(ids)
    assert all(r["amount_cents"] == PRICE and r["coupon_id"] is None for r in paid_full)
    assert all(
        (r["state"], r["amount_cents"]) == ("pending_payment", PRICE - 1000) for r in discounted
    )
    refused = [a for status, a in answers if status == 409]
    assert len(refused) == len(discounted)
    assert {a["error"] for a in refused} <= {"amount_mismatch"}
    applied = await db.fetchval("SELECT count(*) FROM orders.payments WHERE outcome = 'applied'")
    assert applied == len(paid_full)


async def test_the_database_refuses_a_discount_the_amount_does_not_reflect(
    orders: Client,
    producer: AIOKafkaProducer,
    settings: Settings,
    db: asyncpg.Connection,
) -> None:
    [order_id] = await place_orders(producer, settings, db, "u1")
    oid = uuid.UUID(order_id)
    for update in (
        "UPDATE orders.orders SET discount_cents = 100, coupon_id = 'c' WHERE id = $1",
        "UPDATE orders.orders SET discount_cents = 100, amount_cents = amount_cents - 100 "
        "WHERE id = $1",
        "UPDATE orders.orders SET coupon_id = 'c' WHERE id = $1",
        f"UPDATE orders.orders SET discount_cents = {PRICE}, amount_cents = 0, coupon_id = 'c' "
        "WHERE id = $1",
        "UPDATE orders.orders SET discount_cents = -1, amount_cents = amount_cents + 1 "
        "WHERE id = $1",
    ):
        with pytest.raises(asyncpg.CheckViolationError):
            await db.execute(update, oid)
    assert await order_row(db, order_id) == {**UNDISCOUNTED, "coupon_id": None}
