"""下单返券 on the real Redis and PostgreSQL: grant.lua, and the orders consumer's grants
exactly once per (paid order, rule)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from redis.asyncio import Redis

from services.common.events import ORDER_CREATED, ORDER_PAID
from services.coupon.grant_store import GrantStore
from services.coupon.keys import template_keys
from services.coupon.lifecycle_domain import GrantOutcome
from tests.coupon_helpers import Lifecycle, create_template, order_event


@pytest.fixture
def life(pool: asyncpg.Pool, redis: Redis) -> Lifecycle:
    return Lifecycle(pool, redis)


async def create_rule(
    db: asyncpg.Connection,
    template_id: int,
    trigger: str = "any",
    sale_id: int | None = None,
    active: bool = True,
) -> int:
    rule_id: int = await db.fetchval(
        "INSERT INTO coupon.grant_rules (name, trigger, sale_id, template_id, active,"
        " created_by) VALUES ('after every order', $1, $2, $3, $4, 'merchant:1') RETURNING id",
        trigger,
        sale_id,
        template_id,
        active,
    )
    return rule_id


async def paid(life: Lifecycle, user: str, **kw: object) -> uuid.UUID:
    order_id = uuid.uuid4()
    created = order_event(ORDER_CREATED, order_id, user, **kw)  # type: ignore[arg-type]
    await life.deliver(created, order_event(ORDER_PAID, order_id, user, **kw))  # type: ignore[arg-type]
    return order_id


# --- grant.lua ---------------------------------------------------------------------


async def test_a_grant_takes_one_coupon_and_writes_its_outbox_entry(
    redis: Redis, db: asyncpg.Connection
) -> None:
    template = await create_template(db, redis, quantity=5, valid_days=3)
    store = GrantStore(redis)
    order = str(uuid.uuid4())
    decision = await store.grant(template, order, 7, "u1", f"{template}-{'a' * 32}")
    keys = template_keys(template)
    assert decision.outcome is GrantOutcome.GRANTED and not decision.duplicate
    assert decision.coupon_id == f"{template}-{'a' * 32}"
    assert decision.until_ms == decision.from_ms + 3 * 86_400_000 == decision.at_ms + 3 * 86_400_000  # type: ignore[operator]
    assert await redis.get(keys.stock) == b"4"
    [(_, fields)] = await redis.xrange(keys.outbox)
    assert fields == {
        b"type": b"coupon.granted",
        b"cid": f"{template}-{'a' * 32}".encode(),
        b"user": b"u1",
        b"from": str(decision.from_ms).encode(),
        b"until": str(decision.until_ms).encode(),
        b"at": str(decision.at_ms).encode(),
        b"order": order.encode(),
        b"rule": b"7",
    }


async def test_a_repeated_grant_answers_the_first_coupon_and_takes_nothing(
    redis: Redis, db: asyncpg.Connection
) -> None:
    template = await create_template(db, redis, quantity=5)
    store = GrantStore(redis)
    order = str(uuid.uuid4())
    first = await store.grant(template, order, 1, "u1", f"{template}-{'a' * 32}")
    again = await store.grant(template, order, 1, "u1", f"{template}-{'b' * 32}")
    assert again.outcome is GrantOutcome.GRANTED and again.duplicate
    assert again.coupon_id == first.coupon_id
    keys = template_keys(template)
    assert await redis.get(keys.stock) == b"4"
    assert await redis.xlen(keys.outbox) == 1


async def test_concurrent_grants_of_one_pair_grant_once(
    redis: Redis, db: asyncpg.Connection
) -> None:
    template = await create_template(db, redis, quantity=50)
    store = GrantStore(redis)
    order = str(uuid.uuid4())
    decisions = await asyncio.gather(
        *(store.grant(template, order, 1, "u1", f"{template}-{i:032x}") for i in range(20))
    )
    assert sum(not d.duplicate for d in decisions) == 1
    assert len({d.coupon_id for d in decisions}) == 1
    assert await redis.get(template_keys(template).stock) == b"49"


async def test_grants_beyond_the_quantity_are_exhausted_and_stay_exhausted(
    redis: Redis, db: asyncpg.Connection
) -> None:
    template = await create_template(db, redis, quantity=2)
    store = GrantStore(redis)
    orders = [str(uuid.uuid4()) for _ in range(3)]
    outcomes = [
        (await store.grant(template, o, 1, "u", f"{template}-{i:032x}")).outcome
        for i, o in enumerate(orders)
    ]
    assert outcomes == [GrantOutcome.GRANTED, GrantOutcome.GRANTED, GrantOutcome.EXHAUSTED]
    keys = template_keys(template)
    await redis.set(keys.stock, 5)  # a restock later does not reach back to that order
    again = await store.grant(template, orders[2], 1, "u", f"{template}-{'f' * 32}")
    assert again.outcome is GrantOutcome.EXHAUSTED and again.duplicate
    assert await redis.get(keys.stock) == b"5"
    assert await redis.xlen(keys.outbox) == 2


async def test_an_ended_template_or_a_fixed_validity_that_is_over_grants_nothing(
    redis: Redis, db: asyncpg.Connection
) -> None:
    now = datetime.now(UTC)
    ended = await create_template(db, redis)
    await redis.hset(template_keys(ended).meta, "closed", "ended")
    over = await create_template(
        db,
        redis,
        validity="fixed",
        valid_days=None,
        valid_from=now - timedelta(days=2),
        valid_until=now - timedelta(seconds=1),
    )
    store = GrantStore(redis)
    for template in (ended, over):
        decision = await store.grant(template, str(uuid.uuid4()), 1, "u", f"{template}-{'0' * 32}")
        assert decision.outcome is GrantOutcome.EXHAUSTED
        assert await redis.get(template_keys(template).stock) == b"100"
        assert await redis.xlen(template_keys(template).outbox) == 0


async def test_a_fixed_validity_grant_carries_the_templates_dates(
    redis: Redis, db: asyncpg.Connection
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    valid_from, valid_until = now - timedelta(days=1), now + timedelta(days=10)
    template = await create_template(
        db, redis, validity="fixed", valid_days=None, valid_from=valid_from, valid_until=valid_until
    )
    decision = await GrantStore(redis).grant(
        template, str(uuid.uuid4()), 1, "u", f"{template}-{'0' * 32}"
    )
    assert decision.from_ms == int(valid_from.timestamp() * 1000)
    assert decision.until_ms == int(valid_until.timestamp() * 1000)


async def test_a_template_missing_from_redis_is_not_decided(
    redis: Redis, db: asyncpg.Connection
) -> None:
    template = await create_template(db)  # not warmed
    decision = await GrantStore(redis).grant(
        template, str(uuid.uuid4()), 1, "u", f"{template}-{'0' * 32}"
    )
    assert decision.outcome is GrantOutcome.UNKNOWN
    assert await redis.hlen(template_keys(template).grants) == 0


# --- the orders consumer's grants ------------------------------------------------------


async def grant_rows(db: asyncpg.Connection, order_id: uuid.UUID) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT rule_id, outcome, coupon_id FROM coupon.grants WHERE order_id = $1"
        " ORDER BY rule_id",
        order_id,
    )


async def granted_coupons(db: asyncpg.Connection, order_id: uuid.UUID) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT id, template_id, user_id, origin, grant_rule_id, state, valid_from, valid_until,"
        " issued_at FROM coupon.coupons WHERE grant_order_id = $1 ORDER BY grant_rule_id",
        order_id,
    )


async def test_a_paid_order_gets_one_coupon_per_matching_active_rule(
    life: Lifecycle, redis: Redis, db: asyncpg.Connection
) -> None:
    template = await create_template(db, redis, valid_days=7)
    every = await create_rule(db, template)
    this_sale = await create_rule(db, template, "activity", 42)
    await create_rule(db, template, "activity", 43)  # another sale
    await create_rule(db, template, "campaign", 42)  # a campaign with the same id
    await create_rule(db, template, active=False)  # paused
    order_id = await paid(life, "u1", sale_id=42)
    rows = await grant_rows(db, order_id)
    assert [(r["rule_id"], r["outcome"]) for r in rows] == [
        (every, "granted"),
        (this_sale, "granted"),
    ]
    coupons = await granted_coupons(db, order_id)
    assert [c["id"] for c in coupons] == [r["coupon_id"] for r in rows]
    for coupon in coupons:
        assert coupon["template_id"] == template and coupon["user_id"] == "u1"
        assert coupon["origin"] == "grant" and coupon["state"] == "available"
        assert coupon["valid_until"] - coupon["valid_from"] == timedelta(days=7)
        assert coupon["valid_from"] == coupon["issued_at"]
    assert await redis.get(template_keys(template).stock) == b"98"
    assert life.count("coupon_grants_total", result="granted") == 2


async def test_group_buy_orders_match_campaign_rules(
    life: Lifecycle, redis: Redis, db: asyncpg.Connection
) -> None:
    template = await create_template(db, redis)
    campaign_rule = await create_rule(db, template, "campaign", 9)
    await create_rule(db, template, "activity", 9)
    order_id = await paid(life, "u1", source="groupbuy", sale_id=9)
    assert [r["rule_id"] for r in await grant_rows(db, order_id)] == [campaign_rule]


async def test_every_order_paid_event_delivered_twice_grants_once(
    life: Lifecycle, redis: Redis, db: asyncpg.Connection
) -> None:
    template = await create_template(db, redis, quantity=100)
    await create_rule(db, template)
    await create_rule(db, template, "activity", 1)
    orders = [uuid.uuid4() for _ in range(10)]
    created = [order_event(ORDER_CREATED, o, f"u{i}") for i, o in enumerate(orders)]
    payments = [order_event(ORDER_PAID, o, f"u{i}") for i, o in enumerate(orders)]
    await life.deliver(*created, *payments)
    await life.deliver(*payments)  # the whole batch redelivered
    await asyncio.gather(*(life.deliver(p) for p in payments))  # and once more, concurrently
    assert await db.fetchval("SELECT count(*) FROM coupon.grants") == 20
    assert await db.fetchval("SELECT count(*) FROM coupon.coupons WHERE origin = 'grant'") == 20
    assert (
        await db.fetchval(
            "SELECT count(DISTINCT (grant_order_id, grant_rule_id)) FROM coupon.coupons"
        )
        == 20
    )
    assert await redis.get(template_keys(template).stock) == b"80"
    assert await redis.xlen(template_keys(template).outbox) == 20
    assert life.count("coupon_grants_total", result="granted") == 20
    assert life.count("coupon_grants_total", result="duplicate") == 40


async def test_a_template_that_ran_out_records_exhausted_and_does_not_retry(
    life: Lifecycle, redis: Redis, db: asyncpg.Connection
) -> None:
    template = await create_template(db, redis, quantity=1)
    rule = await create_rule(db, template)
    first = await paid(life, "u1")
    second = await paid(life, "u2")
    assert [r["outcome"] for r in await grant_rows(db, first)] == ["granted"]
    [row] = await grant_rows(db, second)
    assert (row["rule_id"], row["outcome"], row["coupon_id"]) == (rule, "exhausted", None)
    assert await granted_coupons(db, second) == []
    await redis.set(template_keys(template).stock, 10)  # restocked afterwards
    await life.deliver(order_event(ORDER_PAID, second, "u2"))
    assert [r["outcome"] for r in await grant_rows(db, second)] == ["exhausted"]
    assert await redis.get(template_keys(template).stock) == b"10"
    assert life.count("coupon_grants_total", result="exhausted") == 1
    assert life.count("coupon_grants_total", result="duplicate") == 1


async def test_a_grant_decided_in_redis_but_not_recorded_is_recorded_on_redelivery(
    life: Lifecycle, redis: Redis, db: asyncpg.Connection
) -> None:
    """The consumer died between grant.lua and its commit: the redelivery records the
    grant Redis decided, with the same coupon, and takes no second coupon."""
    template = await create_template(db, redis, quantity=10)
    rule = await create_rule(db, template)
    order_id = uuid.uuid4()
    await life.deliver(order_event(ORDER_CREATED, order_id, "u1"))
    first = await GrantStore(redis).grant(
        template, str(order_id), rule, "u1", f"{template}-{'c' * 32}"
    )
    await life.deliver(order_event(ORDER_PAID, order_id, "u1"))
    [row] = await grant_rows(db, order_id)
    assert (row["outcome"], row["coupon_id"]) == ("granted", first.coupon_id)
    assert await redis.get(template_keys(template).stock) == b"9"
    assert await redis.xlen(template_keys(template).outbox) == 1


async def test_a_rule_whose_template_is_not_in_redis_fails_the_batch(
    life: Lifecycle, db: asyncpg.Connection
) -> None:
    from services.coupon.lifecycle import TemplateNotInRedis

    template = await create_template(db)
    await create_rule(db, template)
    order_id = uuid.uuid4()
    with pytest.raises(TemplateNotInRedis):
        await life.deliver(order_event(ORDER_PAID, order_id, "u1"))
    assert await grant_rows(db, order_id) == []
