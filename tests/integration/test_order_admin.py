"""The order service's admin API (docs/admin-api.md, "Orders") and the cancellation of a
flash sale by its merchant (seckill.cancelled), on real PostgreSQL and the broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient

from services.common.auth import mint_token
from services.common.events import SECKILL_CANCELLED, Envelope, event_id_for
from services.common.kafka import make_producer, publish_all
from services.common.settings import Settings
from services.common.topics import ORDERS, SECKILL_RESERVATIONS
from services.order.app import REGISTRY
from services.order.domain import NewOrder, order_id_for
from services.order.repository import OrderRepository
from tests.helpers import (
    constant,
    payment_body,
    post_payment,
    read_topic,
    reserved_event,
    wait_for,
)

Token = Callable[..., dict[str, str]]
MERCHANT = "merchant:7"


def merchant(settings: Settings, role: str, who: str = MERCHANT) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings.jwt_keys(), who, [role])}"}


@pytest.fixture
async def repo(settings: Settings) -> AsyncIterator[OrderRepository]:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    assert pool is not None
    yield OrderRepository(pool, settings.kafka_topic_prefix)
    await pool.close()


def new_order(user: str, sale_id: int, source: str = "seckill", price: int = 500) -> NewOrder:
    now = datetime.now(UTC)
    if source == "groupbuy":
        group_id = f"g-{uuid.uuid4().hex[:8]}"
        key = f"{group_id}:{user}"
        extra: dict[str, Any] = {"source": source, "group_id": group_id, "group_state": "open"}
    else:
        key = f"{sale_id}-{uuid.uuid4().hex}"
        extra = {}
    return NewOrder(
        id=order_id_for(key),
        reservation_id=key,
        activity_id=sale_id,
        user_id=user,
        sku="tea",
        quantity=1,
        unit_price_cents=price,
        reserved_at=now,
        pay_before=now + timedelta(minutes=15),
        **extra,
    )


async def place(
    repo: OrderRepository, db: asyncpg.Connection, *orders: NewOrder, age_seconds: int = 0
) -> list[str]:
    """Create the orders; the first is the oldest, one second apart (newest-first order is
    then known exactly)."""
    created = await repo.create_orders(list(orders))
    assert len(created) == len(orders)
    base = datetime.now(UTC) - timedelta(seconds=age_seconds + len(orders))
    for i, order in enumerate(orders):
        await db.execute(
            "UPDATE orders.orders SET created_at = $2 WHERE id = $1",
            order.id,
            base + timedelta(seconds=i),
        )
    return [str(o.id) for o in orders]


async def pay(
    client: TestClient[Any, Any], settings: Settings, order_id: str, txn: str, amount: int = 500
) -> dict[str, Any]:
    status, body = await post_payment(
        client, settings.payment_webhook_secret, payment_body(order_id, amount, txn)
    )
    assert status == 200, body
    return body


async def get_json(
    client: TestClient[Any, Any], url: str, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    resp = await client.get(url, headers=headers)
    return resp.status, await resp.json()


# --- search ----------------------------------------------------------------------------


async def test_the_search_filters_and_pages_exactly_newest_first(
    orders: TestClient[Any, Any], repo: OrderRepository, db: asyncpg.Connection, settings: Settings
) -> None:
    o1, o2, o3, o4, o5 = await place(
        repo,
        db,
        new_order("alice", 10),
        new_order("bob", 10),
        new_order("alice", 10, source="groupbuy"),
        new_order("alice", 11),
        new_order("carol", 10),
    )
    await pay(orders, settings, o4, "txn-o4")
    cancel = await orders.post(
        f"/api/orders/{o5}/cancel",
        headers={"Authorization": f"Bearer {mint_token(settings.jwt_keys(), 'carol')}"},
    )
    assert cancel.status == 200
    viewer = merchant(settings, "viewer")

    async def ids(query: str) -> tuple[list[str], int, int, int]:
        status, body = await get_json(orders, f"/api/orders/admin/orders{query}", viewer)
        assert status == 200, body
        return [o["id"] for o in body["orders"]], body["total"], body["limit"], body["offset"]

    assert await ids("") == ([o5, o4, o3, o2, o1], 5, 20, 0)
    assert await ids("?limit=2&offset=1") == ([o4, o3], 5, 2, 1)
    assert await ids("?limit=2&offset=4") == ([o1], 5, 2, 4)
    assert await ids("?user_id=alice") == ([o4, o3, o1], 3, 20, 0)
    assert await ids("?source=seckill&sale_id=10") == ([o5, o2, o1], 3, 20, 0)
    assert await ids("?sale_id=10") == ([o5, o3, o2, o1], 4, 20, 0)
    assert await ids("?source=groupbuy") == ([o3], 1, 20, 0)
    assert await ids("?state=paid") == ([o4], 1, 20, 0)
    assert await ids("?state=cancelled&user_id=carol") == ([o5], 1, 20, 0)
    assert await ids("?state=pending_payment&user_id=alice&limit=1") == ([o3], 2, 1, 0)
    assert await ids(f"?order_id={o2}") == ([o2], 1, 20, 0)
    assert await ids(f"?order_id={uuid.uuid4()}") == ([], 0, 20, 0)
    assert await ids("?user_id=nobody") == ([], 0, 20, 0)

    _, body = await get_json(orders, f"/api/orders/admin/orders?order_id={o4}", viewer)
    [item] = body["orders"]
    assert item["user_id"] == "alice" and item["state"] == "paid" and item["activity_id"] == 11
    assert item["source"] == "seckill" and item["amount_cents"] == 500 and item["paid_at"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("order_id=nope", "order_id"),
        ("order_id=123", "order_id"),
        ("source=shop", "source"),
        ("state=done", "state"),
        ("sale_id=abc", "sale_id"),
        ("sale_id=0", "sale_id"),
        ("sale_id=-3", "sale_id"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("offset=-1", "offset"),
        ("offset=100001", "offset"),
        ("user_id=" + "u" * 129, "user_id"),
        ("colour=red", "colour"),
    ],
)
async def test_a_bad_search_parameter_is_400_naming_it(
    orders: TestClient[Any, Any], settings: Settings, query: str, field: str
) -> None:
    status, body = await get_json(
        orders, f"/api/orders/admin/orders?{query}", merchant(settings, "viewer")
    )
    assert (status, body["error"], body["field"]) == (400, "invalid_request", field)


ROUTES = [
    ("GET", "/api/orders/admin/orders"),
    ("GET", f"/api/orders/admin/orders/{uuid.uuid4()}"),
    ("POST", "/api/orders/admin/payments/txn-1/refund"),
    ("GET", "/api/orders/admin/figures?source=seckill&sale_id=1"),
    ("GET", "/api/orders/admin/live?source=seckill&sale_id=1"),
]


@pytest.mark.parametrize(("method", "url"), ROUTES)
async def test_admin_routes_refuse_no_token_and_a_shoppers_token(
    orders: TestClient[Any, Any], settings: Settings, method: str, url: str
) -> None:
    resp = await orders.request(method, url, json={"refund_id": "RF-1"})
    assert (resp.status, (await resp.json())["error"]) == (401, "unauthorized")
    shopper = {"Authorization": f"Bearer {mint_token(settings.jwt_keys(), 'alice')}"}
    resp = await orders.request(method, url, json={"refund_id": "RF-1"}, headers=shopper)
    assert (resp.status, (await resp.json())["error"]) == (403, "forbidden")


# --- one order, its payments and refunds ----------------------------------------------


async def test_one_order_shows_its_history_in_time_order_and_its_payments(
    orders: TestClient[Any, Any], repo: OrderRepository, db: asyncpg.Connection, settings: Settings
) -> None:
    paid, cancelled = await place(repo, db, new_order("alice", 20), new_order("bob", 20))
    await pay(orders, settings, paid, "txn-a")
    await asyncio.sleep(0.01)
    assert (await pay(orders, settings, paid, "txn-b"))["result"] == "refund_requested"
    bob = {"Authorization": f"Bearer {mint_token(settings.jwt_keys(), 'bob')}"}
    assert (await orders.post(f"/api/orders/{cancelled}/cancel", headers=bob)).status == 200
    await pay(orders, settings, cancelled, "txn-late")
    viewer = merchant(settings, "viewer")

    status, body = await get_json(orders, f"/api/orders/admin/orders/{paid}", viewer)
    assert status == 200
    assert body["id"] == paid and body["user_id"] == "alice" and body["state"] == "paid"
    assert [{k: v for k, v in h.items() if k != "at"} for h in body["history"]] == [
        {"event": "created"},
        {"event": "paid", "transaction_id": "txn-a"},
        {"event": "payment_refund_requested", "transaction_id": "txn-b", "reason": "already_paid"},
    ]
    times = [h["at"] for h in body["history"]]
    assert times == sorted(times)
    assert [
        (p["transaction_id"], p["amount_cents"], p["outcome"], p["refund_state"])
        for p in body["payments"]
    ] == [("txn-a", 500, "applied", "none"), ("txn-b", 500, "refund_requested", "requested")]

    status, body = await get_json(orders, f"/api/orders/admin/orders/{cancelled}", viewer)
    assert [(h["event"], h.get("reason")) for h in body["history"]] == [
        ("created", None),
        ("cancelled", "user"),
        ("payment_refund_requested", "order_cancelled"),
    ]
    operator = merchant(settings, "operator")
    resp = await orders.post(
        "/api/orders/admin/payments/txn-late/refund", json={"refund_id": "RF-9"}, headers=operator
    )
    assert resp.status == 200
    _, body = await get_json(orders, f"/api/orders/admin/orders/{cancelled}", viewer)
    assert body["history"][-1] == {
        "at": body["payments"][0]["refunded_at"],
        "event": "refunded",
        "transaction_id": "txn-late",
        "refund_id": "RF-9",
        "by": MERCHANT,
    }
    assert body["payments"][0]["refund_state"] == "refunded"

    for missing in (str(uuid.uuid4()), "nope"):
        status, body = await get_json(orders, f"/api/orders/admin/orders/{missing}", viewer)
        assert (status, body["error"]) == (404, "not_found")


async def test_a_requested_refund_is_marked_once_and_audited(
    orders: TestClient[Any, Any], repo: OrderRepository, db: asyncpg.Connection, settings: Settings
) -> None:
    cancelled, live = await place(repo, db, new_order("bob", 21), new_order("carol", 21))
    bob = {"Authorization": f"Bearer {mint_token(settings.jwt_keys(), 'bob')}"}
    assert (await orders.post(f"/api/orders/{cancelled}/cancel", headers=bob)).status == 200
    await pay(orders, settings, cancelled, "txn-late")
    await pay(orders, settings, live, "txn-live")
    url = "/api/orders/admin/payments/{}/refund"
    operator = merchant(settings, "operator")

    async def mark(txn: str, body: Any, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        resp = await orders.post(url.format(txn), json=body, headers=headers)
        return resp.status, await resp.json()

    # Refused before anything changes.
    status, body = await mark("txn-late", {"refund_id": "RF-1"}, merchant(settings, "viewer"))
    assert (status, body["error"]) == (403, "forbidden")
    for bad, field in [
        ({}, "refund_id"),
        ({"refund_id": ""}, "refund_id"),
        ({"refund_id": "R" * 65}, "refund_id"),
        ({"refund_id": "RF\n1"}, "refund_id"),
        ({"refund_id": 12}, "refund_id"),
        ({"refund_id": "RF-1", "note": "x"}, "note"),
    ]:
        status, body = await mark("txn-late", bad, operator)
        assert (status, body["error"], body["field"]) == (400, "invalid_request", field)
    assert (
        await db.fetchval("SELECT count(*) FROM orders.payments WHERE refund_id IS NOT NULL") == 0
    )
    assert await db.fetchval("SELECT count(*) FROM orders.admin_audit") == 0

    status, first = await mark("txn-late", {"refund_id": "RF-1"}, operator)
    assert status == 200
    assert {
        k: first[k] for k in ("transaction_id", "outcome", "refund_state", "refund_reason")
    } == {
        "transaction_id": "txn-late",
        "outcome": "refund_requested",
        "refund_state": "refunded",
        "refund_reason": "order_cancelled",
    }
    assert (first["refund_id"], first["refunded_by"]) == ("RF-1", MERCHANT)
    assert first["refunded_at"] is not None
    # The same marking again (a retried click): unchanged, not an error.
    status, again = await mark("txn-late", {"refund_id": "RF-1"}, operator)
    assert (status, again) == (200, first)
    status, body = await mark("txn-late", {"refund_id": "RF-2"}, operator)
    assert (status, body["error"]) == (409, "already_refunded")
    # An applied payment of a live order: nothing was requested.
    status, body = await mark("txn-live", {"refund_id": "RF-3"}, operator)
    assert (status, body["error"]) == (409, "refund_not_requested")
    status, body = await mark("txn-unknown", {"refund_id": "RF-4"}, operator)
    assert (status, body["error"]) == (404, "not_found")

    rows = await db.fetch(
        "SELECT transaction_id, refund_id, refunded_by FROM orders.payments ORDER BY 1"
    )
    assert [tuple(r) for r in rows] == [("txn-late", "RF-1", MERCHANT), ("txn-live", None, None)]
    audit = await db.fetch(
        "SELECT actor, action, target, target_id, before::text, after::text FROM orders.admin_audit"
    )
    assert [(a["actor"], a["action"], a["target"], a["target_id"]) for a in audit] == [
        (MERCHANT, "payment.refund", "payment", "txn-late")
    ]
    assert orjson.loads(audit[0]["before"]) == {"refund_state": "requested", "refund_id": None}
    assert orjson.loads(audit[0]["after"]) == {"refund_state": "refunded", "refund_id": "RF-1"}


async def test_the_paid_order_of_a_failed_group_can_be_marked_refunded(
    orders: TestClient[Any, Any], repo: OrderRepository, db: asyncpg.Connection, settings: Settings
) -> None:
    order = new_order("dora", 30, source="groupbuy")
    [order_id] = await place(repo, db, order)
    await pay(orders, settings, order_id, "txn-group")
    assert order.group_id is not None
    _, refunded = await repo.fail_group(order.group_id)
    assert [str(o.id) for o in refunded] == [order_id]
    resp = await orders.post(
        "/api/orders/admin/payments/txn-group/refund",
        json={"refund_id": "RF-G"},
        headers=merchant(settings, "admin"),
    )
    body = await resp.json()
    assert resp.status == 200
    assert (body["outcome"], body["refund_state"], body["refund_reason"]) == (
        "applied",
        "refunded",
        "group_failed",
    )
    _, detail = await get_json(
        orders, f"/api/orders/admin/orders/{order_id}", merchant(settings, "viewer")
    )
    assert [(h["event"], h.get("reason")) for h in detail["history"]] == [
        ("created", None),
        ("paid", None),
        ("cancelled", "group_failed"),
        ("payment_refund_requested", "group_failed"),
        ("refunded", None),
    ]


# --- figures ---------------------------------------------------------------------------


async def test_figures_count_one_sales_orders_by_state_exactly(
    orders: TestClient[Any, Any], repo: OrderRepository, db: asyncpg.Connection, settings: Settings
) -> None:
    ids = await place(
        repo,
        db,
        *(new_order(f"u{i}", 40) for i in range(6)),
        new_order("g1", 40, source="groupbuy"),
        new_order("other", 41),
    )
    await pay(orders, settings, ids[0], "txn-f")
    for i in (1, 2):
        user = {"Authorization": f"Bearer {mint_token(settings.jwt_keys(), f'u{i}')}"}
        assert (await orders.post(f"/api/orders/{ids[i]}/cancel", headers=user)).status == 200
    viewer = merchant(settings, "viewer")
    status, body = await get_json(
        orders, "/api/orders/admin/figures?source=seckill&sale_id=40", viewer
    )
    assert status == 200
    at = body.pop("at")
    assert body == {
        "source": "seckill",
        "sale_id": 40,
        "created": 6,
        "pending_payment": 3,
        "paid": 1,
        "cancelled": 2,
    }
    assert datetime.fromisoformat(at.replace("Z", "+00:00")) <= datetime.now(UTC)
    _, body = await get_json(orders, "/api/orders/admin/figures?source=groupbuy&sale_id=40", viewer)
    assert (body["created"], body["pending_payment"]) == (1, 1)
    _, body = await get_json(orders, "/api/orders/admin/figures?source=seckill&sale_id=99", viewer)
    assert (body["created"], body["pending_payment"], body["paid"], body["cancelled"]) == (
        0,
        0,
        0,
        0,
    )

    for query, field in [
        ("sale_id=40", "source"),
        ("source=seckill", "sale_id"),
        ("source=shop&sale_id=40", "source"),
        ("source=seckill&sale_id=x", "sale_id"),
        ("source=seckill&sale_id=40&state=paid", "state"),
    ]:
        for route in ("figures", "live"):
            status, body = await get_json(orders, f"/api/orders/admin/{route}?{query}", viewer)
            assert (status, body["error"], body["field"]) == (400, "invalid_request", field)


async def test_the_live_stream_opens_with_the_figures(
    orders: TestClient[Any, Any], repo: OrderRepository, db: asyncpg.Connection, settings: Settings
) -> None:
    await place(repo, db, new_order("u1", 50), new_order("u2", 50))
    resp = await orders.get(
        "/api/orders/admin/live?source=seckill&sale_id=50", headers=merchant(settings, "viewer")
    )
    try:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        text = ""
        async with asyncio.timeout(5):
            while text.count("\n\n") < 2:
                text += (await resp.content.readany()).decode()
    finally:
        resp.close()
    retry, first = text.split("\n\n")[:2]
    assert retry == "retry: 1000"
    event, data = first.split("\n")
    assert event == "event: figures"
    figures = orjson.loads(data.removeprefix("data: "))
    assert {k: v for k, v in figures.items() if k != "at"} == {
        "source": "seckill",
        "sale_id": 50,
        "created": 2,
        "pending_payment": 2,
        "paid": 0,
        "cancelled": 0,
    }


# --- a flash sale cancelled by its merchant --------------------------------------------


def sale_cancelled(activity_id: int) -> Envelope:
    return Envelope(
        id=event_id_for(SECKILL_CANCELLED, str(activity_id)),
        type=SECKILL_CANCELLED,
        key=f"a{activity_id}",
        data={"activity_id": activity_id, "cancelled_at": "2026-11-30T10:00:00.000Z"},
    )


async def publish(settings: Settings, *events: Envelope) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        await publish_all(producer, settings.topic(SECKILL_RESERVATIONS), events)
    finally:
        await producer.stop()


def consumed(orders: TestClient[Any, Any], settings: Settings) -> float:
    """Messages of seckill.reservations the order service handled."""
    registry = orders.server.app[REGISTRY]
    return sum(
        s.value
        for m in registry.collect()
        if m.name == "kafka_consumer_messages"
        for s in m.samples
        if s.name == "kafka_consumer_messages_total"
        and s.labels["topic"] == settings.topic(SECKILL_RESERVATIONS)
        and s.labels["result"] == "ok"
    )


async def states(db: asyncpg.Connection, activity_id: int) -> dict[str, tuple[str, str | None]]:
    rows = await db.fetch(
        "SELECT user_id, state, cancel_reason FROM orders.orders WHERE activity_id = $1",
        activity_id,
    )
    return {r["user_id"]: (r["state"], r["cancel_reason"]) for r in rows}


def cancellations(events: list[Envelope]) -> list[tuple[str, str]]:
    return sorted(
        (e.data["user_id"], e.data["reason"]) for e in events if e.type == "order.cancelled"
    )


async def test_a_cancelled_sale_cancels_its_unpaid_orders_once_and_leaves_paid_ones(
    orders: TestClient[Any, Any], db: asyncpg.Connection, settings: Settings
) -> None:
    first = [reserved_event(60, u) for u in ("u1", "u2", "u3")]
    await publish(settings, *first, reserved_event(61, "u9"))
    count = "SELECT count(*) FROM orders.orders"
    assert await wait_for(lambda: db.fetchval(count), 4) == 4
    u1 = str(order_id_for(first[0].data["reservation_id"]))
    assert (await pay(orders, settings, u1, "txn-u1"))["result"] == "paid"

    await publish(settings, sale_cancelled(60))
    want = {
        "u1": ("paid", None),
        "u2": ("cancelled", "sale_cancelled"),
        "u3": ("cancelled", "sale_cancelled"),
    }
    assert await wait_for(lambda: states(db, 60), want) == want
    assert await states(db, 61) == {"u9": ("pending_payment", None)}
    row = await db.fetchrow("SELECT source, sale_id, cancelled_at FROM orders.cancelled_sales")
    assert (row["source"], row["sale_id"]) == ("seckill", 60)
    assert row["cancelled_at"] == datetime(2026, 11, 30, 10, tzinfo=UTC)

    # Redelivered: nothing more is cancelled or announced.
    handled = consumed(orders, settings)
    await publish(settings, sale_cancelled(60))
    assert await wait_for(lambda: constant(consumed(orders, settings)), handled + 1) == handled + 1
    assert await db.fetchval("SELECT count(*) FROM orders.cancelled_sales") == 1
    events = await read_topic(settings, ORDERS, lambda es: len(cancellations(es)) >= 2)
    assert cancellations(events) == [("u2", "sale_cancelled"), ("u3", "sale_cancelled")]
    registry = orders.server.app[REGISTRY]
    assert registry.get_sample_value("order_sale_cancelled_orders_total") == 2.0

    # A reservation of the sale whose event arrives after the cancellation: its order is
    # created cancelled, and a payment for it is refunded, never applied.
    late = reserved_event(60, "u4")
    await publish(settings, late)
    want["u4"] = ("cancelled", "sale_cancelled")
    assert await wait_for(lambda: states(db, 60), want) == want
    late_id = str(order_id_for(late.data["reservation_id"]))
    answer = await pay(orders, settings, late_id, "txn-u4")
    assert answer["result"] == "refund_requested"
    assert (await states(db, 60))["u4"] == ("cancelled", "sale_cancelled")
    events = await read_topic(
        settings, ORDERS, lambda es: any(e.type == "order.refund_requested" for e in es)
    )
    about_late = [e.type for e in events if e.key == late_id]
    assert about_late == ["order.created", "order.cancelled", "order.refund_requested"]
    assert cancellations(events) == [
        ("u2", "sale_cancelled"),
        ("u3", "sale_cancelled"),
        ("u4", "sale_cancelled"),
    ]
    assert not [e for e in events if e.type == "order.paid" and e.key == late_id]
    # Cancelled by its creation, not left to the sweeper's net.
    assert registry.get_sample_value("order_sale_cancelled_swept_total") == 0.0


async def test_an_order_whose_creation_raced_the_cancellation_is_swept(
    orders: TestClient[Any, Any], repo: OrderRepository, db: asyncpg.Connection, settings: Settings
) -> None:
    # The creation and the cancellation committed concurrently and missed each other: the
    # order is pending and its sale recorded as cancelled.
    [order_id] = await place(repo, db, new_order("u1", 70))
    [other] = await place(repo, db, new_order("u2", 71))
    await db.execute(
        "INSERT INTO orders.cancelled_sales (source, sale_id, cancelled_at)"
        " VALUES ('seckill', 70, now())"
    )
    # The sweeper (every 0.1 s in tests) cancels it.
    assert await wait_for(lambda: states(db, 70), {"u1": ("cancelled", "sale_cancelled")}) == {
        "u1": ("cancelled", "sale_cancelled")
    }
    assert await states(db, 71) == {"u2": ("pending_payment", None)}
    events = await read_topic(settings, ORDERS, lambda es: len(cancellations(es)) >= 1)
    assert [e.key for e in events if e.type == "order.cancelled"] == [order_id]
    registry = orders.server.app[REGISTRY]
    assert registry.get_sample_value("order_sale_cancelled_swept_total") == 1.0
    assert other != order_id
