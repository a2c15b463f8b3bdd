"""The reserve and release Lua scripts against a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from services.common.redis_batch import ScriptBatcher
from services.common.settings import Settings
from services.seckill import stock as stock_module
from services.seckill.domain import Activity, Outcome, new_reservation_id
from services.seckill.keys import ACTIVITIES, RELAY_GROUP, activity_keys
from services.seckill.stock import StockStore


def make_activity(
    activity_id: int = 7,
    stock: int = 3,
    limit: int = 1,
    starts_in: float = -1,
    ends_in: float = 3600,
) -> Activity:
    now = datetime.now(UTC)
    return Activity(
        id=activity_id,
        sku="sku-7",
        title="t",
        price_cents=500,
        stock=stock,
        starts_at=now + timedelta(seconds=starts_in),
        ends_at=now + timedelta(seconds=ends_in),
        per_user_limit=limit,
        payment_timeout_seconds=60,
    )


@pytest.fixture
async def store(redis: Redis, settings: Settings) -> AsyncIterator[StockStore]:
    batcher = ScriptBatcher(redis, 64, 2.0)
    batcher.start()
    yield StockStore(redis, batcher, rate_limit_per_second=0)
    await batcher.stop()


async def reserve(store: StockStore, activity: Activity, user: str, qty: int = 1) -> Outcome:
    decision = await store.reserve(activity.id, user, qty, new_reservation_id(activity.id))
    return decision.outcome


async def stock_of(redis: Redis, activity: Activity) -> int:
    return int(await redis.get(activity_keys(activity.id).stock))


async def outbox_len(redis: Redis, activity: Activity) -> int:
    return int(await redis.xlen(activity_keys(activity.id).outbox))


async def test_unknown_activity_is_not_found_and_writes_nothing(
    store: StockStore, redis: Redis
) -> None:
    assert await reserve(store, make_activity(activity_id=404), "u1") is Outcome.NOT_FOUND
    assert await redis.dbsize() == 0


async def test_press_before_the_window_is_refused_without_taking_stock(
    store: StockStore, redis: Redis
) -> None:
    activity = make_activity(starts_in=60)
    await store.warm_up(activity)
    assert await reserve(store, activity, "u1") is Outcome.NOT_STARTED
    assert await stock_of(redis, activity) == 3
    assert await outbox_len(redis, activity) == 0


async def test_press_after_the_window_is_refused_without_taking_stock(
    store: StockStore, redis: Redis
) -> None:
    activity = make_activity(starts_in=-60, ends_in=-1)
    await store.warm_up(activity)
    assert await reserve(store, activity, "u1") is Outcome.ENDED
    assert await stock_of(redis, activity) == 3


async def test_reservation_takes_stock_records_it_and_appends_one_outbox_entry(
    store: StockStore, redis: Redis
) -> None:
    activity = make_activity()
    await store.warm_up(activity)
    rid = new_reservation_id(activity.id)
    outcome, reservation, _ = await store.reserve(activity.id, "u1", 1, rid)
    assert outcome is Outcome.RESERVED
    assert reservation is not None and reservation.reservation_id == rid
    keys = activity_keys(activity.id)
    assert await stock_of(redis, activity) == 2
    assert await redis.hget(keys.users, "u1") == b"1"
    record = orjson.loads(await redis.hget(keys.reservations, rid))
    assert record["state"] == "reserved" and record["user"] == "u1" and record["qty"] == 1
    assert int(record["deadline"]) - int(record["at"]) == 60_000
    entries = await redis.xrange(keys.outbox)
    assert len(entries) == 1
    fields = entries[0][1]
    assert fields[b"type"] == b"seckill.reserved"
    assert fields[b"rid"] == rid.encode()
    assert fields[b"price"] == b"500" and fields[b"sku"] == b"sku-7"


async def test_per_user_limit_holds_and_is_checked_before_stock(
    store: StockStore, redis: Redis
) -> None:
    activity = make_activity(stock=5, limit=2)
    await store.warm_up(activity)
    assert await reserve(store, activity, "u1", 2) is Outcome.RESERVED
    assert await reserve(store, activity, "u1") is Outcome.LIMIT_REACHED
    assert await reserve(store, activity, "u2", 3) is Outcome.LIMIT_REACHED
    # The refused presses took nothing: 5 - 2 left, one outbox entry.
    assert await stock_of(redis, activity) == 3
    assert await outbox_len(redis, activity) == 1


async def test_stock_runs_out_exactly_and_never_goes_negative(
    store: StockStore, redis: Redis
) -> None:
    activity = make_activity(stock=3, limit=2)
    await store.warm_up(activity)
    assert await reserve(store, activity, "u1", 2) is Outcome.RESERVED
    # Asking for more than is left is refused whole, not partly served.
    assert await reserve(store, activity, "u2", 2) is Outcome.SOLD_OUT
    assert await reserve(store, activity, "u2", 1) is Outcome.RESERVED
    assert await reserve(store, activity, "u3", 1) is Outcome.SOLD_OUT
    assert await stock_of(redis, activity) == 0
    assert await outbox_len(redis, activity) == 2


async def test_concurrent_presses_never_oversell(store: StockStore, redis: Redis) -> None:
    activity = make_activity(stock=50)
    await store.warm_up(activity)
    outcomes = await asyncio.gather(*(reserve(store, activity, f"u{i}") for i in range(400)))
    assert outcomes.count(Outcome.RESERVED) == 50
    assert outcomes.count(Outcome.SOLD_OUT) == 350
    assert await stock_of(redis, activity) == 0
    assert await outbox_len(redis, activity) == 50


async def test_release_returns_stock_and_allowance_exactly_once(
    store: StockStore, redis: Redis
) -> None:
    activity = make_activity(stock=1)
    await store.warm_up(activity)
    rid = new_reservation_id(activity.id)
    assert (await store.reserve(activity.id, "u1", 1, rid))[0] is Outcome.RESERVED
    assert await reserve(store, activity, "u2") is Outcome.SOLD_OUT

    assert await store.release(activity.id, rid, "timeout") == "ok"
    assert await store.release(activity.id, rid, "timeout") == "already_released"
    assert await stock_of(redis, activity) == 1
    keys = activity_keys(activity.id)
    assert await redis.hget(keys.users, "u1") is None
    record = orjson.loads(await redis.hget(keys.reservations, rid))
    assert record["state"] == "released" and record["reason"] == "timeout"
    types = [f[b"type"] for _, f in await redis.xrange(keys.outbox)]
    assert types == [b"seckill.reserved", b"seckill.released"]
    # The returned item can be bought again, by anyone (u1's allowance came back too).
    assert await reserve(store, activity, "u1") is Outcome.RESERVED
    assert await stock_of(redis, activity) == 0


async def test_release_of_an_unknown_reservation_changes_nothing(
    store: StockStore, redis: Redis
) -> None:
    activity = make_activity()
    await store.warm_up(activity)
    assert await store.release(activity.id, new_reservation_id(activity.id), "user") == "unknown"
    assert await stock_of(redis, activity) == 3
    assert await outbox_len(redis, activity) == 0


async def test_rate_limit_refuses_presses_beyond_the_per_second_budget(
    redis: Redis,
) -> None:
    batcher = ScriptBatcher(redis, 64, 2.0)
    batcher.start()
    store = StockStore(redis, batcher, rate_limit_per_second=3)
    try:
        activity = make_activity(stock=100, limit=100)
        await store.warm_up(activity)
        outcomes = [await reserve(store, activity, "u1") for _ in range(5)]
        assert outcomes == [Outcome.RESERVED] * 3 + [Outcome.RATE_LIMITED] * 2
        assert await reserve(store, activity, "u2") is Outcome.RESERVED  # per user
        assert await stock_of(redis, activity) == 96
    finally:
        await batcher.stop()


async def test_warm_up_twice_never_resets_stock(store: StockStore, redis: Redis) -> None:
    activity = make_activity(stock=3)
    await store.warm_up(activity)
    assert await reserve(store, activity, "u1") is Outcome.RESERVED
    await store.warm_up(activity)
    assert await stock_of(redis, activity) == 2
    assert int(await redis.sismember(ACTIVITIES, activity.id)) == 1
    groups = await redis.xinfo_groups(activity_keys(activity.id).outbox)
    assert [g["name"] for g in groups] == [RELAY_GROUP.encode()]


async def test_reservations_survive_a_lost_script_cache(store: StockStore, redis: Redis) -> None:
    activity = make_activity(stock=3)
    await store.warm_up(activity)
    await redis.script_flush()  # what a Redis restart or failover does
    assert await reserve(store, activity, "u1") is Outcome.RESERVED
    await store.probe()
    assert await stock_of(redis, activity) == 2


async def test_presses_merged_into_one_call_are_each_decided_in_order(redis: Redis) -> None:
    sizes: list[int] = []
    batcher = ScriptBatcher(redis, 64, 2.0, workers=1, on_batch=sizes.append)
    store = StockStore(redis, batcher, rate_limit_per_second=0)
    first, second = make_activity(activity_id=7, stock=3), make_activity(activity_id=8, stock=1)
    await store.warm_up(first)
    await store.warm_up(second)
    batcher.start()  # after queueing, so that every press lands in one round trip
    try:
        presses = [
            *(store.reserve(first.id, u, 1, new_reservation_id(first.id)) for u in "abcab"),
            *(store.reserve(second.id, u, 1, new_reservation_id(second.id)) for u in "xy"),
            store.reserve(404, "z", 1, new_reservation_id(404)),
        ]
        tasks = [asyncio.ensure_future(p) for p in presses]
        await asyncio.sleep(0)
        outcomes = [decision.outcome for decision in await asyncio.gather(*tasks)]
    finally:
        await batcher.stop()
    assert sizes == [8]
    r, lim, out = Outcome.RESERVED, Outcome.LIMIT_REACHED, Outcome.SOLD_OUT
    assert outcomes == [r, r, r, lim, lim, r, out, Outcome.NOT_FOUND]
    assert await stock_of(redis, first) == 0 and await stock_of(redis, second) == 0
    assert await outbox_len(redis, first) == 3 and await outbox_len(redis, second) == 1


async def test_a_malformed_merged_call_is_refused_before_any_write(
    store: StockStore, redis: Redis
) -> None:
    activity = make_activity(stock=3, limit=5)
    await store.warm_up(activity)
    keys = activity_keys(activity.id)
    shared = [keys.meta, keys.stock, keys.users, keys.reservations, keys.outbox, keys.idempotency]
    good = ["u1", 1, new_reservation_id(activity.id)]
    bad = ["u2", 0, new_reservation_id(activity.id)]
    script = redis.register_script(
        (Path(stock_module.__file__).parent / "lua/reserve.lua").read_text()
    )
    with pytest.raises(ResponseError, match="bad quantity"):
        await script(keys=[*shared, keys.rate("u1"), keys.rate("u2")], args=[0, 0, 3, *good, *bad])
    with pytest.raises(ResponseError, match="same presses"):
        await script(keys=[*shared, keys.rate("u1")], args=[0, 0, 3, *good, *bad])
    with pytest.raises(ResponseError, match="same presses"):  # 4 arguments per press, 3 sent
        await script(keys=[*shared, keys.rate("u1")], args=[0, 0, 4, *good])
    assert await stock_of(redis, activity) == 3
    assert await outbox_len(redis, activity) == 0
    assert await redis.hlen(keys.reservations) == 0


async def test_presses_with_one_key_merged_into_one_call_reserve_once(redis: Redis) -> None:
    sizes: list[int] = []
    batcher = ScriptBatcher(redis, 64, 2.0, workers=1, on_batch=sizes.append)
    store = StockStore(redis, batcher, rate_limit_per_second=0)
    activity = make_activity(stock=10, limit=5)
    await store.warm_up(activity)
    presses = [
        *(("u1", "k-1") for _ in range(4)),
        ("u1", "k-2"),
        ("u1", None),
        ("u2", "k-1"),
    ]
    batcher.start()  # after queueing, so that every press lands in one call of the script
    try:
        tasks = [
            asyncio.ensure_future(
                store.reserve(activity.id, u, 1, new_reservation_id(activity.id), key)
            )
            for u, key in presses
        ]
        await asyncio.sleep(0)
        decisions = await asyncio.gather(*tasks)
    finally:
        await batcher.stop()
    assert sizes == [7]
    assert all(d.outcome is Outcome.RESERVED and d.reservation for d in decisions)
    assert [d.replayed for d in decisions] == [False, True, True, True, False, False, False]
    ids = [d.reservation.reservation_id for d in decisions if d.reservation]
    assert len(set(ids[:4])) == 1 and len(set(ids)) == 4
    assert await stock_of(redis, activity) == 6
    assert await outbox_len(redis, activity) == 4
