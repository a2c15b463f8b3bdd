"""The group-buy admin API (docs/admin-api.md) on the real Redis, PostgreSQL and broker:
who may call what, every refusal with its code and nothing changed, the audit entries,
edits that opening and joining obey, the stock rule under concurrency, ending and
cancelling (open groups failed exactly once through the sweeper's path) and the live
figures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from services.common.auth import mint_token
from services.common.settings import Settings
from services.common.topics import GROUPBUY, ORDERS
from services.groupbuy.domain import outbox_event
from services.groupbuy.keys import campaign_keys
from tests.helpers import (
    campaign_body,
    create_campaign,
    payment_body,
    post_payment,
    read_topic,
    redis_keyspace,
    started_client,
    wait_for,
)

Client = TestClient[Any, Any]
Token = Callable[..., dict[str, str]]
Headers = dict[str, str]
ADMIN = "/api/groupbuy/admin/campaigns"
OPERATOR = "merchant:ops"


@pytest.fixture
def merchant(settings: Settings) -> Callable[[str], Headers]:
    """Headers of a merchant with one role: merchant("operator"), merchant("viewer")."""

    def make(role: str) -> Headers:
        sub = OPERATOR if role == "operator" else f"merchant:{role}"
        return {"Authorization": f"Bearer {mint_token(settings.jwt_keys(), sub, [role])}"}

    return make


@pytest.fixture
def op(merchant: Callable[[str], Headers]) -> Headers:
    return merchant("operator")


@pytest.fixture
async def gb_service(settings: Settings) -> AsyncIterator[Client]:
    """The whole groupbuy service in-process: relay, sweeper and consumers running."""
    from services.groupbuy.app import create_app

    client = await started_client(create_app(settings))
    yield client
    await client.close()


def later(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def upcoming(**overrides: Any) -> dict[str, Any]:
    return {"starts_at": later(3600), "ends_at": later(7200), **overrides}


async def error(resp: Any) -> tuple[int, str]:
    return resp.status, (await resp.json())["error"]


async def bad_field(resp: Any) -> tuple[int, str, str | None]:
    body = await resp.json()
    return resp.status, body["error"], body.get("field")


async def audit_rows(db: asyncpg.Connection) -> list[tuple[Any, ...]]:
    rows = await db.fetch(
        "SELECT actor, action, target, target_id, before::text, after::text"
        " FROM groupbuy.admin_audit ORDER BY id"
    )
    return [
        (
            r["actor"],
            r["action"],
            r["target"],
            r["target_id"],
            None if r["before"] is None else orjson.loads(r["before"]),
            None if r["after"] is None else orjson.loads(r["after"]),
        )
        for r in rows
    ]


async def campaign_row(db: asyncpg.Connection, campaign_id: int) -> dict[str, Any]:
    row = await db.fetchrow("SELECT * FROM groupbuy.campaigns WHERE id = $1", campaign_id)
    assert row is not None
    return dict(row)


async def open_group(client: Client, token: Token, campaign_id: int, user: str) -> Any:
    return await client.post(f"/api/groupbuy/campaigns/{campaign_id}/groups", headers=token(user))


async def opened(client: Client, token: Token, campaign_id: int, user: str) -> str:
    resp = await open_group(client, token, campaign_id, user)
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["id"])


async def join(client: Client, token: Token, gid: str, user: str) -> Any:
    return await client.post(f"/api/groupbuy/groups/{gid}/join", headers=token(user))


async def outbox(redis: Redis, campaign_id: int) -> list[Any]:
    entries = await redis.xrange(campaign_keys(campaign_id).outbox)
    return [
        outbox_event(campaign_id, {k.decode(): v.decode() for k, v in fields.items()})
        for _, fields in entries
    ]


async def redis_total(redis: Redis, campaign_id: int) -> tuple[int, int]:
    keys = campaign_keys(campaign_id)
    total = await redis.hget(keys.meta, "total")
    remaining = await redis.get(keys.stock)
    return int(total or -1), int(remaining or -1)


# --- who may call what ------------------------------------------------------------------


async def test_admin_routes_need_a_merchant_token_and_changes_need_an_operator(
    groupbuy: Client,
    token: Token,
    merchant: Callable[[str], Headers],
    op: Headers,
    db: asyncpg.Connection,
    redis: Redis,
) -> None:
    campaign = await create_campaign(groupbuy, op, **upcoming())
    url = f"{ADMIN}/{campaign['id']}"
    reads = [("GET", ADMIN), ("GET", url), ("GET", f"{url}/audit"), ("GET", f"{url}/live")]
    changes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("PATCH", url, {"title": "x"}),
        ("PUT", f"{url}/stock", {"stock": 60}),
        ("POST", f"{url}/end", None),
        ("POST", f"{url}/cancel", None),
        ("POST", ADMIN, campaign_body()),
    ]
    before_db = await campaign_row(db, campaign["id"])
    before_redis = await redis_keyspace(redis, "gb:*")
    for method, path, body in [(m, p, None) for m, p in reads] + changes:
        resp = await groupbuy.request(method, path, json=body)
        assert await error(resp) == (401, "unauthorized"), (method, path)
        resp = await groupbuy.request(method, path, json=body, headers=token("shopper"))
        assert await error(resp) == (403, "forbidden"), (method, path)
    for method, path, body in changes:
        resp = await groupbuy.request(method, path, json=body, headers=merchant("viewer"))
        assert await error(resp) == (403, "forbidden"), (method, path)
    for _, path in reads[:3]:
        assert (await groupbuy.get(path, headers=merchant("viewer"))).status == 200
    assert await campaign_row(db, campaign["id"]) == before_db
    assert await redis_keyspace(redis, "gb:*") == before_redis
    assert await db.fetchval("SELECT count(*) FROM groupbuy.campaigns") == 1
    assert [r[1] for r in await audit_rows(db)] == ["campaign.create"]


async def test_unknown_campaigns_are_404_on_every_admin_route(
    groupbuy: Client, op: Headers
) -> None:
    for raw in ("999", "x", "0"):
        url = f"{ADMIN}/{raw}"
        for method, path, body in [
            ("GET", url, None),
            ("GET", f"{url}/audit", None),
            ("GET", f"{url}/live", None),
            ("PATCH", url, {"title": "x"}),
            ("PUT", f"{url}/stock", {"stock": 10}),
            ("POST", f"{url}/end", None),
            ("POST", f"{url}/cancel", None),
        ]:
            resp = await groupbuy.request(method, path, json=body, headers=op)
            assert await error(resp) == (404, "not_found"), (method, path)


# --- create, list, read -----------------------------------------------------------------


async def test_creating_a_campaign_is_audited_with_what_it_was_created_with(
    groupbuy: Client, op: Headers, db: asyncpg.Connection
) -> None:
    body = campaign_body(starts_at="2031-01-01T00:00:00Z", ends_at="2031-01-02T00:00:00Z")
    created = await create_campaign(groupbuy, op, **body)
    assert await audit_rows(db) == [
        (
            OPERATOR,
            "campaign.create",
            "campaign",
            str(created["id"]),
            None,
            {
                "id": created["id"],
                "sku": "sku-gb",
                "group_size": 5,
                "virtual_completion": False,
                "min_real_members": 5,
                "title": "Tea for five",
                "group_price_cents": 4900,
                "single_price_cents": 9900,
                "starts_at": "2031-01-01T00:00:00.000Z",
                "ends_at": "2031-01-02T00:00:00.000Z",
                "stock": 50,
                "group_window_seconds": 3600,
                "per_user_limit": 1,
                "payment_timeout_seconds": 900,
            },
        )
    ]


async def test_the_list_pages_newest_start_first_and_filters_by_state(
    groupbuy: Client, op: Headers, merchant: Callable[[str], Headers]
) -> None:
    viewer = merchant("viewer")
    live_old = await create_campaign(groupbuy, op, starts_at=later(-600))
    live_new = await create_campaign(groupbuy, op, starts_at=later(-60))
    soon = await create_campaign(groupbuy, op, **upcoming())
    ended = await create_campaign(groupbuy, op, starts_at=later(-30))
    cancelled = await create_campaign(groupbuy, op, starts_at=later(-10))
    assert (await groupbuy.post(f"{ADMIN}/{ended['id']}/end", headers=op)).status == 200
    assert (await groupbuy.post(f"{ADMIN}/{cancelled['id']}/cancel", headers=op)).status == 200

    async def listed(query: str) -> tuple[list[tuple[int, str]], int, int, int]:
        resp = await groupbuy.get(f"{ADMIN}{query}", headers=viewer)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        items = [(c["id"], c["state"]) for c in body["campaigns"]]
        return items, body["total"], body["limit"], body["offset"]

    assert await listed("") == (
        [
            (soon["id"], "upcoming"),
            (cancelled["id"], "cancelled"),
            (ended["id"], "ended"),
            (live_new["id"], "live"),
            (live_old["id"], "live"),
        ],
        5,
        20,
        0,
    )
    assert await listed("?state=live") == (
        [(live_new["id"], "live"), (live_old["id"], "live")],
        2,
        20,
        0,
    )
    assert await listed("?state=upcoming") == ([(soon["id"], "upcoming")], 1, 20, 0)
    assert await listed("?state=ended") == ([(ended["id"], "ended")], 1, 20, 0)
    assert await listed("?state=cancelled") == ([(cancelled["id"], "cancelled")], 1, 20, 0)
    assert await listed("?limit=2&offset=1") == (
        [(cancelled["id"], "cancelled"), (ended["id"], "ended")],
        5,
        2,
        1,
    )
    assert await listed("?offset=5") == ([], 5, 20, 5)
    for query, field in [
        ("?state=sold_out", "state"),
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?offset=-1", "offset"),
        ("?colour=red", "colour"),
    ]:
        resp = await groupbuy.get(f"{ADMIN}{query}", headers=viewer)
        assert await bad_field(resp) == (400, "invalid_request", field), query


async def test_the_admin_view_adds_state_warm_up_and_live_figures_to_the_shoppers_view(
    groupbuy: Client, op: Headers, token: Token, merchant: Callable[[str], Headers]
) -> None:
    campaign = await create_campaign(groupbuy, op, group_size=3, stock=9)
    gid = await opened(groupbuy, token, campaign["id"], "leader")
    assert (await join(groupbuy, token, gid, "m1")).status == 201
    resp = await groupbuy.get(f"{ADMIN}/{campaign['id']}", headers=merchant("viewer"))
    assert resp.status == 200
    view = await resp.json()
    shopper = await (
        await groupbuy.get(f"/api/groupbuy/campaigns/{campaign['id']}", headers=token("u"))
    ).json()
    figures = view.pop("figures")
    created_at = view.pop("created_at")
    assert datetime.fromisoformat(created_at) <= datetime.now(UTC)
    assert view == {
        **shopper,
        "state": "live",
        "ended_early": False,
        "cancelled_at": None,
        "warm_up": "done",
    }
    assert shopper["remaining_stock"] == 6
    figures.pop("at")
    # Groups and members come from the record (the consumer is not running here).
    assert figures == {
        "campaign_id": campaign["id"],
        "state": "live",
        "stock": 9,
        "remaining": 6,
        "reserved_units": 3,
        "groups_open": 0,
        "groups_completed": 0,
        "groups_failed": 0,
        "members": 0,
    }


# --- edit -------------------------------------------------------------------------------


async def test_an_edit_of_an_upcoming_campaign_is_what_opening_and_joining_then_use(
    groupbuy: Client, op: Headers, token: Token, db: asyncpg.Connection, redis: Redis
) -> None:
    campaign = await create_campaign(groupbuy, op, **upcoming(group_size=2, stock=10))
    cid = campaign["id"]
    resp = await open_group(groupbuy, token, cid, "a")
    assert await error(resp) == (409, "not_started")
    start = datetime.now(UTC) - timedelta(seconds=1)
    edit = {
        "title": "Tea for two",
        "group_price_cents": 3900,
        "starts_at": start.isoformat(),
        "stock": 4,
        "group_window_seconds": 120,
        "per_user_limit": 2,
        "payment_timeout_seconds": 900,  # unchanged: not in the audit entry
    }
    resp = await groupbuy.patch(f"{ADMIN}/{cid}", json=edit, headers=op)
    assert resp.status == 200, await resp.text()
    view = await resp.json()
    assert (view["title"], view["group_price_cents"], view["stock"]) == ("Tea for two", 3900, 4)
    assert (view["state"], view["status"], view["remaining_stock"]) == ("live", "live", 4)
    row = await campaign_row(db, cid)
    assert (row["title"], row["stock"], row["per_user_limit"]) == ("Tea for two", 4, 2)
    assert row["updated_at"] > row["created_at"]
    [_, entry] = await audit_rows(db)
    starts = start.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert entry == (
        OPERATOR,
        "campaign.edit",
        "campaign",
        str(cid),
        {
            "title": "Tea for five",
            "group_price_cents": 4900,
            "starts_at": campaign["starts_at"],
            "stock": 10,
            "group_window_seconds": 3600,
            "per_user_limit": 1,
        },
        {
            "title": "Tea for two",
            "group_price_cents": 3900,
            "starts_at": starts,
            "stock": 4,
            "group_window_seconds": 120,
            "per_user_limit": 2,
        },
    )
    # Opening and joining follow the edit: new start, price, window, limit and stock.
    first = await opened(groupbuy, token, cid, "a")
    second = await opened(groupbuy, token, cid, "a")  # a limit of 2
    assert await error(await open_group(groupbuy, token, cid, "a")) == (409, "limit_reached")
    assert (await join(groupbuy, token, first, "b")).status == 201
    assert await error(await open_group(groupbuy, token, cid, "c")) == (410, "sold_out")
    events = await outbox(redis, cid)
    assert [e.type for e in events] == [
        "group.opened",
        "group.opened",
        "group.joined",
        "group.completed",
    ]
    assert [e.data["unit_price_cents"] for e in events[:3]] == [3900, 3900, 3900]
    for e in events[:2]:
        opened_at = datetime.fromisoformat(e.data["opened_at"])
        assert datetime.fromisoformat(e.data["deadline"]) - opened_at == timedelta(seconds=120)
    assert [e.key for e in events] == [first, second, first, first]
    assert await redis_total(redis, cid) == (4, 0)


async def test_an_edit_is_refused_with_its_own_code_and_changes_nothing(
    groupbuy: Client, op: Headers, db: asyncpg.Connection, redis: Redis
) -> None:
    upcoming_one = await create_campaign(groupbuy, op, **upcoming())
    live = await create_campaign(groupbuy, op)
    ended = await create_campaign(groupbuy, op)
    cancelled = await create_campaign(groupbuy, op, **upcoming())
    assert (await groupbuy.post(f"{ADMIN}/{ended['id']}/end", headers=op)).status == 200
    assert (await groupbuy.post(f"{ADMIN}/{cancelled['id']}/cancel", headers=op)).status == 200
    url = f"{ADMIN}/{upcoming_one['id']}"
    rows = {c["id"]: await campaign_row(db, c["id"]) for c in (upcoming_one, live, ended)}
    keyspace = await redis_keyspace(redis, "gb:*")
    audited = await audit_rows(db)
    for body, field in [
        ({"sku": "other"}, "sku"),
        ({"group_size": 3}, "group_size"),
        ({"virtual_completion": True}, "virtual_completion"),
        ({"min_real_members": 2}, "min_real_members"),
        ({"colour": "red"}, "colour"),
        ({"title": ""}, "title"),
        ({"stock": 4}, "stock"),  # less than one group of 5
        ({"group_price_cents": 9900}, "group_price_cents"),  # not below the single price
        ({"single_price_cents": 4900}, "group_price_cents"),
        ({"ends_at": later(1800)}, "ends_at"),  # before the start
        ({"starts_at": "tomorrow"}, "starts_at"),
        ({"per_user_limit": 0}, "per_user_limit"),
    ]:
        resp = await groupbuy.patch(url, json=body, headers=op)
        assert await bad_field(resp) == (400, "invalid_request", field), body
    resp = await groupbuy.patch(f"{ADMIN}/{live['id']}", json={"title": "x"}, headers=op)
    assert await error(resp) == (409, "already_started")
    for closed in (ended, cancelled):
        resp = await groupbuy.patch(f"{ADMIN}/{closed['id']}", json={"title": "x"}, headers=op)
        assert await error(resp) == (409, "sale_closed")
    assert {c: await campaign_row(db, c) for c in rows} == rows
    assert await redis_keyspace(redis, "gb:*") == keyspace
    assert await audit_rows(db) == audited


async def test_an_edit_racing_the_start_is_refused_by_redis_time_and_rolled_back(
    groupbuy: Client, op: Headers, db: asyncpg.Connection, redis: Redis
) -> None:
    # PostgreSQL's clock says upcoming; Redis, whose TIME open.lua obeys, already started.
    campaign = await create_campaign(groupbuy, op, **upcoming())
    meta = campaign_keys(campaign["id"]).meta
    await redis.hset(meta, "starts_ms", 0)
    row = await campaign_row(db, campaign["id"])
    keyspace = await redis_keyspace(redis, "gb:*")
    resp = await groupbuy.patch(
        f"{ADMIN}/{campaign['id']}", json={"title": "late", "stock": 40}, headers=op
    )
    assert await error(resp) == (409, "already_started")
    assert await campaign_row(db, campaign["id"]) == row
    assert await redis_keyspace(redis, "gb:*") == keyspace
    assert [r[1] for r in await audit_rows(db)] == ["campaign.create"]


async def test_a_campaign_created_while_redis_was_down_cannot_change_before_its_warm_up(
    groupbuy: Client, op: Headers, db: asyncpg.Connection, redis: Redis
) -> None:
    campaign = await create_campaign(groupbuy, op, **upcoming())
    cid = campaign["id"]
    # What a create answered 202 leaves: the record, no Redis state, warm-up pending.
    await db.execute("UPDATE groupbuy.campaigns SET warmed_at = NULL WHERE id = $1", cid)
    await redis.delete(campaign_keys(cid).meta, campaign_keys(cid).stock)
    for method, path, body in [
        ("PATCH", f"{ADMIN}/{cid}", {"title": "x"}),
        ("PUT", f"{ADMIN}/{cid}/stock", {"stock": 60}),
        ("POST", f"{ADMIN}/{cid}/end", None),
        ("POST", f"{ADMIN}/{cid}/cancel", None),
    ]:
        resp = await groupbuy.request(method, path, json=body, headers=op)
        assert await error(resp) == (409, "warm_up_pending"), (method, path)
    view = await (await groupbuy.get(f"{ADMIN}/{cid}", headers=op)).json()
    assert (view["warm_up"], view["figures"]["remaining"], view["figures"]["stock"]) == (
        "pending",
        None,
        50,
    )


# --- stock ------------------------------------------------------------------------------


async def test_the_stock_total_changes_while_live_but_never_below_what_groups_hold(
    groupbuy: Client, op: Headers, token: Token, db: asyncpg.Connection, redis: Redis
) -> None:
    campaign = await create_campaign(groupbuy, op, group_size=3, stock=9)
    cid = campaign["id"]
    url = f"{ADMIN}/{cid}/stock"
    gid = await opened(groupbuy, token, cid, "leader")
    await opened(groupbuy, token, cid, "other")
    assert (await join(groupbuy, token, gid, "m1")).status == 201
    assert await redis_total(redis, cid) == (9, 3)  # two open groups hold 6

    resp = await groupbuy.put(url, json={"stock": 5}, headers=op)
    assert resp.status == 409
    assert await resp.json() == {
        "error": "below_reserved",
        "message": "6 units of the campaign are already taken: its stock cannot be set below that",
        "reserved_units": 6,
    }
    for body, field in [
        ({"stock": 2}, "stock"),  # below one group
        ({"stock": "12"}, "stock"),
        ({}, "stock"),
        ({"stock": 12, "extra": 1}, "extra"),
    ]:
        resp = await groupbuy.put(url, json=body, headers=op)
        assert await bad_field(resp) == (400, "invalid_request", field), body
    assert await redis_total(redis, cid) == (9, 3)
    assert (await campaign_row(db, cid))["stock"] == 9

    resp = await groupbuy.put(url, json={"stock": 6}, headers=op)
    assert resp.status == 200
    assert ((await resp.json())["stock"], (await resp.json())["remaining_stock"]) == (6, 0)
    assert await error(await open_group(groupbuy, token, cid, "x")) == (410, "sold_out")
    resp = await groupbuy.put(url, json={"stock": 12}, headers=op)
    assert ((await resp.json())["stock"], (await resp.json())["remaining_stock"]) == (12, 6)
    again = await groupbuy.put(url, json={"stock": 12}, headers=op)  # the same total: no-op
    assert again.status == 200 and (await again.json())["stock"] == 12
    assert await redis_total(redis, cid) == (12, 6)
    assert (await campaign_row(db, cid))["stock"] == 12
    assert [(r[1], r[4], r[5]) for r in await audit_rows(db)][1:] == [
        ("campaign.stock", {"stock": 9}, {"stock": 6}),
        ("campaign.stock", {"stock": 6}, {"stock": 12}),
    ]
    # The shoppers' page follows at once in this process.
    page = await (await groupbuy.get(f"/api/groupbuy/campaigns/{cid}", headers=token("u"))).json()
    assert (page["stock"], page["remaining_stock"]) == (12, 6)


async def test_a_raise_committed_before_a_crash_is_caught_up_by_the_same_put(
    groupbuy: Client, op: Headers, db: asyncpg.Connection, redis: Redis
) -> None:
    campaign = await create_campaign(groupbuy, op, stock=20)
    cid = campaign["id"]
    # A raise reaches PostgreSQL first: a crash before its Redis step leaves Redis lower.
    await db.execute("UPDATE groupbuy.campaigns SET stock = 30 WHERE id = $1", cid)
    assert await redis_total(redis, cid) == (20, 20)
    resp = await groupbuy.put(f"{ADMIN}/{cid}/stock", json={"stock": 30}, headers=op)
    assert resp.status == 200 and (await resp.json())["remaining_stock"] == 30
    assert await redis_total(redis, cid) == (30, 30)
    assert [r[1] for r in await audit_rows(db)] == ["campaign.create"]  # PostgreSQL unchanged


async def test_stock_changes_racing_group_opens_never_go_below_what_the_groups_hold(
    groupbuy: Client, op: Headers, token: Token, db: asyncpg.Connection, redis: Redis
) -> None:
    campaign = await create_campaign(groupbuy, op, group_size=2, stock=20)
    cid = campaign["id"]
    url = f"{ADMIN}/{cid}/stock"
    totals = [4, 6, 8, 10, 14, 16, 2 * 10]
    results = await asyncio.gather(
        *[open_group(groupbuy, token, cid, f"u{i}") for i in range(12)],
        *[groupbuy.put(url, json={"stock": t}, headers=op) for t in totals],
    )
    opens, puts = results[:12], results[12:]
    opened_now = sum(r.status == 201 for r in opens)
    assert {r.status for r in opens} <= {201, 410}
    refused = [(t, await r.json()) for t, r in zip(totals, puts, strict=True) if r.status != 200]
    assert {r.status for r in puts} <= {200, 409}
    for total, body in refused:
        assert body["error"] == "below_reserved" and body["reserved_units"] > total
    pg_total = (await campaign_row(db, cid))["stock"]
    total, remaining = await redis_total(redis, cid)
    # Redis and PostgreSQL agree, and every open group's units are covered by the total.
    assert total == pg_total
    assert remaining >= 0 and remaining + 2 * opened_now == total
    accepted = [t for t, r in zip(totals, puts, strict=True) if r.status == 200]
    changes = [r[5]["stock"] for r in await audit_rows(db) if r[1] == "campaign.stock"]
    assert set(changes) <= set(accepted)
    assert (changes[-1] if changes else 20) == pg_total
    # Two operators setting the same total at once: one change, one audit entry.
    same = await asyncio.gather(
        groupbuy.put(url, json={"stock": 30}, headers=op),
        groupbuy.put(url, json={"stock": 30}, headers=op),
    )
    assert [r.status for r in same] == [200, 200]
    after = [r[5] for r in await audit_rows(db) if r[1] == "campaign.stock"]
    assert after.count({"stock": 30}) == 1
    assert await redis_total(redis, cid) == (30, 30 - 2 * opened_now)


# --- end --------------------------------------------------------------------------------


async def test_ending_refuses_new_groups_at_once_but_an_open_group_may_still_fill(
    groupbuy: Client, op: Headers, token: Token, db: asyncpg.Connection, redis: Redis
) -> None:
    campaign = await create_campaign(groupbuy, op, group_size=3, stock=9)
    cid = campaign["id"]
    gid = await opened(groupbuy, token, cid, "leader")
    resp = await groupbuy.post(f"{ADMIN}/{cid}/end", headers=op)
    assert resp.status == 200, await resp.text()
    view = await resp.json()
    assert (view["state"], view["ended_early"], view["status"]) == ("ended", True, "ended")
    assert await error(await open_group(groupbuy, token, cid, "late")) == (410, "campaign_ended")
    assert (await join(groupbuy, token, gid, "m1")).status == 201
    resp = await join(groupbuy, token, gid, "m2")
    assert resp.status == 201 and (await resp.json())["state"] == "completed"
    assert [e.type for e in await outbox(redis, cid)] == [
        "group.opened",
        "group.joined",
        "group.joined",
        "group.completed",
    ]
    again = await groupbuy.post(f"{ADMIN}/{cid}/end", headers=op)
    assert again.status == 200 and await again.json() == {**view, "remaining_stock": 6}
    ended_at = (await campaign_row(db, cid))["ended_early_at"]
    assert ended_at is not None
    at = ended_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert [r[1:] for r in await audit_rows(db)][1:] == [
        (
            "campaign.end",
            "campaign",
            str(cid),
            {"state": "live"},
            {"state": "ended", "ended_early_at": at},
        )
    ]
    page = await (await groupbuy.get(f"/api/groupbuy/campaigns/{cid}", headers=token("u"))).json()
    assert page["status"] == "ended"


async def test_only_a_live_campaign_can_be_ended(
    groupbuy: Client, op: Headers, db: asyncpg.Connection
) -> None:
    soon = await create_campaign(groupbuy, op, **upcoming())
    cancelled = await create_campaign(groupbuy, op)
    assert (await groupbuy.post(f"{ADMIN}/{cancelled['id']}/cancel", headers=op)).status == 200
    audited = await audit_rows(db)
    for campaign in (soon, cancelled):
        resp = await groupbuy.post(f"{ADMIN}/{campaign['id']}/end", headers=op)
        assert await error(resp) == (409, "not_live")
    resp = await groupbuy.post(f"{ADMIN}/{soon['id']}/end", json={"now": True}, headers=op)
    assert await bad_field(resp) == (400, "invalid_request", "now")
    assert (await campaign_row(db, soon["id"]))["ended_early_at"] is None
    assert await audit_rows(db) == audited


# --- cancel -----------------------------------------------------------------------------


async def test_cancelling_fails_every_open_group_once_and_their_orders_are_cancelled(
    gb_service: Client,
    orders: Client,
    op: Headers,
    token: Token,
    db: asyncpg.Connection,
    redis: Redis,
    settings: Settings,
) -> None:
    # Virtual completion would complete these groups at expiry: a cancel must fail them.
    campaign = await create_campaign(
        gb_service,
        op,
        group_size=3,
        stock=12,
        virtual_completion=True,
        min_real_members=1,
    )
    cid = campaign["id"]
    first = await opened(gb_service, token, cid, "leader")
    assert (await join(gb_service, token, first, "m1")).status == 201
    second = await opened(gb_service, token, cid, "solo")
    full = await opened(gb_service, token, cid, "f1")
    assert [(await join(gb_service, token, full, u)).status for u in ("f2", "f3")] == [201, 201]
    order_rows = "SELECT user_id, id, amount_cents FROM orders.orders WHERE group_id = $1"

    async def orders_of(gid: str) -> int:
        return len(await db.fetch(order_rows, gid))

    assert await wait_for(lambda: orders_of(first), 2) == 2
    leader = {r["user_id"]: r for r in await db.fetch(order_rows, first)}["leader"]
    body = payment_body(str(leader["id"]), leader["amount_cents"], "txn-cancelled")
    assert (await post_payment(orders, settings.payment_webhook_secret, body))[0] == 200

    resp = await gb_service.post(f"{ADMIN}/{cid}/cancel", headers=op)
    assert resp.status == 200, await resp.text()
    view = await resp.json()
    assert (view["state"], view["status"], view["cancelled_at"] is not None) == (
        "cancelled",
        "cancelled",
        True,
    )
    # Failed at once (the route's own sweep), their units back; the full group stands.
    assert (await redis.hget(campaign_keys(cid).group(first), "state")) == b"failed"
    assert (await redis.hget(campaign_keys(cid).group(second), "state")) == b"failed"
    assert (await redis.hget(campaign_keys(cid).group(full), "state")) == b"completed"
    assert await redis_total(redis, cid) == (12, 9)
    assert await error(await open_group(gb_service, token, cid, "new")) == (410, "sale_cancelled")
    assert await error(await join(gb_service, token, first, "late")) == (410, "sale_cancelled")
    assert (await gb_service.post(f"{ADMIN}/{cid}/cancel", headers=op)).status == 200

    query = "SELECT user_id, state, cancel_reason FROM orders.orders WHERE group_id = ANY($1)"

    async def cancelled() -> list[tuple[str, str, str | None]]:
        rows = await db.fetch(query, [first, second])
        return sorted((r["user_id"], r["state"], r["cancel_reason"]) for r in rows)

    expected = [
        ("leader", "cancelled", "group_failed"),
        ("m1", "cancelled", "group_failed"),
        ("solo", "cancelled", "group_failed"),
    ]
    assert await wait_for(cancelled, expected) == expected
    events = await read_topic(
        settings, GROUPBUY, lambda es: sum(e.type == "group.failed" for e in es) >= 2
    )
    failed = sorted(e.key for e in events if e.type == "group.failed")
    assert failed == sorted([first, second])
    assert [e.key for e in events if e.type == "group.completed"] == [full]
    refunds = await read_topic(
        settings, ORDERS, lambda es: any(e.type == "order.refund_requested" for e in es)
    )
    assert [e.data["transaction_id"] for e in refunds if e.type == "order.refund_requested"] == [
        "txn-cancelled"
    ]
    record = "SELECT id, state FROM groupbuy.groups WHERE campaign_id = $1 ORDER BY id"

    async def recorded() -> list[tuple[str, str]]:
        return [(r["id"], r["state"]) for r in await db.fetch(record, cid)]

    states = sorted([(first, "failed"), (second, "failed"), (full, "completed")])
    assert await wait_for(recorded, states) == states
    assert [(r[1], r[4]["state"], r[5]["state"]) for r in (await audit_rows(db))[1:]] == [
        ("campaign.cancel", "live", "cancelled")
    ]


async def test_an_ended_campaign_cannot_be_cancelled_and_an_upcoming_one_can(
    groupbuy: Client, op: Headers, token: Token, db: asyncpg.Connection
) -> None:
    ended = await create_campaign(groupbuy, op)
    assert (await groupbuy.post(f"{ADMIN}/{ended['id']}/end", headers=op)).status == 200
    resp = await groupbuy.post(f"{ADMIN}/{ended['id']}/cancel", headers=op)
    assert await error(resp) == (409, "sale_closed")
    assert (await campaign_row(db, ended["id"]))["cancelled_at"] is None
    soon = await create_campaign(groupbuy, op, **upcoming())
    resp = await groupbuy.post(f"{ADMIN}/{soon['id']}/cancel", headers=op)
    assert resp.status == 200 and (await resp.json())["state"] == "cancelled"
    resp = await groupbuy.put(f"{ADMIN}/{soon['id']}/stock", json={"stock": 60}, headers=op)
    assert await error(resp) == (409, "sale_closed")
    assert await error(await open_group(groupbuy, token, soon["id"], "u")) == (
        410,
        "sale_cancelled",
    )
    page = await (
        await groupbuy.get(f"/api/groupbuy/campaigns/{soon['id']}", headers=token("u"))
    ).json()
    assert page["status"] == "cancelled"
    trail = await (await groupbuy.get(f"{ADMIN}/{soon['id']}/audit", headers=op)).json()
    assert [(e["action"], e["actor"]) for e in trail["entries"]] == [
        ("campaign.cancel", OPERATOR),
        ("campaign.create", OPERATOR),
    ]
    assert trail["entries"][0]["before"] == {"state": "upcoming"}


# --- live figures -----------------------------------------------------------------------


async def read_figures(resp: Any, until: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Figures events of an SSE stream until one satisfies `until`."""
    event = ""
    async with asyncio.timeout(20):
        while True:
            line = (await resp.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: ") and event == "figures":
                figures: dict[str, Any] = orjson.loads(line[len("data: ") :])
                if until(figures):
                    return figures


async def test_the_live_stream_reaches_the_exact_final_figures(
    gb_service: Client, op: Headers, token: Token, merchant: Callable[[str], Headers]
) -> None:
    campaign = await create_campaign(gb_service, op, group_size=2, stock=10)
    cid = campaign["id"]
    resp = await gb_service.get(f"{ADMIN}/{cid}/live", headers=merchant("viewer"))
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    first = await read_figures(resp, lambda f: True)
    assert {k: v for k, v in first.items() if k != "at"} == {
        "campaign_id": cid,
        "state": "live",
        "stock": 10,
        "remaining": 10,
        "reserved_units": 0,
        "groups_open": 0,
        "groups_completed": 0,
        "groups_failed": 0,
        "members": 0,
    }
    full = await opened(gb_service, token, cid, "a")
    assert (await join(gb_service, token, full, "b")).status == 201
    await opened(gb_service, token, cid, "c")
    await opened(gb_service, token, cid, "d")
    put = await gb_service.put(f"{ADMIN}/{cid}/stock", json={"stock": 12}, headers=op)
    assert put.status == 200
    final = {
        "campaign_id": cid,
        "state": "live",
        "stock": 12,
        "remaining": 6,
        "reserved_units": 6,
        "groups_open": 2,
        "groups_completed": 1,
        "groups_failed": 0,
        "members": 4,
    }
    last = await read_figures(resp, lambda f: {k: v for k, v in f.items() if k != "at"} == final)
    assert datetime.fromisoformat(last["at"]) > datetime.fromisoformat(first["at"])
    resp.close()
    view = await (await gb_service.get(f"{ADMIN}/{cid}", headers=op)).json()
    assert {k: v for k, v in view["figures"].items() if k != "at"} == final
