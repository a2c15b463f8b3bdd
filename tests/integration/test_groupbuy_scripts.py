"""The open/join/expire/release scripts on the real Redis: every refusal changes nothing,
the last slot completes a group exactly once, expiry races a last-second join safely."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from services.common.settings import Settings
from services.groupbuy.domain import Campaign, Outcome, new_group_id, outbox_event
from services.groupbuy.keys import CAMPAIGNS, campaign_keys
from services.groupbuy.store import GroupStore
from tests.helpers import redis_keyspace

CAMPAIGN_ID = 7


def campaign(**overrides: Any) -> Campaign:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "id": CAMPAIGN_ID,
        "sku": "sku-gb",
        "title": "t",
        "group_price_cents": 4900,
        "single_price_cents": 9900,
        "group_size": 3,
        "stock": 9,
        "starts_at": now - timedelta(seconds=5),
        "ends_at": now + timedelta(hours=1),
        "group_window_seconds": 3600,
        "per_user_limit": 1,
        "virtual_completion": False,
        "min_real_members": 3,
        "payment_timeout_seconds": 900,
    }
    values.update(overrides)
    return Campaign(**values)


@pytest.fixture
async def store(redis: Redis, settings: Settings) -> GroupStore:
    return GroupStore(redis)


async def snapshot(redis: Redis, campaign_id: int = CAMPAIGN_ID) -> dict[bytes, Any]:
    return await redis_keyspace(redis, f"{campaign_keys(campaign_id).tag}*")


async def events(redis: Redis, campaign_id: int = CAMPAIGN_ID) -> list[Any]:
    entries = await redis.xrange(campaign_keys(campaign_id).outbox)
    return [
        outbox_event(campaign_id, {k.decode(): v.decode() for k, v in fields.items()})
        for _, fields in entries
    ]


async def open_one(store: GroupStore, user: str, campaign_id: int = CAMPAIGN_ID) -> str:
    outcome, opened, _ = await store.open_group(campaign_id, user, new_group_id(campaign_id))
    assert outcome is Outcome.OPENED and opened is not None
    return opened.group_id


async def test_opening_takes_a_whole_group_of_stock_and_announces_the_group(
    store: GroupStore, redis: Redis
) -> None:
    await store.warm_up(campaign())
    assert await redis.sismember(CAMPAIGNS, CAMPAIGN_ID)
    gid = await open_one(store, "leader")
    assert await store.remaining(CAMPAIGN_ID) == 6
    state, members = await store.group(gid) or ({}, [])
    assert state["state"] == "open" and members == ["leader"]
    [opened] = await events(redis)
    assert opened.type == "group.opened" and opened.key == gid
    assert opened.data["user_id"] == "leader" and opened.data["unit_price_cents"] == 4900
    assert opened.data["role"] == "leader" and opened.data["position"] == 1


async def test_warming_twice_never_hands_out_stock_twice(store: GroupStore) -> None:
    await store.warm_up(campaign())
    await open_one(store, "a")
    await store.warm_up(campaign())
    assert await store.remaining(CAMPAIGN_ID) == 6


async def test_opening_beyond_the_per_user_limit_is_refused_and_changes_nothing(
    store: GroupStore, redis: Redis
) -> None:
    await store.warm_up(campaign(per_user_limit=1))
    await open_one(store, "a")
    before = await snapshot(redis)
    outcome, opened, _ = await store.open_group(CAMPAIGN_ID, "a", new_group_id(CAMPAIGN_ID))
    assert (outcome, opened) == (Outcome.LIMIT_REACHED, None)
    assert await snapshot(redis) == before


async def test_opening_without_a_whole_group_of_stock_is_sold_out(
    store: GroupStore, redis: Redis
) -> None:
    await store.warm_up(campaign(stock=5))  # one group of 3; 2 units cannot make a group
    await open_one(store, "a")
    before = await snapshot(redis)
    outcome, _, _ = await store.open_group(CAMPAIGN_ID, "b", new_group_id(CAMPAIGN_ID))
    assert outcome is Outcome.SOLD_OUT
    assert await snapshot(redis) == before


async def test_opening_outside_the_campaign_window_is_refused(store: GroupStore) -> None:
    now = datetime.now(UTC)
    await store.warm_up(campaign(starts_at=now + timedelta(hours=1)))
    assert (await store.open_group(CAMPAIGN_ID, "a", new_group_id(CAMPAIGN_ID)))[
        0
    ] is Outcome.NOT_STARTED
    await store.warm_up(campaign(id=8, ends_at=now - timedelta(seconds=1)))
    assert (await store.open_group(8, "a", new_group_id(8)))[0] is Outcome.ENDED
    assert (await store.open_group(99, "a", new_group_id(99)))[0] is Outcome.NOT_FOUND


async def test_the_join_that_fills_the_last_slot_completes_the_group_once(
    store: GroupStore, redis: Redis
) -> None:
    await store.warm_up(campaign())
    gid = await open_one(store, "leader")
    outcome, joined, _ = await store.join_group(gid, "m1")
    assert outcome is Outcome.JOINED and joined is not None and joined.position == 2
    outcome, joined, _ = await store.join_group(gid, "m2")
    assert outcome is Outcome.COMPLETED and joined is not None and joined.completed
    kinds = [e.type for e in await events(redis)]
    assert kinds == ["group.opened", "group.joined", "group.joined", "group.completed"]
    completed = (await events(redis))[-1]
    assert completed.data["members"] == ["leader", "m1", "m2"]
    assert completed.data["how"] == "full"
    before = await snapshot(redis)
    assert (await store.join_group(gid, "m3"))[0] is Outcome.FULL
    assert await snapshot(redis) == before


async def test_joining_twice_or_an_unknown_group_is_refused_and_changes_nothing(
    store: GroupStore, redis: Redis
) -> None:
    await store.warm_up(campaign())
    gid = await open_one(store, "leader")
    await store.join_group(gid, "m1")
    before = await snapshot(redis)
    assert (await store.join_group(gid, "m1"))[0] is Outcome.ALREADY_MEMBER
    assert (await store.join_group(gid, "leader"))[0] is Outcome.ALREADY_MEMBER
    assert (await store.join_group(f"{CAMPAIGN_ID}-{'a' * 32}", "m9"))[0] is Outcome.NOT_FOUND
    assert (await store.join_group("not-a-group", "m9"))[0] is Outcome.NOT_FOUND
    assert await snapshot(redis) == before


async def test_joining_counts_against_the_per_user_limit(store: GroupStore, redis: Redis) -> None:
    await store.warm_up(campaign(per_user_limit=1))
    first = await open_one(store, "a")
    second = await open_one(store, "b")
    await store.join_group(first, "c")
    before = await snapshot(redis)
    assert (await store.join_group(second, "c"))[0] is Outcome.LIMIT_REACHED
    assert await snapshot(redis) == before


async def test_concurrent_joins_fill_a_group_exactly(store: GroupStore, redis: Redis) -> None:
    await store.warm_up(campaign(group_size=5, stock=5))
    gid = await open_one(store, "leader")
    results = await asyncio.gather(*(store.join_group(gid, f"u{i}") for i in range(50)))
    outcomes = [d.outcome for d in results]
    assert outcomes.count(Outcome.JOINED) == 3
    assert outcomes.count(Outcome.COMPLETED) == 1
    assert outcomes.count(Outcome.FULL) == 46
    kinds = [e.type for e in await events(redis)]
    assert kinds.count("group.completed") == 1 and kinds.count("group.joined") == 4


async def expire_when_due(store: GroupStore, gid: str) -> Any:
    for _ in range(60):
        settled = await store.expire_group(CAMPAIGN_ID, gid)
        if settled.result != "not_due":
            return settled
        await asyncio.sleep(0.05)
    raise AssertionError("the group never became due")


async def test_an_expired_group_fails_and_returns_all_its_units_and_allowances(
    store: GroupStore, redis: Redis
) -> None:
    await store.warm_up(campaign(group_window_seconds=1))
    gid = await open_one(store, "leader")
    await store.join_group(gid, "m1")
    assert (await store.expire_group(CAMPAIGN_ID, gid)).result == "not_due"
    settled = await expire_when_due(store, gid)
    assert (settled.result, settled.members, settled.returned) == ("failed", 2, 3)
    assert await store.remaining(CAMPAIGN_ID) == 9
    assert await redis.hgetall(campaign_keys(CAMPAIGN_ID).users) == {}
    failed = (await events(redis))[-1]
    assert failed.type == "group.failed" and failed.data["members"] == ["leader", "m1"]
    # Settling again (another sweeper replica) changes nothing.
    before = await snapshot(redis)
    assert (await store.expire_group(CAMPAIGN_ID, gid)).result == "settled"
    assert await snapshot(redis) == before
    assert (await store.join_group(gid, "late"))[0] is Outcome.EXPIRED


async def test_joining_after_the_deadline_is_refused_before_the_sweeper_ran(
    store: GroupStore, redis: Redis
) -> None:
    await store.warm_up(campaign(group_window_seconds=1))
    gid = await open_one(store, "leader")
    await asyncio.sleep(1.05)
    before = await snapshot(redis)
    assert (await store.join_group(gid, "late"))[0] is Outcome.EXPIRED
    assert await snapshot(redis) == before


async def test_with_virtual_completion_enough_real_members_complete_the_group_at_expiry(
    store: GroupStore, redis: Redis
) -> None:
    await store.warm_up(
        campaign(
            group_size=4,
            stock=8,
            group_window_seconds=1,
            virtual_completion=True,
            min_real_members=2,
        )
    )
    gid = await open_one(store, "leader")
    await store.join_group(gid, "m1")
    settled = await expire_when_due(store, gid)
    assert (settled.result, settled.members, settled.returned) == ("virtual", 2, 2)
    assert await store.remaining(CAMPAIGN_ID) == 6  # 8 - 4 + the 2 unused
    completed = (await events(redis))[-1]
    assert completed.type == "group.completed" and completed.data["how"] == "virtual"
    assert completed.data["members"] == ["leader", "m1"]
    before = await snapshot(redis)
    assert (await store.join_group(gid, "m2"))[0] is Outcome.COMPLETED_ALREADY
    assert await snapshot(redis) == before


async def test_with_virtual_completion_too_few_real_members_still_fail(
    store: GroupStore, redis: Redis
) -> None:
    await store.warm_up(
        campaign(
            group_size=4,
            stock=8,
            group_window_seconds=1,
            virtual_completion=True,
            min_real_members=2,
        )
    )
    gid = await open_one(store, "leader")
    settled = await expire_when_due(store, gid)
    assert (settled.result, settled.returned) == ("failed", 4)
    assert await store.remaining(CAMPAIGN_ID) == 8


async def test_expiry_racing_last_second_joins_settles_each_group_exactly_once(
    store: GroupStore, redis: Redis
) -> None:
    """Many groups of 2 hit their deadline while joins for them arrive: each group ends
    either completed by a join or failed by expiry, never both, never twice."""
    await store.warm_up(
        campaign(group_size=2, stock=80, group_window_seconds=1, per_user_limit=100)
    )
    groups = [await open_one(store, f"l{i}") for i in range(40)]
    await asyncio.sleep(0.95)

    async def keep_joining(gid: str, i: int) -> None:
        for attempt in range(30):
            outcome, _, _ = await store.join_group(gid, f"j{i}-{attempt}")
            if outcome is not Outcome.ALREADY_MEMBER and outcome is not Outcome.JOINED:
                return
            await asyncio.sleep(0.005)

    async def keep_expiring(gid: str) -> None:
        for _ in range(40):
            await store.expire_group(CAMPAIGN_ID, gid)
            await asyncio.sleep(0.005)

    await asyncio.gather(
        *(keep_joining(g, i) for i, g in enumerate(groups)),
        *(keep_expiring(g) for g in groups),
    )
    settled = [e for e in await events(redis) if e.type in ("group.completed", "group.failed")]
    assert sorted(e.key for e in settled) == sorted(groups)
    failed = sum(1 for e in settled if e.type == "group.failed")
    # Conservation: completed groups keep 2 units, failed ones gave theirs back.
    assert await store.remaining(CAMPAIGN_ID) == 80 - 2 * (len(groups) - failed)


async def test_a_member_unit_of_a_completed_group_comes_back_once(
    store: GroupStore, redis: Redis
) -> None:
    await store.warm_up(campaign())
    gid = await open_one(store, "leader")
    await store.join_group(gid, "m1")
    assert await store.release_unit(gid, "m1") == "not_completed"
    await store.join_group(gid, "m2")
    assert await store.release_unit(gid, "m1") == "ok"
    assert await store.release_unit(gid, "m1") == "already_released"
    assert await store.release_unit(gid, "stranger") == "unknown"
    assert await store.remaining(CAMPAIGN_ID) == 7


def test_group_event_ids_are_deterministic() -> None:
    fields = {
        "type": "group.joined",
        "gid": "7-" + "b" * 32,
        "user": "u1",
        "pos": "2",
        "at": "1700000000000",
        "opened": "1699999999000",
        "deadline": "1700003600000",
        "size": "3",
        "price": "4900",
        "sku": "s",
        "pay_ms": "900000",
    }
    assert outbox_event(7, fields).id == outbox_event(7, dict(fields)).id
    assert orjson.loads(outbox_event(7, fields).encode())["key"] == "7-" + "b" * 32
