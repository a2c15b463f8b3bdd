"""Pay, cancel, time out, remind: end to end through HTTP and Kafka on real PostgreSQL,
Redis and the broker."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from services.common.settings import Settings
from services.common.topics import ORDERS
from services.order.app import REGISTRY
from services.order.app import create_app as create_order_app
from services.order.payments import SIGNATURE_HEADER, sign
from services.seckill.app import METRICS as SECKILL_METRICS
from services.seckill.keys import activity_keys
from tests.helpers import (
    create_activity,
    payment_body,
    post_payment,
    read_topic,
    running_relay,
    started_client,
    wait_for,
)

Token = Callable[..., dict[str, str]]


@dataclasses.dataclass
class Sale:
    activity_id: int
    stock: int
    orders: list[dict[str, Any]]  # id, user_id, reservation_id, amount_cents


@pytest.fixture
async def relay(redis: Redis, settings: Settings) -> AsyncIterator[None]:
    async with running_relay(redis, settings):
        yield


async def open_sale(
    seckill: TestClient[Any, Any],
    token: Token,
    db: asyncpg.Connection,
    buyers: int,
    stock: int | None = None,
    payment_timeout: int = 900,
    prefix: str = "u",
) -> Sale:
    """An activity, `buyers` reservations, and their orders in PostgreSQL."""
    activity = await create_activity(
        seckill,
        token("ops", admin=True),
        stock=stock or buyers,
        payment_timeout_seconds=payment_timeout,
    )
    return await buy(seckill, token, db, activity["id"], activity["stock"], buyers, prefix)


async def buy(
    seckill: TestClient[Any, Any],
    token: Token,
    db: asyncpg.Connection,
    activity_id: int,
    stock: int,
    buyers: int,
    prefix: str,
) -> Sale:
    responses = await asyncio.gather(
        *(
            seckill.post(
                f"/api/seckill/activities/{activity_id}/reservations", headers=token(f"{prefix}{i}")
            )
            for i in range(buyers)
        )
    )
    reserved = [(await r.json())["reservation_id"] for r in responses if r.status == 201]
    query = "SELECT count(*) FROM orders.orders WHERE reservation_id = ANY($1::text[])"
    assert await wait_for(lambda: db.fetchval(query, reserved), len(reserved)) == len(reserved)
    rows = await db.fetch(
        "SELECT id, user_id, reservation_id, amount_cents FROM orders.orders "
        "WHERE reservation_id = ANY($1::text[]) ORDER BY user_id",
        reserved,
    )
    return Sale(activity_id, stock, [{**dict(r), "id": str(r["id"])} for r in rows])


async def redis_stock(redis: Redis, activity_id: int) -> int:
    return int(await redis.get(activity_keys(activity_id).stock))


async def state_of(db: asyncpg.Connection, order_id: str) -> tuple[str, str | None]:
    row = await db.fetchrow(
        "SELECT state, cancel_reason FROM orders.orders WHERE id = $1", uuid.UUID(order_id)
    )
    return row["state"], row["cancel_reason"]


def events_of(kind: str, events: list[Any]) -> list[Any]:
    return [e for e in events if e.type == kind]


async def pay(
    orders: TestClient[Any, Any], settings: Settings, order: dict[str, Any], txn: str | None = None
) -> tuple[int, dict[str, Any]]:
    body = payment_body(order["id"], order["amount_cents"], txn or f"txn-{order['id']}")
    return await post_payment(orders, settings.payment_webhook_secret, body)


# --- payment ----------------------------------------------------------------------------


async def test_paying_an_order_marks_it_paid_once_and_announces_it(
    seckill: TestClient[Any, Any],
    orders: TestClient[Any, Any],
    relay: None,
    token: Token,
    db: asyncpg.Connection,
    redis: Redis,
    settings: Settings,
) -> None:
    sale = await open_sale(seckill, token, db, buyers=2)
    order = sale.orders[0]
    status, body = await pay(orders, settings, order)
    assert (status, body["result"], body["replayed"]) == (200, "paid", False)
    # The provider retries (or an attacker replays) the same notification.
    status, body = await pay(orders, settings, order)
    assert (status, body["result"], body["replayed"]) == (200, "paid", True)

    got = await (
        await orders.get(f"/api/orders/{order['id']}", headers=token(order["user_id"]))
    ).json()
    assert got["state"] == "paid" and got["paid_at"] is not None
    assert await db.fetchval("SELECT count(*) FROM orders.payments") == 1
    events = await read_topic(settings, ORDERS, lambda es: bool(events_of("order.paid", es)))
    paid = events_of("order.paid", events)
    assert len(paid) == 1 and paid[0].data["order_id"] == order["id"]
    assert paid[0].data["transaction_id"] == f"txn-{order['id']}"
    assert await redis_stock(redis, sale.activity_id) == 0  # paying takes no more stock


@pytest.mark.parametrize(
    "forgery",
    ["wrong_secret", "tampered_body", "no_header", "garbage_header", "stale", "future"],
)
async def test_forged_payment_callbacks_are_401_and_change_nothing(
    seckill: TestClient[Any, Any],
    orders: TestClient[Any, Any],
    relay: None,
    token: Token,
    db: asyncpg.Connection,
    settings: Settings,
    forgery: str,
) -> None:
    sale = await open_sale(seckill, token, db, buyers=1)
    order = sale.orders[0]
    body = payment_body(order["id"], order["amount_cents"], "txn-forged")
    now = int(time.time())
    secret = settings.payment_webhook_secret
    headers = {
        "wrong_secret": {SIGNATURE_HEADER: sign("not-the-secret", now, body)},
        "tampered_body": {
            SIGNATURE_HEADER: sign(secret, now, body.replace(b"success", b"succesS"))
        },
        "no_header": {},
        "garbage_header": {SIGNATURE_HEADER: "v1=deadbeef"},
        "stale": {SIGNATURE_HEADER: sign(secret, now - 3600, body)},
        "future": {SIGNATURE_HEADER: sign(secret, now + 3600, body)},
    }[forgery]
    resp = await orders.post("/api/payments/callback", data=body, headers=headers)
    answer = await resp.json()
    assert resp.status == 401
    assert answer["error"] == (
        "stale_signature" if forgery in ("stale", "future") else "invalid_signature"
    )
    assert await state_of(db, order["id"]) == ("pending_payment", None)
    assert await db.fetchval("SELECT count(*) FROM orders.payments") == 0


@pytest.mark.parametrize(
    ("mutate", "status", "code"),
    [
        (lambda b: b"{not json", 400, "invalid_json"),
        (lambda b: b"[]", 400, "invalid_json"),
        (lambda b: b.replace(b'"status":"success"', b'"status":"failed"'), 400, "invalid_request"),
        (lambda b: b.replace(b'"order_id":"', b'"order_id":"x'), 400, "invalid_request"),
        (lambda b: b.replace(b'"transaction_id"', b'"txn"'), 400, "invalid_request"),
        (lambda b: b.replace(b'"amount_cents":', b'"amount_cents":1'), 409, "amount_mismatch"),
    ],
)
async def test_malformed_or_wrong_amount_callbacks_change_nothing(
    seckill: TestClient[Any, Any],
    orders: TestClient[Any, Any],
    relay: None,
    token: Token,
    db: asyncpg.Connection,
    settings: Settings,
    mutate: Callable[[bytes], bytes],
    status: int,
    code: str,
) -> None:
    sale = await open_sale(seckill, token, db, buyers=1)
    order = sale.orders[0]
    body = mutate(payment_body(order["id"], order["amount_cents"], "txn-1"))
    got_status, answer = await post_payment(orders, settings.payment_webhook_secret, body)
    assert (got_status, answer["error"]) == (status, code)
    assert await state_of(db, order["id"]) == ("pending_payment", None)
    assert await db.fetchval("SELECT count(*) FROM orders.payments") == 0


async def test_payment_for_an_unknown_order_is_404(
    orders: TestClient[Any, Any], settings: Settings, db: asyncpg.Connection
) -> None:
    body = payment_body(str(uuid.uuid4()), 100, "txn-x")
    status, answer = await post_payment(orders, settings.payment_webhook_secret, body)
    assert (status, answer["error"]) == (404, "not_found")
    assert await db.fetchval("SELECT count(*) FROM orders.payments") == 0


# --- cancellation -----------------------------------------------------------------------


async def test_owner_cancels_an_unpaid_order_and_the_stock_comes_back_once(
    seckill: TestClient[Any, Any],
    orders: TestClient[Any, Any],
    relay: None,
    token: Token,
    db: asyncpg.Connection,
    redis: Redis,
    settings: Settings,
) -> None:
    sale = await open_sale(seckill, token, db, buyers=3)
    order = sale.orders[0]
    owner = token(order["user_id"])
    resp = await orders.post(f"/api/orders/{order['id']}/cancel", headers=token("intruder"))
    assert resp.status == 404
    resp = await orders.post(f"/api/orders/{order['id']}/cancel", headers=owner)
    assert resp.status == 200
    assert (await resp.json())["cancel_reason"] == "user"
    again = await orders.post(f"/api/orders/{order['id']}/cancel", headers=owner)
    assert again.status == 200 and (await again.json())["state"] == "cancelled"

    assert await wait_for(lambda: redis_stock(redis, sale.activity_id), 1) == 1
    events = await read_topic(settings, ORDERS, lambda es: bool(events_of("order.cancelled", es)))
    assert [e.data["order_id"] for e in events_of("order.cancelled", events)] == [order["id"]]
    await asyncio.sleep(0.5)
    assert await redis_stock(redis, sale.activity_id) == 1  # returned once, not twice
    # The returned item can be bought again; its old holder may buy again too.
    status = (
        await seckill.post(
            f"/api/seckill/activities/{sale.activity_id}/reservations", headers=token("latecomer")
        )
    ).status
    assert status == 201


async def test_a_paid_order_cannot_be_cancelled_by_anyone_or_anything(
    seckill: TestClient[Any, Any],
    orders: TestClient[Any, Any],
    relay: None,
    token: Token,
    db: asyncpg.Connection,
    settings: Settings,
) -> None:
    sale = await open_sale(seckill, token, db, buyers=1)
    order = sale.orders[0]
    assert (await pay(orders, settings, order))[0] == 200
    resp = await orders.post(f"/api/orders/{order['id']}/cancel", headers=token(order["user_id"]))
    assert (resp.status, (await resp.json())["error"]) == (409, "not_cancellable")
    # Enforced by the database itself, not only by the service's queries.
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            "UPDATE orders.orders SET state='cancelled', cancel_reason='user' WHERE id=$1",
            uuid.UUID(order["id"]),
        )
    assert await state_of(db, order["id"]) == ("paid", None)


async def test_a_late_payment_for_a_cancelled_order_is_refunded_and_takes_no_stock(
    seckill: TestClient[Any, Any],
    orders: TestClient[Any, Any],
    relay: None,
    token: Token,
    db: asyncpg.Connection,
    redis: Redis,
    settings: Settings,
) -> None:
    sale = await open_sale(seckill, token, db, buyers=2)
    order = sale.orders[0]
    resp = await orders.post(f"/api/orders/{order['id']}/cancel", headers=token(order["user_id"]))
    assert resp.status == 200
    assert await wait_for(lambda: redis_stock(redis, sale.activity_id), 1) == 1

    status, body = await pay(orders, settings, order, txn="txn-late")
    assert (status, body["result"]) == (200, "refund_requested")
    assert await state_of(db, order["id"]) == ("cancelled", "user")
    events = await read_topic(
        settings, ORDERS, lambda es: bool(events_of("order.refund_requested", es))
    )
    refunds = events_of("order.refund_requested", events)
    assert len(refunds) == 1
    assert refunds[0].data["transaction_id"] == "txn-late"
    assert refunds[0].data["reason"] == "order_cancelled"
    assert not events_of("order.paid", events)
    assert await redis_stock(redis, sale.activity_id) == 1  # the stock stays returned
    registry = orders.server.app[REGISTRY]
    assert (
        registry.get_sample_value("order_late_payments_total", {"reason": "order_not_payable"})
        == 1.0
    )
    # A second, different payment of a paid order is refunded too.
    other = sale.orders[1]
    assert (await pay(orders, settings, other, txn="txn-a"))[1]["result"] == "paid"
    assert (await pay(orders, settings, other, txn="txn-b"))[1]["result"] == "refund_requested"
    assert await state_of(db, other["id"]) == ("paid", None)


# --- timeout, reminders and the race -----------------------------------------------------


async def test_unpaid_orders_time_out_and_their_stock_can_be_bought_again(
    seckill: TestClient[Any, Any],
    orders: TestClient[Any, Any],
    relay: None,
    token: Token,
    db: asyncpg.Connection,
    redis: Redis,
    settings: Settings,
) -> None:
    sale = await open_sale(seckill, token, db, buyers=6, payment_timeout=5)
    payers, idlers = sale.orders[:2], sale.orders[2:]
    for order in payers:
        assert (await pay(orders, settings, order))[1]["result"] == "paid"
    # While they wait: stock = initial - paid - pending.
    assert await redis_stock(redis, sale.activity_id) == 6 - 2 - 4

    states = lambda: db.fetchval(  # noqa: E731
        "SELECT count(*) FROM orders.orders WHERE state='cancelled' AND activity_id=$1",
        sale.activity_id,
    )
    assert await wait_for(states, 4, within=20) == 4
    for order in idlers:
        assert await state_of(db, order["id"]) == ("cancelled", "timeout")
    assert await wait_for(lambda: redis_stock(redis, sale.activity_id), 4) == 4
    # Each cancelled reservation released exactly once.
    registry = seckill.server.app[SECKILL_METRICS].registry
    returns = registry.get_sample_value("seckill_stock_returns_total", {"result": "ok"})
    assert returns == 4.0

    second = await buy(seckill, token, db, sale.activity_id, 6, buyers=10, prefix="second-")
    assert len(second.orders) == 4
    assert await redis_stock(redis, sale.activity_id) == 0


async def test_a_payment_reminder_goes_out_once_before_the_deadline(
    seckill: TestClient[Any, Any],
    token: Token,
    db: asyncpg.Connection,
    redis: Redis,
    settings: Settings,
    relay: None,
) -> None:
    reminding = dataclasses.replace(settings, payment_reminder_lead_seconds=5.0)
    orders = await started_client(create_order_app(reminding))
    try:
        # Reminders are due 5 s before a 9 s deadline: about 4 s after the reservation,
        # long after the first order was paid even on a loaded machine.
        sale = await open_sale(seckill, token, db, buyers=3, payment_timeout=9)
        paid = sale.orders[0]
        assert (await pay(orders, settings, paid))[0] == 200
        remind_at = await db.fetchval(
            "SELECT max(pay_before) - interval '5 seconds' FROM orders.orders"
        )
        await asyncio.sleep(max(0.0, (remind_at - datetime.now(UTC)).total_seconds()) + 1.0)
        events = await read_topic(
            settings, ORDERS, lambda es: len(events_of("order.payment_due", es)) >= 2
        )
    finally:
        await orders.close()
    due = events_of("order.payment_due", events)
    assert sorted(e.data["order_id"] for e in due) == sorted(o["id"] for o in sale.orders[1:])
    assert all(e.data["pay_before"] for e in due)
    assert (
        await db.fetchval("SELECT count(*) FROM orders.orders WHERE reminder_sent_at IS NOT NULL")
        == 2
    )


async def test_payments_racing_the_timeout_have_exactly_one_winner_per_order(
    seckill: TestClient[Any, Any],
    orders: TestClient[Any, Any],
    relay: None,
    token: Token,
    db: asyncpg.Connection,
    redis: Redis,
    settings: Settings,
) -> None:
    sale = await open_sale(seckill, token, db, buyers=60, payment_timeout=4)
    deadline = await db.fetchval(
        "SELECT max(pay_before) FROM orders.orders WHERE activity_id=$1", sale.activity_id
    )
    start = deadline.timestamp() - 1.0

    async def pay_at(i: int, order: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        # Payments land from 1 s before the deadline to 2 s after it, one every 50 ms,
        # while the sweeper (every 0.1 s) cancels what is due: the early ones win, the
        # late ones lose (even on a loaded machine), those near the deadline race.
        await asyncio.sleep(max(0.0, start + i * 0.05 - time.time()))
        return await pay(orders, settings, order)

    answers = await asyncio.gather(*(pay_at(i, o) for i, o in enumerate(sale.orders)))
    assert {status for status, _ in answers} == {200}
    results = Counter(body["result"] for _, body in answers)
    assert results["paid"] > 0 and results["refund_requested"] > 0, results
    assert (
        await wait_for(
            lambda: db.fetchval(
                "SELECT count(*) FROM orders.orders"
                " WHERE state='pending_payment' AND activity_id=$1",
                sale.activity_id,
            ),
            0,
        )
        == 0
    )
    rows = await db.fetch(
        "SELECT id, state FROM orders.orders WHERE activity_id=$1", sale.activity_id
    )
    state = {str(r["id"]): r["state"] for r in rows}
    for (_, body), order in zip(answers, sale.orders, strict=True):
        expected = "paid" if body["result"] == "paid" else "cancelled"
        assert state[order["id"]] == expected
    cancelled = sum(1 for s in state.values() if s == "cancelled")
    assert results["paid"] + results["refund_requested"] == 60
    assert cancelled == results["refund_requested"]
    events = await read_topic(
        settings,
        ORDERS,
        lambda es: len(events_of("order.paid", es)) + len(events_of("order.cancelled", es)) >= 60,
    )
    per_order = Counter(
        e.data["order_id"] for e in events if e.type in ("order.paid", "order.cancelled")
    )
    assert set(per_order.values()) == {1} and len(per_order) == 60
    # Exactly the cancelled orders' stock came back.
    assert await wait_for(lambda: redis_stock(redis, sale.activity_id), cancelled) == cancelled
