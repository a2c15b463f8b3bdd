"""What orders do to coupons, on the real PostgreSQL and Redis: the read model, a locked
coupon used or released, granted coupons revoked when their order is refunded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from redis.asyncio import Redis

from services.common.events import (
    COUPON_RELEASED,
    COUPON_REVOKED,
    COUPON_USED,
    ORDER_CANCELLED,
    ORDER_CREATED,
    ORDER_PAID,
    event_id_for,
)
from services.coupon.redemption import Redemption
from tests.coupon_helpers import (
    Lifecycle,
    create_template,
    issue_coupon,
    order_event,
    outbox_events,
)


@pytest.fixture
def life(pool: asyncpg.Pool, redis: Redis) -> Lifecycle:
    return Lifecycle(pool, redis)


async def coupon_row(db: asyncpg.Connection, coupon_id: str) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM coupon.coupons WHERE id = $1", coupon_id)
    assert row is not None
    return row


async def locked_order(
    life: Lifecycle, db: asyncpg.Connection, user: str = "u1", **kw: object
) -> tuple[uuid.UUID, str]:
    """A pending order of 200.00 with a 10.00 coupon locked to it."""
    template = await create_template(db)
    coupon_id = await issue_coupon(db, template, user, **kw)  # type: ignore[arg-type]
    order_id = uuid.uuid4()
    await life.deliver(order_event(ORDER_CREATED, order_id, user))
    await Redemption(life.announcer, life.metrics).lock(order_id, coupon_id, user)
    return order_id, coupon_id


async def test_order_created_fills_the_read_model(life: Lifecycle, db: asyncpg.Connection) -> None:
    seckill, group = uuid.uuid4(), uuid.uuid4()
    await life.deliver(
        order_event(ORDER_CREATED, seckill, "u1", amount_cents=990, sale_id=5, sku="tea"),
        order_event(ORDER_CREATED, group, "u2", source="groupbuy", sale_id=6),
        order_event(ORDER_CREATED, seckill, "u1", amount_cents=990, sale_id=5, sku="tea"),
    )
    rows = {
        r["id"]: r
        for r in await db.fetch(
            "SELECT id, user_id, source, sale_id, sku, amount_cents, state, pay_before"
            " FROM coupon.orders"
        )
    }
    assert set(rows) == {seckill, group}
    assert (
        rows[seckill]["user_id"],
        rows[seckill]["source"],
        rows[seckill]["sale_id"],
        rows[seckill]["sku"],
        rows[seckill]["amount_cents"],
        rows[seckill]["state"],
    ) == ("u1", "seckill", 5, "tea", 990, "pending_payment")
    assert rows[seckill]["pay_before"] > datetime.now(UTC)
    assert (rows[group]["source"], rows[group]["sale_id"]) == ("groupbuy", 6)


async def test_paid_and_cancelled_move_the_read_model_forward_only(
    life: Lifecycle, db: asyncpg.Connection
) -> None:
    order_id = uuid.uuid4()
    await life.deliver(order_event(ORDER_CREATED, order_id, "u1"))
    await life.deliver(order_event(ORDER_PAID, order_id, "u1"))
    state = "SELECT state FROM coupon.orders WHERE id = $1"
    assert await db.fetchval(state, order_id) == "paid"
    await life.deliver(order_event(ORDER_CANCELLED, order_id, "u1"))  # refunded
    await life.deliver(order_event(ORDER_PAID, order_id, "u1"))  # a late redelivery
    await life.deliver(order_event(ORDER_CREATED, order_id, "u1"))
    assert await db.fetchval(state, order_id) == "cancelled"


async def test_the_price_of_an_order_paid_with_a_coupon_is_the_amount_due_plus_the_discount(
    life: Lifecycle, db: asyncpg.Connection
) -> None:
    order_id = uuid.uuid4()
    await life.deliver(
        order_event(
            ORDER_PAID,
            order_id,
            "u1",
            amount_cents=19_000,
            coupon_id="1-" + "0" * 32,
            discount_cents=1_000,
        )
    )
    assert (
        await db.fetchval("SELECT amount_cents FROM coupon.orders WHERE id = $1", order_id)
        == 20_000
    )


async def test_paid_with_its_coupon_uses_the_coupon(
    life: Lifecycle, db: asyncpg.Connection
) -> None:
    order_id, coupon_id = await locked_order(life, db)
    paid = order_event(
        ORDER_PAID, order_id, "u1", amount_cents=19_000, coupon_id=coupon_id, discount_cents=1_000
    )
    await life.deliver(paid)
    await life.deliver(paid)
    row = await coupon_row(db, coupon_id)
    assert (row["state"], row["order_id"], row["discount_cents"]) == ("used", order_id, 1_000)
    assert row["used_at"] is not None
    used = await outbox_events(db, COUPON_USED)
    assert [e.data for e in used] == [
        {
            "coupon_id": coupon_id,
            "user_id": "u1",
            "order_id": str(order_id),
            "discount_cents": 1_000,
        }
    ]
    assert used[0].id == event_id_for(COUPON_USED, coupon_id) and used[0].key == "u1"
    assert life.count("coupon_redemptions_total", result="used") == 1


async def test_paid_without_its_coupon_releases_the_coupon(
    life: Lifecycle, db: asyncpg.Connection
) -> None:
    order_id, coupon_id = await locked_order(life, db)
    paid = order_event(ORDER_PAID, order_id, "u1", amount_cents=20_000)  # full price
    await life.deliver(paid)
    await life.deliver(paid)
    row = await coupon_row(db, coupon_id)
    assert (row["state"], row["order_id"], row["discount_cents"]) == ("available", None, None)
    released = await outbox_events(db, COUPON_RELEASED)
    assert [e.data for e in released] == [
        {"coupon_id": coupon_id, "user_id": "u1", "order_id": str(order_id), "state": "available"}
    ]
    assert released[0].id == event_id_for(COUPON_RELEASED, f"{coupon_id}:{order_id}")
    assert await outbox_events(db, COUPON_USED) == []


async def test_a_cancelled_order_releases_its_coupon_exactly_once(
    life: Lifecycle, db: asyncpg.Connection
) -> None:
    order_id, coupon_id = await locked_order(life, db)
    cancelled = order_event(
        ORDER_CANCELLED, order_id, "u1", coupon_id=coupon_id, discount_cents=1_000
    )
    await life.deliver(cancelled)
    await life.deliver(cancelled)
    await life.deliver(cancelled)
    row = await coupon_row(db, coupon_id)
    assert (row["state"], row["order_id"]) == ("available", None)
    assert len(await outbox_events(db, COUPON_RELEASED)) == 1
    assert life.count("coupon_redemptions_total", result="released") == 1


async def test_a_coupon_whose_validity_ended_while_locked_is_released_as_expired(
    life: Lifecycle, db: asyncpg.Connection
) -> None:
    order_id, coupon_id = await locked_order(life, db)
    await db.execute(
        "UPDATE coupon.coupons SET valid_until = now() - interval '1 second' WHERE id = $1",
        coupon_id,
    )
    await life.deliver(order_event(ORDER_CANCELLED, order_id, "u1"))
    row = await coupon_row(db, coupon_id)
    assert (row["state"], row["order_id"]) == ("expired", None)
    assert row["expired_at"] is not None
    [released] = await outbox_events(db, COUPON_RELEASED)
    assert released.data["state"] == "expired"


async def test_a_released_coupon_can_be_locked_to_another_order(
    life: Lifecycle, db: asyncpg.Connection
) -> None:
    order_id, coupon_id = await locked_order(life, db)
    await life.deliver(order_event(ORDER_CANCELLED, order_id, "u1"))
    other = uuid.uuid4()
    await life.deliver(order_event(ORDER_CREATED, other, "u1"))
    lock = await Redemption(life.announcer, life.metrics).lock(other, coupon_id, "u1")
    assert lock.order_id == other
    assert (await coupon_row(db, coupon_id))["order_id"] == other


async def test_a_refunded_order_revokes_the_unused_coupons_it_granted(
    life: Lifecycle, redis: Redis, db: asyncpg.Connection
) -> None:
    template = await create_template(db, redis)
    for name in ("a", "b"):
        await db.execute(
            "INSERT INTO coupon.grant_rules (name, trigger, template_id, created_by)"
            " VALUES ($1, 'any', $2, 'merchant:1')",
            name,
            template,
        )
    order_id = uuid.uuid4()
    await life.deliver(
        order_event(ORDER_CREATED, order_id, "u1"), order_event(ORDER_PAID, order_id, "u1")
    )
    unused, spent = [
        r["coupon_id"]
        for r in await db.fetch(
            "SELECT coupon_id FROM coupon.grants WHERE order_id = $1 ORDER BY rule_id", order_id
        )
    ]
    # One of them was spent on another order already.
    other = uuid.uuid4()
    await life.deliver(order_event(ORDER_CREATED, other, "u1"))
    await Redemption(life.announcer, life.metrics).lock(other, spent, "u1")
    await life.deliver(
        order_event(
            ORDER_PAID, other, "u1", amount_cents=19_000, coupon_id=spent, discount_cents=1_000
        )
    )
    refund = order_event(ORDER_CANCELLED, order_id, "u1")
    await life.deliver(refund)
    await life.deliver(refund)
    assert (await coupon_row(db, unused))["state"] == "revoked"
    assert (await coupon_row(db, spent))["state"] == "used"
    grants = {
        r["coupon_id"]: r["revoked_at"]
        for r in await db.fetch(
            "SELECT coupon_id, revoked_at FROM coupon.grants WHERE order_id = $1", order_id
        )
    }
    assert grants[unused] is not None and grants[spent] is None
    revoked = await outbox_events(db, COUPON_REVOKED)
    assert [e.data for e in revoked] == [
        {"coupon_id": unused, "user_id": "u1", "order_id": str(order_id)}
    ]
    assert life.count("coupon_redemptions_total", result="revoked") == 1
    assert life.count("coupon_refunded_grants_kept_total") == 1


async def test_a_cancelled_unpaid_order_revokes_nothing(
    life: Lifecycle, redis: Redis, db: asyncpg.Connection
) -> None:
    template = await create_template(db, redis)
    claimed = await issue_coupon(db, template, "u1")
    order_id = uuid.uuid4()
    await life.deliver(order_event(ORDER_CREATED, order_id, "u1"))
    await life.deliver(order_event(ORDER_CANCELLED, order_id, "u1"))
    assert (await coupon_row(db, claimed))["state"] == "available"
    assert await outbox_events(db) == []


async def test_events_of_other_sources_and_types_are_skipped(
    life: Lifecycle, db: asyncpg.Connection
) -> None:
    from services.common.events import ORDER_PAYMENT_DUE, Envelope

    event = order_event(ORDER_CREATED, uuid.uuid4(), "u1")
    bargain = Envelope(
        id="x", type=ORDER_CREATED, key=event.key, data={**event.data, "source": "bargain"}
    )
    due = Envelope(id="y", type=ORDER_PAYMENT_DUE, key=event.key, data=event.data)
    await life.deliver(bargain, due)
    assert await db.fetchval("SELECT count(*) FROM coupon.orders") == 0


async def test_an_unreadable_order_event_is_a_permanent_error(life: Lifecycle) -> None:
    from services.common.kafka import PermanentError

    event = order_event(ORDER_PAID, uuid.uuid4(), "u1")
    event.data["order_id"] = "not-a-uuid"
    with pytest.raises(PermanentError):
        await life.deliver(event)


async def test_a_free_order_is_not_kept_in_the_read_model(
    life: Lifecycle, db: asyncpg.Connection
) -> None:
    order_id = uuid.uuid4()
    await life.deliver(
        order_event(ORDER_CREATED, order_id, "u1", amount_cents=0),
        order_event(ORDER_PAID, order_id, "u1", amount_cents=0),
    )
    assert await db.fetchval("SELECT count(*) FROM coupon.orders") == 0


async def test_a_refund_revokes_a_granted_coupon_not_recorded_yet(
    life: Lifecycle, redis: Redis, db: asyncpg.Connection
) -> None:
    """The consumer died between grant.lua and its commit; the redelivered order.paid
    recorded the grant, and the refund comes before the record consumer saw the coupon:
    the coupon is recorded revoked, and its coupon.granted recorded later changes nothing."""
    from services.coupon.grant_store import GrantStore

    template = await create_template(db, redis, valid_days=3)
    rule: int = await db.fetchval(
        "INSERT INTO coupon.grant_rules (name, trigger, template_id, created_by)"
        " VALUES ('all', 'any', $1, 'merchant:1') RETURNING id",
        template,
    )
    order_id = uuid.uuid4()
    decided = await GrantStore(redis).grant(
        template, str(order_id), rule, "u1", f"{template}-{'d' * 32}"
    )
    await life.deliver(
        order_event(ORDER_CREATED, order_id, "u1"), order_event(ORDER_PAID, order_id, "u1")
    )
    assert await db.fetchval("SELECT count(*) FROM coupon.coupons") == 0
    await life.deliver(order_event(ORDER_CANCELLED, order_id, "u1"))
    await life.deliver(order_event(ORDER_CANCELLED, order_id, "u1"))
    row = await coupon_row(db, f"{template}-{'d' * 32}")
    assert (row["state"], row["origin"], row["grant_order_id"], row["grant_rule_id"]) == (
        "revoked",
        "grant",
        order_id,
        rule,
    )
    assert row["valid_until"] - row["valid_from"] == timedelta(days=3)
    [revoked] = await outbox_events(db, COUPON_REVOKED)
    assert revoked.data["coupon_id"] == decided.coupon_id
    assert await db.fetchval("SELECT revoked_at FROM coupon.grants WHERE order_id = $1", order_id)
    # The record consumer's insert of coupon.granted, later: the same id, nothing changes.
    await db.execute(
        "INSERT INTO coupon.coupons (id, template_id, user_id, origin, grant_order_id,"
        " grant_rule_id, valid_from, valid_until, issued_at) VALUES ($1, $2, 'u1', 'grant',"
        " $3, $4, now(), now() + interval '3 days', now()) ON CONFLICT (id) DO NOTHING",
        decided.coupon_id,
        template,
        order_id,
        rule,
    )
    assert (await coupon_row(db, f"{template}-{'d' * 32}"))["state"] == "revoked"
