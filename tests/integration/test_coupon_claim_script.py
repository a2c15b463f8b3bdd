"""claim.lua and the coupon admin scripts against a real Redis, through CouponStore: the
claim window, the per-user limit before the quantity, the rate limit, Idempotency-Key
records, exhaustion, merged calls decided claim by claim, and the readiness probe."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from services.common.lua import lua_source
from services.common.redis_batch import ScriptBatcher
from services.common.settings import Settings
from services.coupon.domain import Outcome, Template, Validity, new_coupon_id
from services.coupon.keys import RELAY_GROUP, TEMPLATES, template_keys
from services.coupon.store import CouponStore
from services.coupon.terms import Kind, Scope


def make_template(
    template_id: int = 7,
    quantity: int = 3,
    limit: int = 1,
    starts_in: float = -1,
    ends_in: float = 3600,
    **changes: object,
) -> Template:
    now = datetime.now(UTC)
    template = Template(
        id=template_id,
        name="t",
        kind=Kind.NO_THRESHOLD,
        threshold_cents=0,
        amount_off_cents=500,
        percent_off=None,
        max_discount_cents=None,
        validity=Validity.RELATIVE,
        valid_from=None,
        valid_until=None,
        valid_days=2,
        quantity=quantity,
        per_user_limit=limit,
        claimable=True,
        claim_starts_at=now + timedelta(seconds=starts_in),
        claim_ends_at=now + timedelta(seconds=ends_in),
        scope=Scope.ANY,
        scope_ids=(),
        usable_on_flash_sales=False,
    )
    return replace(template, **changes)  # type: ignore[arg-type]


@pytest.fixture
async def store(redis: Redis, settings: Settings) -> AsyncIterator[CouponStore]:
    batcher = ScriptBatcher(redis, 64, 2.0)
    batcher.start()
    yield CouponStore(redis, batcher, rate_limit_per_second=0, idempotency_key_retention_seconds=60)
    await batcher.stop()


async def claim(store: CouponStore, template: Template, user: str, key: str | None = None) -> str:
    decision = await store.claim(template.id, user, new_coupon_id(template.id), key)
    return decision.outcome.value


async def left(redis: Redis, template: Template) -> int:
    return int(await redis.get(template_keys(template.id).stock))


async def test_warm_up_loads_the_template_once_and_registers_its_outbox(
    store: CouponStore, redis: Redis
) -> None:
    template = make_template(quantity=5)
    await store.warm_up(template)
    await claim(store, template, "u1")
    await store.warm_up(template)  # again: the quantity is not handed out twice
    assert await left(redis, template) == 4
    assert await redis.smembers(TEMPLATES) == {b"7"}
    groups = await redis.xinfo_groups(template_keys(7).outbox)
    assert [g["name"] for g in groups] == [RELAY_GROUP.encode()]


async def test_claims_are_taken_only_inside_the_claim_window(
    store: CouponStore, redis: Redis
) -> None:
    early = make_template(template_id=1, starts_in=60)
    late = make_template(template_id=2, starts_in=-60, ends_in=-1)
    for template in (early, late):
        await store.warm_up(template)
    assert await claim(store, early, "u1") == "not_started"
    assert await claim(store, late, "u1") == "ended"
    assert (await left(redis, early), await left(redis, late)) == (3, 3)
    assert await redis.xlen(template_keys(1).outbox) == 0


async def test_the_per_user_limit_is_checked_before_the_quantity_is_taken(
    store: CouponStore, redis: Redis
) -> None:
    template = make_template(quantity=3, limit=2)
    await store.warm_up(template)
    assert [await claim(store, template, "u1") for _ in range(3)] == ["ok", "ok", "limit_reached"]
    assert await claim(store, template, "u2") == "ok"
    assert await claim(store, template, "u3") == "exhausted"
    assert await left(redis, template) == 0
    assert await redis.hgetall(template_keys(7).users) == {b"u1": b"2", b"u2": b"1"}
    assert await redis.xlen(template_keys(7).outbox) == 3


async def test_concurrent_claims_merged_into_calls_issue_exactly_the_quantity(
    store: CouponStore, redis: Redis
) -> None:
    template = make_template(quantity=50, limit=1)
    await store.warm_up(template)
    users = [f"u{i}" for i in range(200)]
    outcomes = await asyncio.gather(*(claim(store, template, u) for u in users + users))
    assert outcomes.count("ok") == 50
    assert set(outcomes) == {"ok", "exhausted", "limit_reached"}
    assert await left(redis, template) == 0
    held = await redis.hgetall(template_keys(7).users)
    assert len(held) == 50 and set(held.values()) == {b"1"}
    entries = await redis.xrange(template_keys(7).outbox)
    assert len({fields[b"cid"] for _, fields in entries}) == 50


async def test_the_outbox_entry_carries_the_validity_from_redis_time(
    store: CouponStore, redis: Redis
) -> None:
    relative = make_template(template_id=1)
    until = datetime(2031, 1, 1, tzinfo=UTC)
    fixed = make_template(
        template_id=2,
        validity=Validity.FIXED,
        valid_days=None,
        valid_from=datetime(2030, 1, 1, tzinfo=UTC),
        valid_until=until,
    )
    for template in (relative, fixed):
        await store.warm_up(template)
    redis_now_ms = int((await redis.time())[0]) * 1000
    decision = await store.claim(1, "u1", new_coupon_id(1))
    assert decision.claimed is not None
    assert abs(decision.claimed.valid_from_ms - redis_now_ms) < 2000
    assert decision.claimed.valid_until_ms - decision.claimed.valid_from_ms == 2 * 86_400_000
    ((_, fields),) = await redis.xrange(template_keys(1).outbox)
    assert fields[b"from"] == str(decision.claimed.valid_from_ms).encode()
    assert int(fields[b"at"]) == decision.claimed.valid_from_ms
    decision = await store.claim(2, "u1", new_coupon_id(2))
    assert decision.claimed is not None
    assert decision.claimed.valid_until_ms == int(until.timestamp() * 1000)


async def test_the_rate_limit_refuses_a_user_s_claims_past_it_for_a_second(
    redis: Redis,
) -> None:
    store = CouponStore(redis, None, rate_limit_per_second=2)
    template = make_template(quantity=10, limit=10)
    await store.warm_up(template)
    outcomes = [await claim(store, template, "u1") for _ in range(3)]
    assert outcomes == ["ok", "ok", "rate_limited"]
    assert await claim(store, template, "u2") == "ok"
    assert await left(redis, template) == 7
    assert 0 < await redis.pttl(template_keys(7).rate("u1")) <= 1000


async def test_a_key_replays_the_first_outcome_and_changes_nothing(
    store: CouponStore, redis: Redis
) -> None:
    template = make_template(quantity=1)
    await store.warm_up(template)
    first = await store.claim(7, "u1", new_coupon_id(7), "k")
    again = await store.claim(7, "u1", new_coupon_id(7), "k")
    assert (first.outcome, first.replayed, again.outcome, again.replayed) == (
        Outcome.CLAIMED,
        False,
        Outcome.CLAIMED,
        True,
    )
    assert again.claimed == first.claimed
    refused = await store.claim(7, "u2", new_coupon_id(7), "k")
    assert (refused.outcome, refused.replayed) == (Outcome.EXHAUSTED, False)
    replayed = await store.claim(7, "u2", new_coupon_id(7), "k")
    assert (replayed.outcome, replayed.replayed) == (Outcome.EXHAUSTED, True)
    records = await redis.hgetall(template_keys(7).idempotency)
    assert set(records) == {b"claim k u1", b"claim k u2"}
    assert orjson.loads(records[b"claim k u2"]) == {"o": "exhausted"}
    assert await redis.xlen(template_keys(7).outbox) == 1
    # Records expire with the template: the claim window's end plus the retention.
    ttl_ms = await redis.pttl(template_keys(7).idempotency)
    assert 3_600_000 < ttl_ms <= 3_660_000


async def test_keyed_and_keyless_claims_in_one_round_trip_are_each_decided(
    store: CouponStore, redis: Redis
) -> None:
    template = make_template(quantity=2, limit=1)
    await store.warm_up(template)
    decisions = await asyncio.gather(
        store.claim(7, "u1", new_coupon_id(7), "k"),
        store.claim(7, "u1", new_coupon_id(7), "k"),
        store.claim(7, "u2", new_coupon_id(7)),
        store.claim(7, "u3", new_coupon_id(7)),
    )
    assert [(d.outcome.value, d.replayed) for d in decisions] == [
        ("ok", False),
        ("ok", True),
        ("ok", False),
        ("exhausted", False),
    ]
    assert decisions[0].claimed == decisions[1].claimed


async def test_an_ended_or_only_granted_template_is_not_claimed(
    store: CouponStore, redis: Redis
) -> None:
    granted = make_template(
        template_id=1, claimable=False, claim_starts_at=None, claim_ends_at=None
    )
    await store.warm_up(granted)
    assert await redis.hget(template_keys(1).meta, "starts_ms") == b"0"
    assert await claim(store, granted, "u1") == "not_found"
    ended = make_template(template_id=2)
    await store.warm_up(ended)
    assert (await store.end(2)).outcome == "ok"
    assert (await store.end(2)).outcome == "already"
    assert await claim(store, ended, "u1") == "ended"
    assert await claim(store, make_template(template_id=3), "u1") == "not_found"
    assert await left(redis, ended) == 3


async def test_edit_writes_the_new_terms_only_before_the_claims_open_and_nothing_issued(
    store: CouponStore, redis: Redis
) -> None:
    soon = make_template(template_id=1, starts_in=60)
    await store.warm_up(soon)
    until = datetime(2031, 1, 1, tzinfo=UTC)
    edited = replace(
        soon,
        validity=Validity.FIXED,
        valid_days=None,
        valid_from=datetime(2030, 1, 1, tzinfo=UTC),
        valid_until=until,
        quantity=2,
    )
    assert (await store.edit(edited, 2, 3)).outcome == "ok"
    meta = await redis.hgetall(template_keys(1).meta)
    assert b"days" not in meta and meta[b"until_ms"] == str(int(until.timestamp() * 1000)).encode()
    assert (meta[b"total"], await left(redis, soon)) == (b"2", 2)
    await redis.decr(template_keys(1).stock)  # a grant took one
    answer = await store.edit(edited, 2, 2)
    assert (answer.outcome, answer.values) == ("issued", ("1",))
    live = make_template(template_id=2)
    await store.warm_up(live)
    assert (await store.edit(live, 3, 3)).outcome == "started"
    assert (await store.edit(make_template(template_id=9), 3, 3)).outcome == "not_found"


async def test_set_quantity_keeps_what_was_issued(store: CouponStore, redis: Redis) -> None:
    template = make_template(quantity=5, limit=3)
    await store.warm_up(template)
    for _ in range(2):
        await claim(store, template, "u1")
    answer = await store.set_quantity(7, 1, 5)
    assert (answer.outcome, answer.values) == ("below_reserved", ("2",))
    answer = await store.set_quantity(7, 9, 5)
    assert (answer.outcome, answer.values) == ("ok", ("7", "2"))
    assert await left(redis, template) == 7


async def test_the_probe_runs_the_claim_script_and_writes_nothing(
    store: CouponStore, redis: Redis
) -> None:
    await store.probe()
    await redis.script_flush()
    await store.probe()  # a lost script cache is reloaded
    assert await redis.keys("cp:*") == []


async def test_a_call_whose_keys_and_arguments_disagree_is_refused_before_any_write(
    redis: Redis,
) -> None:
    script = redis.register_script(lua_source("services.coupon", "claim.lua"))
    keys = template_keys(7)
    with pytest.raises(ResponseError, match="do not describe the same claims"):
        await script(
            keys=[keys.meta, keys.stock, keys.users, keys.outbox, keys.idempotency, "rl"],
            args=[0, 0, 2, "u1"],
        )
