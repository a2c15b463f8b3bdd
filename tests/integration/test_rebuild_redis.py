"""Rebuilding a sale's Redis state from PostgreSQL after Redis lost it, on the real Redis,
PostgreSQL and broker: never more stock than is left, per-user limits hold, a later
cancellation returns exactly one unit, and a rebuild over live state is refused."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from services.common.resources import pg_pool
from services.common.settings import Settings
from services.groupbuy.keys import CAMPAIGNS, campaign_keys
from services.groupbuy.store import GroupStore
from services.reconcile.rebuild import RebuildRefused, rebuild_activity, rebuild_campaign
from services.seckill.keys import ACTIVITIES, activity_keys
from services.seckill.stock import StockStore
from tests.helpers import (
    create_activity,
    create_campaign,
    join_group,
    open_group,
    redis_keyspace,
    running_relay,
    settings_env,
    started_client,
    wait_for,
)

Token = Callable[..., dict[str, str]]
Client = TestClient[Any, Any]


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    p = await pg_pool(settings)
    yield p
    await p.close()


async def lose_redis_state(redis: Redis, pattern: str, registry: str, sale_id: int) -> None:
    """What Redis losing a sale looks like: every key of it gone, and its id no longer
    registered for the relay and the sweeper."""
    keys = await redis.keys(pattern)
    assert keys
    await redis.delete(*keys)
    await redis.srem(registry, sale_id)


async def reserve(seckill: Client, token: Token, activity_id: int, user: str) -> tuple[int, str]:
    resp = await seckill.post(
        f"/api/seckill/activities/{activity_id}/reservations", headers=token(user)
    )
    return resp.status, (await resp.json()).get("error") or (await resp.json())["reservation_id"]


async def order_of(db: asyncpg.Connection, column: str, value: str) -> asyncpg.Record:
    return await db.fetchrow(
        f"SELECT id, reservation_id, state FROM orders.orders WHERE {column} = $1", value
    )


async def cancel(orders: Client, token: Token, order: asyncpg.Record, user: str) -> None:
    resp = await orders.post(f"/api/orders/{order['id']}/cancel", headers=token(user))
    assert resp.status == 200, await resp.text()


async def rebuild_command(settings: Settings, *args: str) -> tuple[int | None, str]:
    """python -m services.reconcile with these arguments: exit code and stdout."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.reconcile",
        *args,
        env=settings_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), 60)
    return child.returncode, out.decode() or err.decode()


async def test_an_activity_rebuilt_from_its_orders_sells_only_what_is_left(
    seckill: Client,
    orders: Client,
    token: Token,
    redis: Redis,
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    activity = await create_activity(seckill, token("ops", admin=True), stock=4)
    aid = activity["id"]
    keys = activity_keys(aid)
    async with running_relay(redis, settings):
        for user in ("u1", "u2", "u3"):
            assert (await reserve(seckill, token, aid, user))[0] == 201
        count = "SELECT count(*) FROM orders.orders WHERE activity_id = $1"
        assert await wait_for(lambda: db.fetchval(count, aid), 3) == 3
        # u1 cancels: the order service announces it, the seckill worker returns the unit.
        await cancel(orders, token, await order_of(db, "user_id", "u1"), "u1")
        assert await wait_for(lambda: redis.get(keys.stock), b"2") == b"2"

        await lose_redis_state(redis, f"sk:{{a{aid}}}:*", ACTIVITIES, aid)
        assert (await reserve(seckill, token, aid, "u5"))[0] == 404  # gone, not oversold

        # What `make rebuild-redis ACTIVITY=<id>` runs.
        code, out = await rebuild_command(settings, "--rebuild-activity", str(aid))
        assert (code, out) == (
            0,
            f"rebuilt activity {aid}: stock 4, held 2 (live orders 2, reservations without "
            "an order 0; cancelled orders 1, recorded as returned), remaining 2, shoppers "
            "holding units 2\n",
        )
        # 4 - 2 live orders (u2, u3); u1's cancelled unit is available again.
        assert await redis.get(keys.stock) == b"2"
        assert await redis.sismember(ACTIVITIES, aid)
        # u2 holds an order: the per-user limit still refuses them.
        assert await reserve(seckill, token, aid, "u2") == (409, "limit_reached")
        # New shoppers take what is left, and no more.
        assert (await reserve(seckill, token, aid, "u5"))[0] == 201
        assert (await reserve(seckill, token, aid, "u6"))[0] == 201
        assert await reserve(seckill, token, aid, "u7") == (410, "sold_out")
        view = await seckill.get(f"/api/seckill/activities/{aid}", headers=token("u7"))
        state = await view.json()
        assert (state["remaining_stock"], state["status"]) == (0, "sold_out")
        # Their reservations become orders through the rebuilt outbox and relay.
        assert await wait_for(lambda: db.fetchval(count, aid), 5) == 5

        # u2 cancels after the rebuild: exactly one unit comes back, once.
        u2 = await order_of(db, "user_id", "u2")
        await cancel(orders, token, u2, "u2")
        assert await wait_for(lambda: redis.get(keys.stock), b"1") == b"1"
        again = await StockStore(redis, None, 0).release(aid, u2["reservation_id"], "user")
        assert again == "already_released"
        await asyncio.sleep(0.5)  # a redelivered order.cancelled would land in this time
        assert await redis.get(keys.stock) == b"1"
        assert (await reserve(seckill, token, aid, "u8"))[0] == 201


async def test_a_rebuild_over_a_live_activity_is_refused_and_changes_nothing(
    seckill: Client, token: Token, redis: Redis, pool: asyncpg.Pool, settings: Settings
) -> None:
    activity = await create_activity(seckill, token("ops", admin=True), stock=4)
    assert (await reserve(seckill, token, activity["id"], "u1"))[0] == 201
    before = await redis_keyspace(redis, "sk:*")
    with pytest.raises(RebuildRefused, match="still has its Redis state"):
        await rebuild_activity(redis, pool, activity["id"])
    assert await redis_keyspace(redis, "sk:*") == before
    # Through the command line: a clear message on stderr and exit code 2.
    code, err = await rebuild_command(settings, "--rebuild-activity", str(activity["id"]))
    assert code == 2
    assert err.startswith(f"refused: activity {activity['id']} still has its Redis state")
    assert await redis_keyspace(redis, "sk:*") == before


async def test_forcing_a_rebuild_over_live_state_keeps_its_reservations(
    seckill: Client, token: Token, redis: Redis, pool: asyncpg.Pool
) -> None:
    # No order yet (no relay): the surviving reservations hold their units.
    activity = await create_activity(seckill, token("ops", admin=True), stock=4)
    for user in ("u1", "u2"):
        assert (await reserve(seckill, token, activity["id"], user))[0] == 201
    keys = activity_keys(activity["id"])
    await redis.set(keys.stock, 4)  # the state is wrong: the reason to force
    rebuilt = await rebuild_activity(redis, pool, activity["id"], force=True)
    assert (rebuilt.plan.stock, rebuilt.plan.unordered) == (2, 2)
    assert await redis.get(keys.stock) == b"2"
    assert await redis.xlen(keys.outbox) == 2  # their events are still to be published
    assert await reserve(seckill, token, activity["id"], "u1") == (409, "limit_reached")


@pytest.fixture
async def gb_service(settings: Settings) -> AsyncIterator[Client]:
    """The whole groupbuy service in-process: relay, sweeper and consumers running."""
    from services.groupbuy.app import create_app

    client = await started_client(create_app(settings))
    yield client
    await client.close()


async def test_a_campaign_rebuilt_from_its_record_keeps_groups_limits_and_unit_returns(
    gb_service: Client,
    orders: Client,
    token: Token,
    redis: Redis,
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
) -> None:
    campaign = await create_campaign(
        gb_service, token("ops", admin=True), group_size=2, stock=6, per_user_limit=1
    )
    cid = campaign["id"]
    keys = campaign_keys(cid)
    full = await open_group(gb_service, token, cid, "l1")
    assert await join_group(gb_service, token, full, "m1") == 201  # completes: 2 units
    waiting = await open_group(gb_service, token, cid, "l2")  # open: holds 2 units
    states = "SELECT user_id, group_state FROM orders.orders WHERE activity_id = $1 ORDER BY 1"
    expected = [("l1", "completed"), ("l2", "open"), ("m1", "completed")]

    async def group_states() -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await db.fetch(states, cid)]

    assert await wait_for(group_states, expected) == expected
    record = "SELECT count(*) FROM groupbuy.members WHERE group_id = ANY($1::text[])"
    assert await wait_for(lambda: db.fetchval(record, [full, waiting]), 3) == 3
    # m1 cancels (allowed once the group completed): groupbuy returns the unit.
    await cancel(orders, token, await order_of(db, "reservation_id", f"{full}:m1"), "m1")
    assert await wait_for(lambda: redis.get(keys.stock), b"3") == b"3"

    await lose_redis_state(redis, f"gb:{{c{cid}}}:*", CAMPAIGNS, cid)
    rebuilt = await rebuild_campaign(redis, pool, cid)
    # 6 - 1 (l1's live order in the completed group) - 2 (the open group's units).
    assert rebuilt.describe() == (
        f"rebuilt campaign {cid}: stock 6, held 3 (groups 2, of them open 1; live orders 2), "
        "remaining 3, shoppers holding units 2"
    )
    assert await redis.get(keys.stock) == b"3"
    assert await redis.sismember(CAMPAIGNS, cid)

    # Shoppers in a group are held to the limit; the open group takes a new member.
    for user in ("l1", "l2"):
        resp = await gb_service.post(f"/api/groupbuy/campaigns/{cid}/groups", headers=token(user))
        assert (resp.status, (await resp.json())["error"]) == (409, "limit_reached")
    assert await join_group(gb_service, token, waiting, "n1") == 201
    card = await (
        await gb_service.get(f"/api/groupbuy/groups/{waiting}", headers=token("n1"))
    ).json()
    assert (card["state"], [m["position"] for m in card["members"]]) == ("completed", [1, 2])
    assert await open_group(gb_service, token, cid, "n2")  # a new group: 2 more units
    assert await redis.get(keys.stock) == b"1"
    expected = [
        ("l1", "completed"),
        ("l2", "completed"),
        ("m1", "completed"),
        ("n1", "completed"),
        ("n2", "open"),
    ]
    assert await wait_for(group_states, expected) == expected

    # l1 cancels after the rebuild: exactly one unit back, and only once.
    await cancel(orders, token, await order_of(db, "reservation_id", f"{full}:l1"), "l1")
    assert await wait_for(lambda: redis.get(keys.stock), b"2") == b"2"
    assert await GroupStore(redis).release_unit(full, "l1") == "already_released"
    assert await GroupStore(redis).release_unit(full, "m1") == "already_released"
    await asyncio.sleep(0.5)
    assert await redis.get(keys.stock) == b"2"


async def test_a_rebuild_over_a_live_campaign_is_refused_and_changes_nothing(
    gb_service: Client, token: Token, redis: Redis, pool: asyncpg.Pool
) -> None:
    campaign = await create_campaign(gb_service, token("ops", admin=True), group_size=2, stock=4)
    await open_group(gb_service, token, campaign["id"], "l1")
    before = await redis_keyspace(redis, "gb:*")
    with pytest.raises(RebuildRefused, match="still has its Redis state"):
        await rebuild_campaign(redis, pool, campaign["id"])
    assert await redis_keyspace(redis, "gb:*") == before
