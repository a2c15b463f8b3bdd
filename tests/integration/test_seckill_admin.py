"""The seckill admin API (docs/admin-api.md) on real Redis, PostgreSQL and Kafka: who may
call it, what each change does to the record, the gate and the audit log, and that a
change is what the next press sees."""

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
from services.common.events import SECKILL_CANCELLED, event_id_for
from services.common.settings import Settings
from services.common.topics import SECKILL_RESERVATIONS
from services.seckill.keys import activity_keys
from tests.helpers import activity_body, read_topic, running_relay, started_client, wait_for

Client = TestClient[Any, Any]
Headers = dict[str, str]
ADMIN = "/api/seckill/admin/activities"
OPERATOR = "merchant:7"


@pytest.fixture
def bearer(settings: Settings) -> Callable[..., Headers]:
    def make(sub: str, *roles: str) -> Headers:
        return {"Authorization": f"Bearer {mint_token(settings.jwt_keys(), sub, roles)}"}

    return make


@pytest.fixture
def operator(bearer: Callable[..., Headers]) -> Headers:
    return bearer(OPERATOR, "operator")


@pytest.fixture
def viewer(bearer: Callable[..., Headers]) -> Headers:
    return bearer("merchant:8", "viewer")


@pytest.fixture
def shopper(bearer: Callable[..., Headers]) -> Callable[[str], Headers]:
    return lambda user: bearer(user)


def at(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


async def create(client: Client, headers: Headers, **overrides: Any) -> dict[str, Any]:
    resp = await client.post(ADMIN, json=activity_body(**overrides), headers=headers)
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def upcoming(client: Client, headers: Headers, **overrides: Any) -> dict[str, Any]:
    return await create(
        client,
        headers,
        starts_at=at(timedelta(hours=1)),
        ends_at=at(timedelta(hours=2)),
        **overrides,
    )


async def call(
    client: Client, method: str, path: str, headers: Headers | None = None, body: Any = None
) -> tuple[int, Any]:
    resp = await client.request(method, path, headers=headers or {}, json=body)
    return resp.status, await resp.json()


async def press(client: Client, activity_id: int, headers: Headers) -> tuple[int, dict[str, Any]]:
    resp = await client.post(f"/api/seckill/activities/{activity_id}/reservations", headers=headers)
    return resp.status, await resp.json()


async def audit_rows(db: asyncpg.Connection) -> list[tuple[Any, ...]]:
    rows = await db.fetch(
        "SELECT actor, action, target, target_id, before::text, after::text"
        " FROM seckill.admin_audit ORDER BY id"
    )
    return [
        (
            r[0],
            r[1],
            r[2],
            r[3],
            None if r[4] is None else orjson.loads(r[4]),
            None if r[5] is None else orjson.loads(r[5]),
        )
        for r in rows
    ]


async def row(db: asyncpg.Connection, activity_id: int) -> asyncpg.Record:
    return await db.fetchrow("SELECT * FROM seckill.activities WHERE id = $1", activity_id)


# --- who may call what ----------------------------------------------------------------

CHANGES = [
    ("PATCH", ADMIN + "/1", {"title": "x"}),
    ("PUT", ADMIN + "/1/stock", {"stock": 3}),
    ("POST", ADMIN + "/1/end", None),
    ("POST", ADMIN + "/1/cancel", None),
    ("POST", ADMIN, activity_body()),
]
READS = [ADMIN, ADMIN + "/1", ADMIN + "/1/audit", ADMIN + "/1/live"]


@pytest.mark.parametrize(("method", "path", "body"), CHANGES)
async def test_changes_need_an_operator_token(
    seckill: Client,
    viewer: Headers,
    shopper: Callable[[str], Headers],
    db: asyncpg.Connection,
    method: str,
    path: str,
    body: Any,
) -> None:
    assert (await call(seckill, method, path, None, body))[0] == 401
    for headers in (shopper("u1"), viewer):
        status, answer = await call(seckill, method, path, headers, body)
        assert (status, answer["error"]) == (403, "forbidden")
    assert await db.fetchval("SELECT count(*) FROM seckill.activities") == 0
    assert await db.fetchval("SELECT count(*) FROM seckill.admin_audit") == 0


@pytest.mark.parametrize("path", READS)
async def test_reads_need_a_viewer_token(
    seckill: Client,
    operator: Headers,
    viewer: Headers,
    shopper: Callable[[str], Headers],
    path: str,
) -> None:
    await create(seckill, operator)
    status, answer = await call(seckill, "GET", path)
    assert (status, answer["error"]) == (401, "unauthorized")
    status, answer = await call(seckill, "GET", path, shopper("u1"))
    assert (status, answer["error"]) == (403, "forbidden")
    resp = await seckill.get(path, headers=viewer)
    assert resp.status == 200
    resp.close()


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("GET", "/audit", None),
        ("GET", "/live", None),
        ("PATCH", "", {"title": "x"}),
        ("PUT", "/stock", {"stock": 3}),
        ("POST", "/end", None),
        ("POST", "/cancel", None),
    ],
)
async def test_unknown_activities_are_404(
    seckill: Client, operator: Headers, method: str, suffix: str, body: Any
) -> None:
    for activity_id in ("999", "abc"):
        status, answer = await call(
            seckill, method, f"{ADMIN}/{activity_id}{suffix}", operator, body
        )
        assert (status, answer["error"]) == (404, "not_found")


# --- create, list, one ----------------------------------------------------------------


async def test_create_is_audited_with_the_created_fields(
    seckill: Client, operator: Headers, db: asyncpg.Connection
) -> None:
    body = activity_body(starts_at="2031-01-01T10:00:00Z", ends_at="2031-01-01T11:00:00Z")
    resp = await seckill.post(ADMIN, json=body, headers=operator)
    assert resp.status == 201
    assert await audit_rows(db) == [
        (
            OPERATOR,
            "activity.create",
            "activity",
            "1",
            None,
            {
                "sku": "sku-1",
                "title": "Limited tea set",
                "price_cents": 9900,
                "starts_at": "2031-01-01T10:00:00.000Z",
                "ends_at": "2031-01-01T11:00:00.000Z",
                "stock": 10,
                "per_user_limit": 1,
                "payment_timeout_seconds": 900,
            },
        )
    ]


async def test_the_list_filters_by_state_in_the_database_newest_start_first(
    seckill: Client, operator: Headers, viewer: Headers
) -> None:
    live = await create(seckill, operator)
    soon = await upcoming(seckill, operator)
    later = await create(
        seckill, operator, starts_at=at(timedelta(hours=3)), ends_at=at(timedelta(hours=4))
    )
    ended = await create(seckill, operator)
    cancelled = await upcoming(seckill, operator)
    assert (await call(seckill, "POST", f"{ADMIN}/{ended['id']}/end", operator))[0] == 200
    assert (await call(seckill, "POST", f"{ADMIN}/{cancelled['id']}/cancel", operator))[0] == 200

    status, page = await call(seckill, "GET", ADMIN, viewer)
    assert status == 200
    assert [a["id"] for a in page["activities"]] == [
        later["id"],
        cancelled["id"],
        soon["id"],
        ended["id"],
        live["id"],
    ]
    assert (page["total"], page["limit"], page["offset"]) == (5, 20, 0)
    states = {a["id"]: a["state"] for a in page["activities"]}
    assert states == {
        live["id"]: "live",
        soon["id"]: "upcoming",
        later["id"]: "upcoming",
        ended["id"]: "ended",
        cancelled["id"]: "cancelled",
    }
    for state, ids in [
        ("upcoming", [later["id"], soon["id"]]),
        ("live", [live["id"]]),
        ("ended", [ended["id"]]),
        ("cancelled", [cancelled["id"]]),
    ]:
        status, page = await call(seckill, "GET", f"{ADMIN}?state={state}", viewer)
        assert [a["id"] for a in page["activities"]] == ids
        assert page["total"] == len(ids)
    status, page = await call(seckill, "GET", f"{ADMIN}?limit=2&offset=1", viewer)
    assert [a["id"] for a in page["activities"]] == [cancelled["id"], soon["id"]]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 1)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("state=sold_out", "state"),
        ("limit=0", "limit"),
        ("offset=-1", "offset"),
        ("colour=red", "colour"),
    ],
)
async def test_bad_list_queries_are_400_naming_the_parameter(
    seckill: Client, viewer: Headers, query: str, field: str
) -> None:
    status, answer = await call(seckill, "GET", f"{ADMIN}?{query}", viewer)
    assert (status, answer["error"], answer["field"]) == (400, "invalid_request", field)


async def test_one_activity_has_the_admin_fields_and_its_figures(
    seckill: Client, operator: Headers, viewer: Headers, shopper: Callable[[str], Headers]
) -> None:
    created = await create(seckill, operator, stock=4)
    assert (await press(seckill, created["id"], shopper("u1")))[0] == 201

    async def presses() -> int:
        _, view = await call(seckill, "GET", f"{ADMIN}/{created['id']}", viewer)
        return int(view["figures"]["presses"])

    # Counted in memory, on the board within a flush (0.25 s).
    assert await wait_for(presses, 1, within=5) == 1
    status, view = await call(seckill, "GET", f"{ADMIN}/{created['id']}", viewer)
    assert status == 200
    figures = view.pop("figures")
    created_at = view.pop("created_at")
    assert datetime.fromisoformat(created_at.replace("Z", "+00:00")) <= datetime.now(UTC)
    assert view == {
        **created,
        "remaining_stock": 3,
        "state": "live",
        "ended_early": False,
        "cancelled_at": None,
        "warm_up": "done",
    }
    figures.pop("at")
    assert figures == {
        "activity_id": created["id"],
        "state": "live",
        "stock": 4,
        "remaining": 3,
        "reserved_units": 1,
        "reservations": 1,
        "presses": 1,
        "sold_out_answers": 0,
    }


# --- edit -----------------------------------------------------------------------------


async def test_an_upcoming_sale_is_edited_in_both_stores_and_audited_with_the_changes(
    seckill: Client, operator: Headers, db: asyncpg.Connection, redis: Redis
) -> None:
    created = await upcoming(seckill, operator, stock=10)
    status, view = await call(
        seckill,
        "PATCH",
        f"{ADMIN}/{created['id']}",
        operator,
        {"title": "Tea set, larger", "price_cents": 500, "stock": 15, "per_user_limit": 1},
    )
    assert status == 200
    assert (view["title"], view["price_cents"], view["stock"], view["remaining_stock"]) == (
        "Tea set, larger",
        500,
        15,
        15,
    )
    assert view["state"] == "upcoming"
    record = await row(db, created["id"])
    assert (record["title"], record["price_cents"], record["stock"]) == ("Tea set, larger", 500, 15)
    keys = activity_keys(created["id"])
    assert await redis.hmget(keys.meta, "price", "total") == [b"500", b"15"]
    assert await redis.get(keys.stock) == b"15"
    # per_user_limit was sent unchanged: only what changed is audited.
    assert (await audit_rows(db))[1:] == [
        (
            OPERATOR,
            "activity.edit",
            "activity",
            str(created["id"]),
            {"title": "Limited tea set", "price_cents": 9900, "stock": 10},
            {"title": "Tea set, larger", "price_cents": 500, "stock": 15},
        )
    ]


async def test_an_edit_is_what_the_next_press_sees(
    seckill: Client, operator: Headers, shopper: Callable[[str], Headers], redis: Redis
) -> None:
    created = await upcoming(seckill, operator)
    starts = datetime.now(UTC) + timedelta(seconds=1)
    status, _ = await call(
        seckill,
        "PATCH",
        f"{ADMIN}/{created['id']}",
        operator,
        {"price_cents": 500, "per_user_limit": 2, "starts_at": starts.isoformat()},
    )
    assert status == 200
    assert (await press(seckill, created["id"], shopper("u1")))[1]["error"] == "not_started"
    await asyncio.sleep(max(0.0, (starts - datetime.now(UTC)).total_seconds()) + 0.05)
    assert (await press(seckill, created["id"], shopper("u1")))[0] == 201
    assert (await press(seckill, created["id"], shopper("u1")))[0] == 201
    status, answer = await press(seckill, created["id"], shopper("u1"))
    assert (status, answer["error"]) == (409, "limit_reached")
    entries = await redis.xrange(activity_keys(created["id"]).outbox)
    assert [e[1][b"price"] for e in entries] == [b"500", b"500"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"sku": "other"}, "sku"),
        ({"colour": "red"}, "colour"),
        ({"stock": 0}, "stock"),
        ({"price_cents": "5"}, "price_cents"),
        ({"title": ""}, "title"),
        ({"ends_at": "2000-01-01T00:00:00Z"}, "ends_at"),
        ({"starts_at": "2099-01-01T00:00:00Z"}, "starts_at"),
        ({"per_user_limit": 1000}, "per_user_limit"),
    ],
)
async def test_a_bad_edit_is_400_naming_the_field_and_changes_nothing(
    seckill: Client,
    operator: Headers,
    db: asyncpg.Connection,
    redis: Redis,
    body: dict[str, Any],
    field: str,
) -> None:
    created = await upcoming(seckill, operator)
    meta = await redis.hgetall(activity_keys(created["id"]).meta)
    status, answer = await call(seckill, "PATCH", f"{ADMIN}/{created['id']}", operator, body)
    assert (status, answer["error"], answer["field"]) == (400, "invalid_request", field)
    assert (await row(db, created["id"]))["title"] == "Limited tea set"
    assert await redis.hgetall(activity_keys(created["id"]).meta) == meta
    assert len(await audit_rows(db)) == 1


async def test_a_started_sale_cannot_be_edited(
    seckill: Client, operator: Headers, db: asyncpg.Connection
) -> None:
    live = await create(seckill, operator)
    status, answer = await call(seckill, "PATCH", f"{ADMIN}/{live['id']}", operator, {"title": "x"})
    assert (status, answer["error"]) == (409, "already_started")
    assert (await row(db, live["id"]))["title"] == "Limited tea set"


async def test_an_edit_rolls_back_when_redis_says_the_sale_started(
    seckill: Client, operator: Headers, db: asyncpg.Connection, redis: Redis
) -> None:
    created = await upcoming(seckill, operator)
    # PostgreSQL still says upcoming; Redis's clock, which opens the sale, says started.
    keys = activity_keys(created["id"])
    await redis.hset(keys.meta, "starts_ms", 1)
    status, answer = await call(
        seckill, "PATCH", f"{ADMIN}/{created['id']}", operator, {"price_cents": 1}
    )
    assert (status, answer["error"]) == (409, "already_started")
    assert (await row(db, created["id"]))["price_cents"] == 9900
    assert await redis.hget(keys.meta, "price") == b"9900"
    assert len(await audit_rows(db)) == 1


async def test_ended_or_cancelled_sales_cannot_be_edited(
    seckill: Client, operator: Headers
) -> None:
    ended = await create(seckill, operator)
    cancelled = await upcoming(seckill, operator)
    await call(seckill, "POST", f"{ADMIN}/{ended['id']}/end", operator)
    await call(seckill, "POST", f"{ADMIN}/{cancelled['id']}/cancel", operator)
    for activity in (ended, cancelled):
        status, answer = await call(
            seckill, "PATCH", f"{ADMIN}/{activity['id']}", operator, {"title": "x"}
        )
        assert (status, answer["error"]) == (409, "sale_closed")


async def test_a_sale_not_yet_in_redis_cannot_be_changed(
    seckill: Client, operator: Headers, db: asyncpg.Connection, redis: Redis
) -> None:
    created = await upcoming(seckill, operator)
    await db.execute("UPDATE seckill.activities SET warmed_at = NULL")
    await redis.flushdb()
    for method, suffix, body in [
        ("PATCH", "", {"title": "x"}),
        ("PUT", "/stock", {"stock": 3}),
        ("POST", "/cancel", None),
    ]:
        status, answer = await call(
            seckill, method, f"{ADMIN}/{created['id']}{suffix}", operator, body
        )
        assert (status, answer["error"]) == (409, "warm_up_pending")
    assert len(await audit_rows(db)) == 1


# --- stock ----------------------------------------------------------------------------


async def test_the_stock_is_set_never_below_the_units_reserved(
    seckill: Client,
    operator: Headers,
    shopper: Callable[[str], Headers],
    db: asyncpg.Connection,
    redis: Redis,
) -> None:
    created = await create(seckill, operator, stock=5)
    stock_path = f"{ADMIN}/{created['id']}/stock"
    for user in ("u1", "u2", "u3"):
        assert (await press(seckill, created["id"], shopper(user)))[0] == 201
    status, answer = await call(seckill, "PUT", stock_path, operator, {"stock": 2})
    assert (status, answer["error"], answer["reserved_units"]) == (409, "below_reserved", 3)
    assert (await row(db, created["id"]))["stock"] == 5
    assert await redis.get(activity_keys(created["id"]).stock) == b"2"

    status, view = await call(seckill, "PUT", stock_path, operator, {"stock": 3})
    assert (status, view["stock"], view["remaining_stock"]) == (200, 3, 0)
    status, view = await call(seckill, "PUT", stock_path, operator, {"stock": 8})
    assert (status, view["stock"], view["remaining_stock"]) == (200, 8, 5)
    # The same total again (a retry) changes nothing and is not audited again.
    status, view = await call(seckill, "PUT", stock_path, operator, {"stock": 8})
    assert (status, view["stock"], view["remaining_stock"]) == (200, 8, 5)
    assert (await row(db, created["id"]))["stock"] == 8
    assert await redis.hget(activity_keys(created["id"]).meta, "total") == b"8"
    assert (await audit_rows(db))[1:] == [
        (OPERATOR, "activity.stock", "activity", str(created["id"]), {"stock": 5}, {"stock": 3}),
        (OPERATOR, "activity.stock", "activity", str(created["id"]), {"stock": 3}, {"stock": 8}),
    ]


@pytest.mark.parametrize(
    ("body", "field"), [({}, "stock"), ({"stock": 0}, "stock"), ({"stock": 5, "x": 1}, "x")]
)
async def test_a_bad_stock_body_is_400(
    seckill: Client, operator: Headers, db: asyncpg.Connection, body: dict[str, Any], field: str
) -> None:
    created = await create(seckill, operator)
    status, answer = await call(seckill, "PUT", f"{ADMIN}/{created['id']}/stock", operator, body)
    assert (status, answer["error"], answer["field"]) == (400, "invalid_request", field)
    assert (await row(db, created["id"]))["stock"] == 10


async def test_more_stock_lets_more_presses_reserve_and_never_oversells(
    seckill: Client, operator: Headers, shopper: Callable[[str], Headers], redis: Redis
) -> None:
    created = await create(seckill, operator, stock=5)

    async def burst(prefix: str) -> list[int]:
        answers = await asyncio.gather(
            *(press(seckill, created["id"], shopper(f"{prefix}{i}")) for i in range(20))
        )
        return [status for status, _ in answers]

    first = await burst("a")
    assert (first.count(201), first.count(410)) == (5, 15)
    # This process learnt "sold out": more stock must clear that at once.
    status, view = await call(
        seckill, "PUT", f"{ADMIN}/{created['id']}/stock", operator, {"stock": 12}
    )
    assert (status, view["remaining_stock"]) == (200, 7)
    second = await burst("b")
    assert (second.count(201), second.count(410)) == (7, 13)
    keys = activity_keys(created["id"])
    assert await redis.hlen(keys.reservations) == 12
    assert await redis.get(keys.stock) == b"0"


async def test_a_stock_cut_racing_presses_never_hands_out_more_than_the_total(
    seckill: Client, operator: Headers, shopper: Callable[[str], Headers], redis: Redis
) -> None:
    created = await create(seckill, operator, stock=10)
    presses = [press(seckill, created["id"], shopper(f"u{i}")) for i in range(30)]
    cut = call(seckill, "PUT", f"{ADMIN}/{created['id']}/stock", operator, {"stock": 6})
    *answers, (status, body) = await asyncio.gather(*presses, cut)
    reserved = [s for s, _ in answers].count(201)
    keys = activity_keys(created["id"])
    remaining = int(await redis.get(keys.stock))
    total = int(await redis.hget(keys.meta, "total"))
    assert await redis.hlen(keys.reservations) == reserved
    assert remaining + reserved == total
    if status == 200:
        assert total == 6 and reserved <= 6
    else:
        assert (status, body["error"]) == (409, "below_reserved")
        assert total == 10 and body["reserved_units"] > 6


async def test_a_stock_change_lost_after_commit_is_completed_by_the_retry(
    seckill: Client, operator: Headers, db: asyncpg.Connection, redis: Redis
) -> None:
    created = await create(seckill, operator, stock=5)
    keys = activity_keys(created["id"])
    # What a crash right after COMMIT of a growth leaves: the record grew, Redis did not.
    await db.execute("UPDATE seckill.activities SET stock = 8 WHERE id = $1", created["id"])
    path = f"{ADMIN}/{created['id']}/stock"
    status, view = await call(seckill, "PUT", path, operator, {"stock": 8})
    assert (status, view["stock"], view["remaining_stock"]) == (200, 8, 8)
    assert (await redis.get(keys.stock), await redis.hget(keys.meta, "total")) == (b"8", b"8")
    assert len(await audit_rows(db)) == 1  # the record did not change: nothing to audit


async def test_a_sale_warmed_without_its_total_in_redis_grows_from_the_recorded_one(
    seckill: Client, operator: Headers, shopper: Callable[[str], Headers], redis: Redis
) -> None:
    created = await create(seckill, operator, stock=5)
    keys = activity_keys(created["id"])
    await redis.hdel(keys.meta, "total")  # warmed before the settings kept it
    assert (await press(seckill, created["id"], shopper("u1")))[0] == 201
    status, view = await call(
        seckill, "PUT", f"{ADMIN}/{created['id']}/stock", operator, {"stock": 9}
    )
    assert (status, view["remaining_stock"]) == (200, 8)
    assert (await redis.get(keys.stock), await redis.hget(keys.meta, "total")) == (b"8", b"9")


async def test_closed_sales_refuse_a_stock_change(seckill: Client, operator: Headers) -> None:
    ended = await create(seckill, operator)
    await call(seckill, "POST", f"{ADMIN}/{ended['id']}/end", operator)
    status, answer = await call(
        seckill, "PUT", f"{ADMIN}/{ended['id']}/stock", operator, {"stock": 20}
    )
    assert (status, answer["error"]) == (409, "sale_closed")


# --- end and cancel -------------------------------------------------------------------


async def test_ending_a_live_sale_refuses_presses_at_once_and_repeats_unchanged(
    seckill: Client,
    operator: Headers,
    shopper: Callable[[str], Headers],
    db: asyncpg.Connection,
    settings: Settings,
) -> None:
    created = await create(seckill, operator)
    other = await started_client(_seckill_app(settings))  # a second seckill process
    try:
        assert (await press(other, created["id"], shopper("u1")))[0] == 201
        status, view = await call(seckill, "POST", f"{ADMIN}/{created['id']}/end", operator)
        assert (status, view["state"], view["ended_early"], view["status"]) == (
            200,
            "ended",
            True,
            "ended",
        )
        status, answer = await press(other, created["id"], shopper("u2"))
        assert (status, answer["error"]) == (410, "sale_ended")
    finally:
        await other.close()
    ended_at = (await row(db, created["id"]))["ended_early_at"]
    assert ended_at is not None
    status, again = await call(seckill, "POST", f"{ADMIN}/{created['id']}/end", operator)
    assert (status, again) == (200, view)
    assert (await audit_rows(db))[1:] == [
        (
            OPERATOR,
            "activity.end",
            "activity",
            str(created["id"]),
            {"ended_early_at": None},
            {"ended_early_at": view_time(ended_at)},
        )
    ]
    # The shoppers see it ended, and no longer in the list.
    status, page = await call(
        seckill, "GET", f"/api/seckill/activities/{created['id']}", shopper("u3")
    )
    assert (status, page["status"]) == (200, "ended")
    status, listing = await call(seckill, "GET", "/api/seckill/activities", shopper("u3"))
    assert listing["activities"] == []


def view_time(moment: datetime) -> str:
    from services.common.events import rfc3339

    return rfc3339(moment)


async def test_only_a_live_sale_can_be_ended(seckill: Client, operator: Headers) -> None:
    soon = await upcoming(seckill, operator)
    cancelled = await create(seckill, operator)
    await call(seckill, "POST", f"{ADMIN}/{cancelled['id']}/cancel", operator)
    for activity in (soon, cancelled):
        status, answer = await call(seckill, "POST", f"{ADMIN}/{activity['id']}/end", operator)
        assert (status, answer["error"]) == (409, "not_live")


async def test_cancelling_refuses_presses_at_once_and_emits_one_cancellation(
    seckill: Client,
    operator: Headers,
    shopper: Callable[[str], Headers],
    db: asyncpg.Connection,
    redis: Redis,
    settings: Settings,
) -> None:
    created = await create(seckill, operator)
    assert (await press(seckill, created["id"], shopper("u1")))[0] == 201
    status, view = await call(seckill, "POST", f"{ADMIN}/{created['id']}/cancel", operator)
    assert (status, view["state"], view["status"]) == (200, "cancelled", "ended")
    status, answer = await press(seckill, created["id"], shopper("u2"))
    assert (status, answer["error"]) == (410, "sale_cancelled")
    assert (await call(seckill, "POST", f"{ADMIN}/{created['id']}/cancel", operator)) == (200, view)

    cancelled_at = (await row(db, created["id"]))["cancelled_at"]
    assert view["cancelled_at"] == view_time(cancelled_at)
    entries = await redis.xrange(activity_keys(created["id"]).outbox)
    cancels = [f for _, f in entries if f[b"type"] == SECKILL_CANCELLED.encode()]
    assert len(cancels) == 1
    assert (await audit_rows(db))[1:] == [
        (
            OPERATOR,
            "activity.cancel",
            "activity",
            str(created["id"]),
            {"cancelled_at": None},
            {"cancelled_at": view["cancelled_at"]},
        )
    ]
    async with running_relay(redis, settings):
        events = await read_topic(settings, SECKILL_RESERVATIONS, lambda seen: len(seen) >= 2)
    cancelled = [e for e in events if e.type == SECKILL_CANCELLED]
    assert len(cancelled) == 1
    event = cancelled[0]
    assert (event.id, event.key, event.data) == (
        event_id_for(SECKILL_CANCELLED, f"a{created['id']}"),
        f"a{created['id']}",
        {"activity_id": created["id"], "cancelled_at": view["cancelled_at"]},
    )
    status, listing = await call(seckill, "GET", "/api/seckill/activities", shopper("u3"))
    assert listing["activities"] == []


async def test_a_cancelled_upcoming_sale_answers_cancelled_not_not_started(
    seckill: Client, operator: Headers, shopper: Callable[[str], Headers]
) -> None:
    created = await upcoming(seckill, operator)
    assert (await call(seckill, "POST", f"{ADMIN}/{created['id']}/cancel", operator))[0] == 200
    status, answer = await press(seckill, created["id"], shopper("u1"))
    assert (status, answer["error"]) == (410, "sale_cancelled")


async def test_an_ended_sale_cannot_be_cancelled(
    seckill: Client, operator: Headers, redis: Redis
) -> None:
    created = await create(seckill, operator)
    await call(seckill, "POST", f"{ADMIN}/{created['id']}/end", operator)
    status, answer = await call(seckill, "POST", f"{ADMIN}/{created['id']}/cancel", operator)
    assert (status, answer["error"]) == (409, "sale_closed")
    assert await redis.xlen(activity_keys(created["id"]).outbox) == 0


# --- audit and live figures -----------------------------------------------------------


async def test_the_audit_route_lists_the_entries_newest_first(
    seckill: Client, operator: Headers, viewer: Headers
) -> None:
    created = await upcoming(seckill, operator)
    await call(seckill, "PATCH", f"{ADMIN}/{created['id']}", operator, {"title": "Renamed"})
    await call(seckill, "POST", f"{ADMIN}/{created['id']}/cancel", operator)
    status, trail = await call(seckill, "GET", f"{ADMIN}/{created['id']}/audit", viewer)
    assert status == 200
    assert [(e["action"], e["actor"], e["target_id"]) for e in trail["entries"]] == [
        ("activity.cancel", OPERATOR, str(created["id"])),
        ("activity.edit", OPERATOR, str(created["id"])),
        ("activity.create", OPERATOR, str(created["id"])),
    ]
    assert (trail["entries"][1]["before"], trail["entries"][1]["after"]) == (
        {"title": "Limited tea set"},
        {"title": "Renamed"},
    )


async def figures_stream(
    client: Client, path: str, headers: Headers
) -> AsyncIterator[dict[str, Any]]:
    resp = await client.get(path, headers=headers)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream"
    event = None
    try:
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: ") and event == "figures":
                yield orjson.loads(line[len("data: ") :])
    finally:
        resp.close()


async def test_the_live_stream_reaches_the_exact_figures_of_a_burst(
    seckill: Client, operator: Headers, viewer: Headers, shopper: Callable[[str], Headers]
) -> None:
    created = await create(seckill, operator, stock=10)
    answers = await asyncio.gather(
        *(press(seckill, created["id"], shopper(f"u{i}")) for i in range(40))
    )
    # After the sell-out, presses the in-process flag answers count too.
    answers += [await press(seckill, created["id"], shopper(f"v{i}")) for i in range(5)]
    sold_out = sum(1 for status, body in answers if status == 410 and body["error"] == "sold_out")
    assert [s for s, _ in answers].count(201) == 10 and sold_out == 35
    wanted = {
        "activity_id": created["id"],
        "state": "live",
        "stock": 10,
        "remaining": 0,
        "reserved_units": 10,
        "reservations": 10,
        "presses": 45,
        "sold_out_answers": 35,
    }
    last: dict[str, Any] = {}
    async with asyncio.timeout(10):
        async for figures in figures_stream(seckill, f"{ADMIN}/{created['id']}/live", viewer):
            last = {k: v for k, v in figures.items() if k != "at"}
            if last == wanted:
                break
    assert last == wanted
    _, view = await call(seckill, "GET", f"{ADMIN}/{created['id']}", viewer)
    assert {k: v for k, v in view["figures"].items() if k != "at"} == wanted


def _seckill_app(settings: Settings) -> Any:
    from services.seckill.app import create_app

    return create_app(settings, run_relay=False, run_stock_return=False)


async def test_presses_of_several_processes_add_up_on_the_board(
    seckill: Client,
    operator: Headers,
    viewer: Headers,
    shopper: Callable[[str], Headers],
    settings: Settings,
) -> None:
    created = await create(seckill, operator, stock=3)
    other = await started_client(_seckill_app(settings))
    try:
        for i in range(4):
            await press(seckill, created["id"], shopper(f"a{i}"))
            await press(other, created["id"], shopper(f"b{i}"))
    finally:
        await other.close()  # a graceful stop flushes its last counts

    async def board() -> tuple[int, int, int]:
        _, view = await call(seckill, "GET", f"{ADMIN}/{created['id']}", viewer)
        f = view["figures"]
        return f["presses"], f["sold_out_answers"], f["reservations"]

    assert await wait_for(board, (8, 5, 3), within=5) == (8, 5, 3)


async def test_presses_on_made_up_activities_or_with_bad_bodies_leave_no_board_counters(
    seckill: Client,
    operator: Headers,
    viewer: Headers,
    shopper: Callable[[str], Headers],
    redis: Redis,
) -> None:
    created = await create(seckill, operator, stock=1)
    for made_up in (424242, 424243):
        assert (await press(seckill, made_up, shopper("x")))[0] == 404
    bad = await seckill.post(
        f"/api/seckill/activities/{created['id']}/reservations",
        data=b"[1]",
        headers={**shopper("y"), "Content-Type": "application/json"},
    )
    assert bad.status == 400
    assert (await press(seckill, created["id"], shopper("z")))[0] == 201

    async def board() -> int:
        _, view = await call(seckill, "GET", f"{ADMIN}/{created['id']}", viewer)
        return int(view["figures"]["presses"])

    assert await wait_for(board, 1, within=5) == 1
    assert await redis.exists(activity_keys(424242).board, activity_keys(424243).board) == 0
