"""Group buying with the real service processes (python -m services.groupbuy and
services.order), the real Redis, PostgreSQL and broker: races, expiry, many groups of one
campaign, and a SIGKILL in the middle of joins."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from redis.asyncio import Redis

from services.common.auth import mint_token
from services.common.settings import Settings
from services.common.topics import GROUPBUY
from services.groupbuy.keys import campaign_keys
from tests.e2e.processes import ServiceProcess, service
from tests.helpers import campaign_body, constant, read_topic, wait_for

pytestmark = pytest.mark.slow


class Shoppers:
    """HTTP calls to the groupbuy process as any user."""

    def __init__(self, http: aiohttp.ClientSession, settings: Settings) -> None:
        self.http, self.settings = http, settings
        self.base = f"http://127.0.0.1:{settings.groupbuy_port}/api/groupbuy"

    def auth(self, user: str, admin: bool = False) -> dict[str, str]:
        roles = ["admin"] if admin else []
        return {"Authorization": f"Bearer {mint_token(self.settings.jwt_keys(), user, roles)}"}

    async def campaign(self, **overrides: Any) -> int:
        async with self.http.post(
            f"{self.base}/admin/campaigns",
            json=campaign_body(**overrides),
            headers=self.auth("ops", admin=True),
        ) as resp:
            assert resp.status == 201, await resp.text()
            return int((await resp.json())["id"])

    async def open(self, campaign_id: int, user: str) -> tuple[int, str | None]:
        async with self.http.post(
            f"{self.base}/campaigns/{campaign_id}/groups", headers=self.auth(user)
        ) as resp:
            body = await resp.json()
            return resp.status, body.get("id")

    async def join(self, group_id: str, user: str) -> tuple[int, dict[str, Any]]:
        async with self.http.post(
            f"{self.base}/groups/{group_id}/join", headers=self.auth(user)
        ) as resp:
            return resp.status, await resp.json()

    async def remaining(self, campaign_id: int) -> int:
        async with self.http.get(
            f"{self.base}/campaigns/{campaign_id}", headers=self.auth("x")
        ) as resp:
            return int((await resp.json())["remaining_stock"])


@contextlib.asynccontextmanager
async def running(
    settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[Shoppers, ServiceProcess]]:
    async with (
        service("order", settings, tmp_path),
        service("groupbuy", settings, tmp_path) as groupbuy,
        aiohttp.ClientSession() as http,
    ):
        yield Shoppers(http, settings), groupbuy


def count(db: asyncpg.Connection, query: str, *args: Any) -> Callable[[], Any]:
    return lambda: db.fetchval(query, *args)


ORDERS_OF_GROUP = "SELECT count(*) FROM orders.orders WHERE group_id = $1"
ORDERS_OF_CAMPAIGN = "SELECT count(*) FROM orders.orders WHERE source='groupbuy' AND activity_id=$1"


async def test_fifty_users_racing_to_join_a_group_of_five_make_four_joins_one_completion(
    db: asyncpg.Connection, settings: Settings, tmp_path: Path
) -> None:
    async with running(settings, tmp_path) as (shop, _):
        campaign_id = await shop.campaign(group_size=5, stock=5)
        status, gid = await shop.open(campaign_id, "leader")
        assert status == 201 and gid is not None
        results = await asyncio.gather(*(shop.join(gid, f"racer{i}") for i in range(50)))
        statuses = Counter(s for s, _ in results)
        assert statuses == {201: 4, 409: 46}
        assert {b["error"] for s, b in results if s == 409} == {"group_full"}
        winners = sorted(f"racer{i}" for i, (s, _) in enumerate(results) if s == 201)
        assert await wait_for(count(db, ORDERS_OF_GROUP, gid), 5, 30) == 5
        events = await read_topic(
            settings, GROUPBUY, lambda es: any(e.type == "group.completed" for e in es)
        )
        kinds = Counter(e.type for e in events)
        assert kinds == {"group.opened": 1, "group.joined": 4, "group.completed": 1}
        completed = next(e for e in events if e.type == "group.completed")
        assert sorted(completed.data["members"]) == sorted(["leader", *winners])
        ready = "SELECT count(*) FROM orders.orders WHERE group_id=$1 AND group_state='completed'"
        assert await wait_for(count(db, ready, gid), 5) == 5
        users = await db.fetch("SELECT user_id FROM orders.orders WHERE group_id=$1", gid)
        assert sorted(u["user_id"] for u in users) == sorted(["leader", *winners])
        assert await shop.remaining(campaign_id) == 0


async def test_expiry_fails_a_plain_group_and_completes_a_virtual_one(
    db: asyncpg.Connection, settings: Settings, tmp_path: Path
) -> None:
    async with running(settings, tmp_path) as (shop, _):
        plain = await shop.campaign(group_size=3, stock=6, group_window_seconds=2)
        virtual = await shop.campaign(
            group_size=3,
            stock=6,
            group_window_seconds=2,
            virtual_completion=True,
            min_real_members=2,
        )
        _, failing = await shop.open(plain, "a")
        _, saved = await shop.open(virtual, "a")
        assert failing and saved
        assert (await shop.join(failing, "b"))[0] == 201
        assert (await shop.join(saved, "b"))[0] == 201
        assert (await shop.remaining(plain), await shop.remaining(virtual)) == (3, 3)

        cancelled = (
            "SELECT count(*) FROM orders.orders WHERE group_id=$1 AND state='cancelled' "
            "AND cancel_reason='group_failed' AND group_state='failed'"
        )
        assert await wait_for(count(db, cancelled, failing), 2, 30) == 2
        ready = (
            "SELECT count(*) FROM orders.orders WHERE group_id=$1 "
            "AND state='pending_payment' AND group_state='completed'"
        )
        assert await wait_for(count(db, ready, saved), 2, 30) == 2
        # All of the failed group's units back; the virtual group's one unused unit back.
        assert (await shop.remaining(plain), await shop.remaining(virtual)) == (6, 4)
        record = "SELECT state || '/' || coalesce(completion, '-') FROM groupbuy.groups WHERE id=$1"
        assert await wait_for(count(db, record, failing), "failed/-") == "failed/-"
        assert await wait_for(count(db, record, saved), "completed/virtual") == "completed/virtual"


async def test_many_concurrent_groups_of_one_campaign_never_exceed_its_stock(
    db: asyncpg.Connection, redis: Redis, settings: Settings, tmp_path: Path
) -> None:
    stock, size, leaders = 100, 3, 120
    async with running(settings, tmp_path) as (shop, _):
        campaign_id = await shop.campaign(group_size=size, stock=stock, per_user_limit=1)
        opened = await asyncio.gather(*(shop.open(campaign_id, f"l{i}") for i in range(leaders)))
        groups = [gid for status, gid in opened if status == 201 and gid]
        assert len(groups) == stock // size  # 33 groups: 99 units; 1 unit can make no group
        assert Counter(s for s, _ in opened) == {201: 33, 410: leaders - 33}
        # Everyone else tries to join any group, all at once, several times over.
        joins = await asyncio.gather(
            *(shop.join(groups[(i * 7) % len(groups)], f"j{i}") for i in range(200))
        )
        joined = sum(1 for s, _ in joins if s == 201)
        assert joined == len(groups) * (size - 1)
        assert await shop.remaining(campaign_id) == stock - len(groups) * size == 1
        members = len(groups) + joined
        assert members <= stock
        assert await wait_for(count(db, ORDERS_OF_CAMPAIGN, campaign_id), members, 30) == members
        per_group = await db.fetch(
            "SELECT group_id, count(*) AS n FROM orders.orders WHERE activity_id=$1 "
            "AND source='groupbuy' GROUP BY group_id",
            campaign_id,
        )
        assert {r["n"] for r in per_group} == {size} and len(per_group) == len(groups)
        assert int(await redis.get(campaign_keys(campaign_id).stock)) == 1


async def test_killing_groupbuy_during_joins_loses_no_member_and_completes_no_group_twice(
    db: asyncpg.Connection, redis: Redis, settings: Settings, tmp_path: Path
) -> None:
    size, n_groups, joiners = 5, 40, 400
    acknowledged: set[tuple[str, str]] = set()
    async with running(settings, tmp_path) as (shop, groupbuy):
        campaign_id = await shop.campaign(group_size=size, stock=size * n_groups, per_user_limit=1)
        opened = await asyncio.gather(*(shop.open(campaign_id, f"l{i}") for i in range(n_groups)))
        groups = [gid for s, gid in opened if s == 201 and gid]
        assert len(groups) == n_groups
        acknowledged |= {(gid, f"l{i}") for i, gid in enumerate(groups)}

        async def joiner(i: int) -> None:
            gid = groups[i % n_groups]
            with contextlib.suppress(aiohttp.ClientError):
                status, _ = await shop.join(gid, f"j{i}")
                if status == 201:
                    acknowledged.add((gid, f"j{i}"))

        tasks = [asyncio.create_task(joiner(i)) for i in range(joiners)]
        await wait_for(lambda: constant(len(acknowledged) >= n_groups + 30), True, 30, 0.002)
        groupbuy.kill()  # mid-join, with its relay and consumers mid-stream
        await asyncio.gather(*tasks)
        at_kill = len(acknowledged)
        assert at_kill < n_groups * size, "every join landed before the kill: proves nothing"
        await groupbuy.start()
        # Finish the groups after the restart.
        for i in range(joiners, joiners + 400):
            await joiner(i)

        # Redis (the gate) agrees with every acknowledged join...
        in_redis: set[tuple[str, str]] = set()
        for gid in groups:
            users = await redis.zrange(campaign_keys(campaign_id).members(gid), 0, -1)
            in_redis |= {(gid, u.decode()) for u in users}
        assert acknowledged <= in_redis
        assert len(in_redis) == n_groups * size  # all groups filled after the restart
        # ... and so do the records: an order per member, a member row per member.
        total = n_groups * size
        assert await wait_for(count(db, ORDERS_OF_CAMPAIGN, campaign_id), total, 60) == total
        rows = await db.fetch(
            "SELECT group_id, user_id FROM orders.orders WHERE activity_id=$1 "
            "AND source='groupbuy'",
            campaign_id,
        )
        assert {(r["group_id"], r["user_id"]) for r in rows} == in_redis
        members_q = (
            "SELECT count(*) FROM groupbuy.members m JOIN groupbuy.groups g ON g.id = m.group_id "
            "WHERE g.campaign_id = $1"
        )
        assert await wait_for(count(db, members_q, campaign_id), total, 30) == total
        events = await read_topic(
            settings,
            GROUPBUY,
            lambda es: len({e.key for e in es if e.type == "group.completed"}) == n_groups,
            within=60,
        )
        # At-least-once: a relay killed after Kafka acked but before XACK may publish an
        # entry again, identical (same id, time and data). A second completion would be a
        # different fact (another time, maybe other members): exactly one per group.
        facts: dict[str, set[bytes]] = {}
        for e in events:
            if e.type == "group.completed":
                facts.setdefault(e.key, set()).add(e.encode())
        assert {gid: len(f) for gid, f in facts.items()} == dict.fromkeys(groups, 1)
        for gid in groups:
            (raw,) = facts[gid]
            assert len(orjson.loads(raw)["data"]["members"]) == size
        ready = (
            "SELECT count(*) FROM orders.orders WHERE activity_id=$1 AND group_state='completed'"
        )
        assert await wait_for(count(db, ready, campaign_id), total, 30) == total
