"""POST /api/orders/{id}/coupon over HTTP, on the real PostgreSQL: locks, races and every
refusal of docs/coupons.md ("Errors")."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from services.common.events import COUPON_LOCKED, ORDER_CREATED, ORDER_PAID, event_id_for
from services.common.http import HttpMetrics, auth_middleware, errors_and_metrics_middleware
from services.common.settings import Settings
from services.coupon.announce import coupon_outbox
from services.coupon.lifecycle_metrics import LifecycleMetrics
from services.coupon.redemption import Redemption
from services.coupon.redemption_routes import REDEMPTION, add_routes
from tests.coupon_helpers import (
    Lifecycle,
    create_template,
    issue_coupon,
    order_event,
    outbox_events,
)
from tests.helpers import started_client

Token = Callable[..., dict[str, str]]
Client = TestClient[Any, Any]


@pytest.fixture
def life(pool: asyncpg.Pool, redis: Redis) -> Lifecycle:
    return Lifecycle(pool, redis)


@pytest.fixture
async def client(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    registry = CollectorRegistry()
    app = web.Application(
        middlewares=[
            errors_and_metrics_middleware(HttpMetrics(registry)),
            auth_middleware(settings.jwt_keys()),
        ]
    )
    app[REDEMPTION] = Redemption(coupon_outbox(pool), LifecycleMetrics(registry))
    add_routes(app)
    client = await started_client(app)
    yield client
    await client.close()


async def new_order(life: Lifecycle, user: str = "u1", **kw: Any) -> uuid.UUID:
    order_id = uuid.uuid4()
    await life.deliver(order_event(ORDER_CREATED, order_id, user, **kw))
    return order_id


async def redeem(
    client: Client, token: Token, order_id: uuid.UUID | str, coupon_id: str, user: str = "u1"
) -> tuple[int, dict[str, Any]]:
    resp = await client.post(
        f"/api/orders/{order_id}/coupon", json={"coupon_id": coupon_id}, headers=token(user)
    )
    return resp.status, await resp.json()


async def state_of(db: asyncpg.Connection, coupon_id: str) -> tuple[str, uuid.UUID | None]:
    row = await db.fetchrow("SELECT state, order_id FROM coupon.coupons WHERE id = $1", coupon_id)
    assert row is not None
    return row["state"], row["order_id"]


async def test_a_coupon_locks_to_a_pending_order_with_its_discount(
    client: Client, token: Token, life: Lifecycle, db: asyncpg.Connection
) -> None:
    template = await create_template(db)  # 10.00 off from 100.00
    coupon_id = await issue_coupon(db, template, "u1")
    order_id = await new_order(life, amount_cents=25_000)
    status, body = await redeem(client, token, order_id, coupon_id)
    assert status == 200, body
    assert body == {
        "order_id": str(order_id),
        "coupon_id": coupon_id,
        "amount_cents": 25_000,
        "discount_cents": 1_000,
        "amount_due_cents": 24_000,
    }
    row = await db.fetchrow("SELECT * FROM coupon.coupons WHERE id = $1", coupon_id)
    assert row is not None
    assert (row["state"], row["order_id"], row["discount_cents"]) == ("locked", order_id, 1_000)
    assert row["locked_at"] is not None
    [locked] = await outbox_events(db)
    assert locked.type == COUPON_LOCKED and locked.key == "u1"
    assert locked.id == event_id_for(COUPON_LOCKED, f"{coupon_id}:{order_id}")
    assert locked.data == {
        "coupon_id": coupon_id,
        "template_id": template,
        "user_id": "u1",
        "order_id": str(order_id),
        "amount_cents": 25_000,
        "discount_cents": 1_000,
        "amount_due_cents": 24_000,
    }


async def test_a_percent_off_coupon_takes_its_share_up_to_its_cap(
    client: Client, token: Token, life: Lifecycle, db: asyncpg.Connection
) -> None:
    template = await create_template(
        db,
        kind="percent_off",
        amount_off_cents=None,
        percent_off=15,
        max_discount_cents=2_000,
        threshold_cents=5_000,
    )
    small, large = (
        await new_order(life, amount_cents=10_000),
        await new_order(life, amount_cents=50_000),
    )
    _, body = await redeem(client, token, small, await issue_coupon(db, template, "u1"))
    assert (body["discount_cents"], body["amount_due_cents"]) == (1_500, 8_500)
    _, body = await redeem(client, token, large, await issue_coupon(db, template, "u1"))
    assert (body["discount_cents"], body["amount_due_cents"]) == (2_000, 48_000)


async def test_locking_the_same_coupon_to_the_same_order_again_answers_the_same(
    client: Client, token: Token, life: Lifecycle, db: asyncpg.Connection
) -> None:
    coupon_id = await issue_coupon(db, await create_template(db), "u1")
    order_id = await new_order(life)
    first = await redeem(client, token, order_id, coupon_id)
    resp = await client.post(
        f"/api/orders/{order_id}/coupon",
        json={"coupon_id": coupon_id},
        headers={**token("u1"), "Idempotency-Key": "retry-1"},
    )
    assert (resp.status, await resp.json()) == first
    assert first[0] == 200
    assert len(await outbox_events(db)) == 1


async def test_two_orders_racing_for_one_coupon_lock_it_once(
    client: Client, token: Token, life: Lifecycle, db: asyncpg.Connection
) -> None:
    coupon_id = await issue_coupon(db, await create_template(db), "u1")
    orders = [await new_order(life) for _ in range(2)]
    answers = await asyncio.gather(*(redeem(client, token, o, coupon_id) for o in orders))
    assert sorted(status for status, _ in answers) == [200, 409]
    [(_, won)] = [a for a in answers if a[0] == 200]
    [(_, lost)] = [a for a in answers if a[0] == 409]
    assert lost["error"] == "coupon_not_available"
    assert await state_of(db, coupon_id) == ("locked", uuid.UUID(won["order_id"]))
    assert len(await outbox_events(db, COUPON_LOCKED)) == 1


async def test_many_orders_racing_for_one_coupon_lock_it_once(
    client: Client, token: Token, life: Lifecycle, db: asyncpg.Connection
) -> None:
    coupon_id = await issue_coupon(db, await create_template(db), "u1")
    orders = [await new_order(life) for _ in range(12)]
    answers = await asyncio.gather(*(redeem(client, token, o, coupon_id) for o in orders))
    assert sorted(status for status, _ in answers) == [200] + [409] * 11
    assert {b["error"] for s, b in answers if s == 409} == {"coupon_not_available"}
    assert len(await outbox_events(db, COUPON_LOCKED)) == 1


async def test_one_order_with_two_coupons_at_once_takes_one(
    client: Client, token: Token, life: Lifecycle, db: asyncpg.Connection
) -> None:
    template = await create_template(db)
    coupons = [await issue_coupon(db, template, "u1") for _ in range(2)]
    order_id = await new_order(life)
    answers = await asyncio.gather(*(redeem(client, token, order_id, c) for c in coupons))
    assert sorted(status for status, _ in answers) == [200, 409]
    [(_, lost)] = [a for a in answers if a[0] == 409]
    assert lost["error"] == "order_has_coupon"
    states = sorted([(await state_of(db, c))[0] for c in coupons])
    assert states == ["available", "locked"]
    assert (
        await db.fetchval("SELECT count(*) FROM coupon.coupons WHERE order_id = $1", order_id) == 1
    )


async def _refused(
    client: Client,
    token: Token,
    db: asyncpg.Connection,
    order_id: uuid.UUID | str,
    coupon_id: str,
    status: int,
    error: str,
    user: str = "u1",
) -> None:
    before = await db.fetch("SELECT id, state, order_id FROM coupon.coupons ORDER BY id")
    outbox = len(await outbox_events(db))
    got = await redeem(client, token, order_id, coupon_id, user)
    assert (got[0], got[1]["error"]) == (status, error), got
    assert await db.fetch("SELECT id, state, order_id FROM coupon.coupons ORDER BY id") == before
    assert len(await outbox_events(db)) == outbox


async def test_unknown_or_someone_elses_orders_and_coupons_are_not_found(
    client: Client, token: Token, life: Lifecycle, db: asyncpg.Connection
) -> None:
    template = await create_template(db)
    mine, theirs = await issue_coupon(db, template, "u1"), await issue_coupon(db, template, "u2")
    order_id, their_order = await new_order(life), await new_order(life, "u2")
    await _refused(client, token, db, uuid.uuid4(), mine, 404, "not_found")
    await _refused(client, token, db, their_order, mine, 404, "not_found")
    await _refused(client, token, db, "not-an-order", mine, 404, "not_found")
    await _refused(client, token, db, order_id, theirs, 404, "not_found")
    await _refused(client, token, db, order_id, f"{template}-{'0' * 32}", 404, "not_found")
    await _refused(client, token, db, order_id, "no-such-coupon", 404, "not_found")


async def test_a_paid_order_takes_no_coupon(
    client: Client, token: Token, life: Lifecycle, db: asyncpg.Connection
) -> None:
    coupon_id = await issue_coupon(db, await create_template(db), "u1")
    order_id = await new_order(life)
    await life.deliver(order_event(ORDER_PAID, order_id, "u1"))
    await _refused(client, token, db, order_id, coupon_id, 409, "order_not_pending")


async def test_coupons_that_are_not_available_are_refused(
    client: Client, token: Token, life: Lifecycle, db: asyncpg.Connection
) -> None:
    template = await create_template(db)
    order_id = await new_order(life)
    for state in ("expired", "revoked"):
        coupon_id = await issue_coupon(db, template, "u1", state=state)
        await _refused(client, token, db, order_id, coupon_id, 409, "coupon_not_available")
    locked = await issue_coupon(db, template, "u1")
    assert (await redeem(client, token, await new_order(life), locked))[0] == 200
    await _refused(client, token, db, order_id, locked, 409, "coupon_not_available")


async def test_coupons_outside_their_validity_are_refused(
    client: Client, token: Token, life: Lifecycle, db: asyncpg.Connection
) -> None:
    template = await create_template(db)
    now = datetime.now(UTC)
    later = await issue_coupon(
        db, template, "u1", valid_from=now + timedelta(hours=1), valid_until=now + timedelta(days=1)
    )
    # Past its end but not swept yet: the sweeper runs every 30 s.
    over = await issue_coupon(
        db,
        template,
        "u1",
        valid_from=now - timedelta(days=1),
        valid_until=now - timedelta(seconds=1),
    )
    order_id = await new_order(life)
    await _refused(client, token, db, order_id, later, 409, "coupon_not_valid_yet")
    await _refused(client, token, db, order_id, over, 409, "coupon_expired")


async def test_coupons_that_do_not_apply_to_the_order_are_refused(
    client: Client, token: Token, life: Lifecycle, db: asyncpg.Connection
) -> None:
    other_sale = await create_template(db, scope="activities", scope_ids=["99"])
    other_sku = await create_template(db, scope="skus", scope_ids=["sku-2"])
    not_on_flash_sales = await create_template(db, usable_on_flash_sales=False)
    order_id = await new_order(life, sale_id=1, sku="sku-1", amount_cents=20_000)
    for template in (other_sale, other_sku):
        coupon_id = await issue_coupon(db, template, "u1")
        await _refused(client, token, db, order_id, coupon_id, 409, "out_of_scope")
    coupon_id = await issue_coupon(db, not_on_flash_sales, "u1")
    await _refused(client, token, db, order_id, coupon_id, 409, "flash_sale_price")
    small = await new_order(life, amount_cents=9_999)
    coupon_id = await issue_coupon(db, await create_template(db), "u1")
    await _refused(client, token, db, small, coupon_id, 409, "below_threshold")
    # The same kind of coupon applies where its scope says.
    group_order = await new_order(life, source="groupbuy", sale_id=99)
    campaign = await create_template(
        db, scope="campaigns", scope_ids=["99"], usable_on_flash_sales=False
    )
    assert (await redeem(client, token, group_order, await issue_coupon(db, campaign, "u1")))[
        0
    ] == 200


async def test_bad_requests_are_refused_and_change_nothing(
    client: Client, token: Token, life: Lifecycle, db: asyncpg.Connection
) -> None:
    coupon_id = await issue_coupon(db, await create_template(db), "u1")
    order_id = await new_order(life)
    path = f"/api/orders/{order_id}/coupon"
    bodies: list[Any] = [
        {},
        {"coupon_id": coupon_id, "extra": 1},
        {"coupon_id": 7},
        {"coupon_id": ""},
        {"coupon_id": "1-\x00"},
        {"coupon_id": "x" * 65},
    ]
    for body in bodies:
        resp = await client.post(path, json=body, headers=token("u1"))
        assert resp.status == 400, body
        assert (await resp.json())["error"] == "invalid_request"
    resp = await client.post(path, data=b"[1]", headers=token("u1"))
    assert resp.status == 400
    resp = await client.post(
        path, json={"coupon_id": coupon_id}, headers={**token("u1"), "Idempotency-Key": "has space"}
    )
    assert (resp.status, (await resp.json())["error"]) == (400, "invalid_idempotency_key")
    resp = await client.post(path, json={"coupon_id": coupon_id})
    assert resp.status == 401
    assert await state_of(db, coupon_id) == ("available", None)
    assert await outbox_events(db) == []
