"""The groupbuy HTTP API through the aiohttp test client, on the real Redis and PostgreSQL:
each refusal has its own status and code, and bad input changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from services.groupbuy.keys import campaign_keys
from tests.helpers import campaign_body, create_campaign, redis_keyspace

Token = Callable[..., dict[str, str]]
Client = TestClient[Any, Any]


async def keyspace(redis: Redis) -> dict[bytes, Any]:
    return await redis_keyspace(redis, "gb:*")


async def open_group(client: Client, token: Token, campaign_id: int, user: str) -> str:
    resp = await client.post(f"/api/groupbuy/campaigns/{campaign_id}/groups", headers=token(user))
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["id"])


async def error(resp: Any) -> tuple[int, str]:
    return resp.status, (await resp.json())["error"]


async def test_an_admin_creates_a_campaign_and_anyone_reads_it(
    groupbuy: Client, token: Token, db: asyncpg.Connection
) -> None:
    created = await create_campaign(groupbuy, token("ops", admin=True), stock=20)
    assert created["status"] == "live" and created["remaining_stock"] == 20
    assert created["min_real_members"] == 5 and created["virtual_completion"] is False
    resp = await groupbuy.get(f"/api/groupbuy/campaigns/{created['id']}", headers=token("u1"))
    assert resp.status == 200 and (await resp.json()) == created
    assert await db.fetchval("SELECT count(*) FROM groupbuy.campaigns") == 1


async def test_creating_a_campaign_needs_the_admin_role(
    groupbuy: Client, token: Token, db: asyncpg.Connection
) -> None:
    resp = await groupbuy.post(
        "/api/groupbuy/admin/campaigns", json=campaign_body(), headers=token("u1")
    )
    assert await error(resp) == (403, "forbidden")
    resp = await groupbuy.post("/api/groupbuy/admin/campaigns", json=campaign_body())
    assert await error(resp) == (401, "unauthorized")
    assert await db.fetchval("SELECT count(*) FROM groupbuy.campaigns") == 0


async def test_bad_campaigns_are_refused_naming_the_field_and_change_nothing(
    groupbuy: Client, token: Token, db: asyncpg.Connection, redis: Redis
) -> None:
    now = datetime.now(UTC)
    bad = {
        "group_size": {"group_size": 1},
        "stock": {"stock": 3},  # less than one group of 5
        "group_price_cents": {"group_price_cents": 9900},  # not below the single price
        "min_real_members": {"virtual_completion": True, "min_real_members": 5},
        "ends_at": {"ends_at": (now - timedelta(minutes=1)).isoformat()},
        "virtual_completion": {"virtual_completion": "yes"},
        "color": {"color": "red"},
        "group_window_seconds": {"group_window_seconds": 0},
    }
    for field, override in bad.items():
        resp = await groupbuy.post(
            "/api/groupbuy/admin/campaigns",
            json=campaign_body(**override),
            headers=token("ops", admin=True),
        )
        body = await resp.json()
        assert (resp.status, body["error"], body.get("field")) == (400, "invalid_request", field)
    assert await db.fetchval("SELECT count(*) FROM groupbuy.campaigns") == 0
    assert await keyspace(redis) == {}


async def test_unknown_campaigns_and_groups_are_404(groupbuy: Client, token: Token) -> None:
    for path in ("/api/groupbuy/campaigns/999", "/api/groupbuy/campaigns/x"):
        assert await error(await groupbuy.get(path, headers=token("u1"))) == (404, "not_found")
    resp = await groupbuy.post("/api/groupbuy/campaigns/999/groups", headers=token("u1"))
    assert await error(resp) == (404, "not_found")
    for gid in ("1-" + "a" * 32, "nonsense"):
        resp = await groupbuy.post(f"/api/groupbuy/groups/{gid}/join", headers=token("u1"))
        assert await error(resp) == (404, "not_found")
        resp = await groupbuy.get(f"/api/groupbuy/groups/{gid}", headers=token("u1"))
        assert await error(resp) == (404, "not_found")


async def test_a_leader_opens_a_group_and_the_share_card_shows_progress(
    groupbuy: Client, token: Token
) -> None:
    campaign = await create_campaign(groupbuy, token("ops", admin=True), group_size=3, stock=6)
    gid = await open_group(groupbuy, token, campaign["id"], "leader")
    resp = await groupbuy.post(f"/api/groupbuy/groups/{gid}/join", headers=token("m1"))
    assert resp.status == 201
    assert (await resp.json())["slots_left"] == 1
    card = await (await groupbuy.get(f"/api/groupbuy/groups/{gid}", headers=token("m1"))).json()
    assert card["members"] == [
        {"position": 1, "role": "leader", "user_id": "leader", "you": False},
        {"position": 2, "role": "member", "user_id": "m1", "you": True},
    ]
    assert (card["state"], card["joined"], card["size"], card["slots_left"]) == ("open", 2, 3, 1)
    # Someone the link was shared with sees the progress, not who the members are.
    card = await (await groupbuy.get(f"/api/groupbuy/groups/{gid}", headers=token("x"))).json()
    assert [m["user_id"] for m in card["members"]] == [None, None]
    assert (card["joined"], card["slots_left"]) == (2, 1)
    assert datetime.fromisoformat(card["deadline"]) > datetime.now(UTC) + timedelta(minutes=59)
    got = await (await groupbuy.get(f"/api/groupbuy/campaigns/{campaign['id']}")).json()
    assert got.get("error") == "unauthorized"
    got = await (
        await groupbuy.get(f"/api/groupbuy/campaigns/{campaign['id']}", headers=token("x"))
    ).json()
    assert got["remaining_stock"] == 3


async def test_each_refused_join_has_its_own_code_and_changes_nothing(
    groupbuy: Client, token: Token, redis: Redis
) -> None:
    campaign = await create_campaign(
        groupbuy, token("ops", admin=True), group_size=2, stock=6, per_user_limit=1
    )
    cid = campaign["id"]
    full = await open_group(groupbuy, token, cid, "leader")
    assert (await groupbuy.post(f"/api/groupbuy/groups/{full}/join", headers=token("m1"))).status
    other = await open_group(groupbuy, token, cid, "leader2")
    before = await keyspace(redis)
    cases = [
        (full, "m2", (409, "group_full")),
        (other, "leader2", (409, "already_member")),  # one's own group
        (other, "m1", (409, "limit_reached")),  # m1 already takes part in a group
        ("1-" + "c" * 32, "m2", (404, "not_found")),
    ]
    for gid, user, expected in cases:
        resp = await groupbuy.post(f"/api/groupbuy/groups/{gid}/join", headers=token(user))
        assert await error(resp) == expected, (gid, user)
    resp = await groupbuy.post(
        f"/api/groupbuy/groups/{other}/join", json={"quantity": 2}, headers=token("m3")
    )
    assert await error(resp) == (400, "invalid_request")
    assert await keyspace(redis) == before


async def test_opening_refusals_have_their_own_codes_and_change_nothing(
    groupbuy: Client, token: Token, redis: Redis
) -> None:
    admin = token("ops", admin=True)
    campaign = await create_campaign(groupbuy, admin, group_size=2, stock=3, per_user_limit=1)
    await open_group(groupbuy, token, campaign["id"], "a")
    later = datetime.now(UTC) + timedelta(hours=1)
    upcoming = await create_campaign(
        groupbuy,
        admin,
        starts_at=later.isoformat(),
        ends_at=(later + timedelta(hours=1)).isoformat(),
    )
    before = await keyspace(redis)
    url = f"/api/groupbuy/campaigns/{campaign['id']}/groups"
    assert await error(await groupbuy.post(url, headers=token("a"))) == (409, "limit_reached")
    assert await error(await groupbuy.post(url, headers=token("b"))) == (410, "sold_out")
    resp = await groupbuy.post(
        f"/api/groupbuy/campaigns/{upcoming['id']}/groups", headers=token("b")
    )
    assert await error(resp) == (409, "not_started")
    resp = await groupbuy.post(url, json={"size": 3}, headers=token("c"))
    assert await error(resp) == (400, "invalid_request")
    assert await keyspace(redis) == before


async def test_joining_an_expired_or_virtually_completed_group_is_refused(
    groupbuy: Client, token: Token, redis: Redis
) -> None:
    from services.groupbuy.app import GROUPBUY

    admin = token("ops", admin=True)
    plain = await create_campaign(groupbuy, admin, group_size=3, stock=3, group_window_seconds=1)
    virtual = await create_campaign(
        groupbuy,
        admin,
        group_size=3,
        stock=3,
        group_window_seconds=1,
        virtual_completion=True,
        min_real_members=1,
    )
    expired = await open_group(groupbuy, token, plain["id"], "a")
    closed = await open_group(groupbuy, token, virtual["id"], "a")
    await asyncio.sleep(1.1)
    resp = await groupbuy.post(f"/api/groupbuy/groups/{expired}/join", headers=token("b"))
    assert await error(resp) == (410, "group_expired")  # before the sweeper settled it
    store = groupbuy.server.app[GROUPBUY].store
    assert (await store.expire_group(plain["id"], expired)).result == "failed"
    assert (await store.expire_group(virtual["id"], closed)).result == "virtual"
    before = await keyspace(redis)
    resp = await groupbuy.post(f"/api/groupbuy/groups/{expired}/join", headers=token("b"))
    assert await error(resp) == (410, "group_expired")
    resp = await groupbuy.post(f"/api/groupbuy/groups/{closed}/join", headers=token("b"))
    assert await error(resp) == (409, "group_completed")
    assert await keyspace(redis) == before
    card = await (await groupbuy.get(f"/api/groupbuy/groups/{closed}", headers=token("b"))).json()
    assert (card["state"], card["completion"], card["slots_left"]) == ("completed", "virtual", 0)
    assert campaign_keys(virtual["id"]).stock.encode() in before
