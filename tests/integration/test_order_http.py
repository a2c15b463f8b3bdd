"""The order service's HTTP API on real PostgreSQL: own orders only, clear errors."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from services.order.domain import NewOrder, order_id_for
from services.order.repository import OrderRepository

Token = Callable[..., dict[str, str]]


async def place(db: asyncpg.Connection, settings: Any, user: str, n: int) -> list[NewOrder]:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    assert pool is not None
    now = datetime.now(UTC)
    wanted = [
        NewOrder(
            id=order_id_for(rid := f"3-{uuid.uuid4().hex}"),
            reservation_id=rid,
            activity_id=3,
            user_id=user,
            sku="s",
            quantity=1,
            unit_price_cents=250,
            reserved_at=now,
            pay_before=now + timedelta(minutes=15),
        )
        for _ in range(n)
    ]
    try:
        created = await OrderRepository(pool).create_orders(wanted)
    finally:
        await pool.close()
    assert len(created) == n
    return created


async def test_a_shopper_sees_their_own_orders_and_nobody_elses(
    orders: TestClient[Any, Any], token: Token, db: asyncpg.Connection, settings: Any
) -> None:
    mine = await place(db, settings, "alice", 3)
    theirs = await place(db, settings, "bob", 1)

    resp = await orders.get("/api/orders", headers=token("alice"))
    assert resp.status == 200
    listed = (await resp.json())["orders"]
    assert sorted(o["id"] for o in listed) == sorted(str(o.id) for o in mine)
    assert {(o["state"], o["amount_cents"]) for o in listed} == {("pending_payment", 250)}

    resp = await orders.get(f"/api/orders/{mine[0].id}", headers=token("alice"))
    assert resp.status == 200
    assert (await resp.json())["reservation_id"] == mine[0].reservation_id
    # Bob's order is answered exactly like a missing one.
    resp = await orders.get(f"/api/orders/{theirs[0].id}", headers=token("alice"))
    assert (resp.status, (await resp.json())["error"]) == (404, "not_found")
    resp = await orders.get(f"/api/orders/{theirs[0].id}", headers=token("ops", admin=True))
    assert resp.status == 200

    resp = await orders.get("/api/orders?limit=2", headers=token("alice"))
    assert len((await resp.json())["orders"]) == 2


@pytest.mark.parametrize("order_id", ["nope", str(uuid.uuid4()), "1"])
async def test_unknown_or_malformed_order_id_is_404(
    orders: TestClient[Any, Any], token: Token, order_id: str
) -> None:
    resp = await orders.get(f"/api/orders/{order_id}", headers=token("alice"))
    assert (resp.status, (await resp.json())["error"]) == (404, "not_found")


@pytest.mark.parametrize("limit", ["0", "101", "ten", "-1"])
async def test_a_bad_list_limit_is_400(
    orders: TestClient[Any, Any], token: Token, limit: str
) -> None:
    resp = await orders.get(f"/api/orders?limit={limit}", headers=token("alice"))
    body = await resp.json()
    assert (resp.status, body["error"], body["field"]) == (400, "invalid_request", "limit")


async def test_orders_need_a_token(orders: TestClient[Any, Any]) -> None:
    resp = await orders.get("/api/orders")
    assert (resp.status, (await resp.json())["error"]) == (401, "unauthorized")


async def test_ops_endpoints_report_health_and_metrics(orders: TestClient[Any, Any]) -> None:
    from services.order.app import create_ops
    from tests.helpers import started_client

    ops = await started_client(create_ops(orders.server.app))
    try:
        assert (await ops.get("/healthz")).status == 200
        ready = await ops.get("/readyz")
        assert ready.status == 200
        assert (await ready.json())["checks"] == {"postgres": "ok", "kafka": "ok"}
        await orders.get("/api/orders/abc")  # an id in the path must not become a label
        text = await (await ops.get("/metrics")).text()
        assert 'http_requests_total{method="GET",route="/api/orders/{id}",status="401"}' in text
        assert "abc" not in text
    finally:
        await ops.close()
