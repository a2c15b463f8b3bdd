"""Group buying end to end in-process: groupbuy (relay, sweeper, consumers) -> Kafka ->
order service -> PostgreSQL, on the real Redis, PostgreSQL and broker. Expiry with and
without virtual completion, with the cancelled orders and the stock that comes back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from services.common.settings import Settings
from services.common.topics import GROUPBUY, ORDERS
from tests.helpers import (
    create_campaign,
    payment_body,
    post_payment,
    read_topic,
    started_client,
    wait_for,
)

Token = Callable[..., dict[str, str]]
Client = TestClient[Any, Any]


@pytest.fixture
async def gb_service(settings: Settings) -> AsyncIterator[Client]:
    """The whole groupbuy service in-process: relay, sweeper and consumers running."""
    from services.groupbuy.app import create_app

    client = await started_client(create_app(settings))
    yield client
    await client.close()


async def open_group(client: Client, token: Token, campaign_id: int, user: str) -> str:
    resp = await client.post(f"/api/groupbuy/campaigns/{campaign_id}/groups", headers=token(user))
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["id"])


async def join(client: Client, token: Token, gid: str, user: str) -> int:
    return (await client.post(f"/api/groupbuy/groups/{gid}/join", headers=token(user))).status


async def group_orders(db: asyncpg.Connection, gid: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT id, user_id, state, cancel_reason, group_state, amount_cents, source "
        "FROM orders.orders WHERE group_id = $1 ORDER BY user_id",
        gid,
    )
    return [dict(r) for r in rows]


async def remaining(client: Client, token: Token, campaign_id: int) -> int:
    resp = await client.get(f"/api/groupbuy/campaigns/{campaign_id}", headers=token("x"))
    return int((await resp.json())["remaining_stock"])


def orders_in(db: asyncpg.Connection, gid: str, state_column: str) -> Callable[[], Any]:
    async def probe() -> list[Any]:
        return sorted(str(o[state_column]) for o in await group_orders(db, gid))

    return probe


async def test_a_full_group_gives_every_member_an_order_at_the_group_price_ready_to_fulfil(
    gb_service: Client, orders: Client, token: Token, db: asyncpg.Connection, settings: Settings
) -> None:
    campaign = await create_campaign(gb_service, token("ops", admin=True), group_size=3, stock=6)
    gid = await open_group(gb_service, token, campaign["id"], "leader")
    assert [await join(gb_service, token, gid, u) for u in ("m1", "m2")] == [201, 201]
    done = await wait_for(orders_in(db, gid, "group_state"), ["completed"] * 3)
    assert done == ["completed"] * 3
    rows = await group_orders(db, gid)
    assert [r["user_id"] for r in rows] == ["leader", "m1", "m2"]
    assert {(r["state"], r["amount_cents"], r["source"]) for r in rows} == {
        ("pending_payment", 4900, "groupbuy")
    }
    # The record in PostgreSQL, built by groupbuy's own consumer.
    record = "SELECT state, completion FROM groupbuy.groups WHERE id = $1"
    assert await wait_for(lambda: _row(db, record, gid), ("completed", "full")) == (
        "completed",
        "full",
    )
    members = await db.fetch(
        "SELECT user_id FROM groupbuy.members WHERE group_id = $1 ORDER BY position", gid
    )
    assert [m["user_id"] for m in members] == ["leader", "m1", "m2"]
    completed = await read_topic(
        settings, GROUPBUY, lambda es: any(e.type == "group.completed" for e in es)
    )
    assert [e.type for e in completed].count("group.completed") == 1
    assert {e.key for e in completed} == {gid}


async def _row(db: asyncpg.Connection, query: str, *args: Any) -> tuple[Any, ...] | None:
    row = await db.fetchrow(query, *args)
    return None if row is None else tuple(row)


async def test_an_expired_group_fails_its_orders_are_cancelled_and_its_stock_returns(
    gb_service: Client,
    orders: Client,
    token: Token,
    db: asyncpg.Connection,
    settings: Settings,
) -> None:
    # Long enough for the order consumer to start and create the orders (so one can be
    # paid) before the group expires.
    campaign = await create_campaign(
        gb_service, token("ops", admin=True), group_size=3, stock=9, group_window_seconds=6
    )
    gid = await open_group(gb_service, token, campaign["id"], "leader")
    assert await join(gb_service, token, gid, "m1") == 201
    assert await remaining(gb_service, token, campaign["id"]) == 6
    assert (
        await wait_for(orders_in(db, gid, "state"), ["pending_payment"] * 2)
        == ["pending_payment"] * 2
    )
    # The leader pays before the group fails: that payment must be refunded.
    leader = (await group_orders(db, gid))[0]
    body = payment_body(str(leader["id"]), leader["amount_cents"], "txn-leader")
    status, paid = await post_payment(orders, settings.payment_webhook_secret, body)
    assert (status, paid["result"]) == (200, "paid")

    cancelled = await wait_for(orders_in(db, gid, "cancel_reason"), ["group_failed"] * 2)
    assert cancelled == ["group_failed"] * 2
    assert {(r["state"], r["group_state"]) for r in await group_orders(db, gid)} == {
        ("cancelled", "failed")
    }
    assert await remaining(gb_service, token, campaign["id"]) == 9
    events = await read_topic(
        settings,
        ORDERS,
        lambda es: (
            sum(e.type == "order.cancelled" for e in es) == 2
            and any(e.type == "order.refund_requested" for e in es)
        ),
    )
    refunds = [e for e in events if e.type == "order.refund_requested"]
    assert [(r.data["transaction_id"], r.data["reason"]) for r in refunds] == [
        ("txn-leader", "group_failed")
    ]
    assert sum(e.type == "order.cancelled" for e in events) == 2
    failed = await read_topic(
        settings, GROUPBUY, lambda es: any(e.type == "group.failed" for e in es)
    )
    assert [e.type for e in failed].count("group.failed") == 1
    assert [e.type for e in failed].count("group.completed") == 0


async def test_with_virtual_completion_an_expired_group_completes_with_its_real_members(
    gb_service: Client, orders: Client, token: Token, db: asyncpg.Connection, settings: Settings
) -> None:
    campaign = await create_campaign(
        gb_service,
        token("ops", admin=True),
        group_size=4,
        stock=8,
        group_window_seconds=2,
        virtual_completion=True,
        min_real_members=2,
    )
    gid = await open_group(gb_service, token, campaign["id"], "leader")
    assert await join(gb_service, token, gid, "m1") == 201
    done = await wait_for(orders_in(db, gid, "group_state"), ["completed"] * 2)
    assert done == ["completed"] * 2
    assert {r["state"] for r in await group_orders(db, gid)} == {"pending_payment"}
    # The two unused units came back; the two real members keep theirs.
    assert await remaining(gb_service, token, campaign["id"]) == 6
    events = await read_topic(
        settings, GROUPBUY, lambda es: any(e.type == "group.completed" for e in es)
    )
    completed = [e for e in events if e.type == "group.completed"]
    assert len(completed) == 1 and completed[0].data["how"] == "virtual"
    assert not [e for e in events if e.type == "group.failed"]


async def test_a_group_order_waits_for_its_group_then_its_cancellation_returns_the_unit(
    gb_service: Client,
    orders: Client,
    seckill: Client,
    token: Token,
    db: asyncpg.Connection,
    settings: Settings,
) -> None:
    campaign = await create_campaign(gb_service, token("ops", admin=True), group_size=2, stock=4)
    gid = await open_group(gb_service, token, campaign["id"], "leader")
    assert await wait_for(orders_in(db, gid, "state"), ["pending_payment"]) == ["pending_payment"]
    order_id = (await group_orders(db, gid))[0]["id"]
    resp = await orders.post(f"/api/orders/{order_id}/cancel", headers=token("leader"))
    assert (resp.status, (await resp.json())["error"]) == (409, "group_open")

    assert await join(gb_service, token, gid, "m1") == 201
    await wait_for(orders_in(db, gid, "group_state"), ["completed"] * 2)
    assert await remaining(gb_service, token, campaign["id"]) == 2
    resp = await orders.post(f"/api/orders/{order_id}/cancel", headers=token("leader"))
    assert resp.status == 200 and (await resp.json())["cancel_reason"] == "user"
    # groupbuy gives the unit back (once); seckill's stock return leaves it alone.
    assert await wait_for(lambda: remaining(gb_service, token, campaign["id"]), 3) == 3
    await asyncio.sleep(1.0)
    assert await remaining(gb_service, token, campaign["id"]) == 3
    dead = await read_topic(settings, "orders.dlq", lambda es: True, within=2)
    assert dead == []
