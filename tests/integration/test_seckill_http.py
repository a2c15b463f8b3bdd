"""The seckill HTTP API on real Redis and PostgreSQL: answers, errors, and that bad
input changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from services.common.auth import mint_token
from services.common.settings import Settings
from services.seckill.keys import activity_keys
from tests.helpers import activity_body, create_activity

Token = Callable[..., dict[str, str]]


async def snapshot(redis: Redis, activity_id: int) -> tuple[Any, ...]:
    keys = activity_keys(activity_id)
    return (
        await redis.get(keys.stock),
        await redis.hgetall(keys.users),
        await redis.hlen(keys.reservations),
        await redis.xlen(keys.outbox),
    )


async def reserve(
    client: TestClient[Any, Any], activity_id: int | str, headers: dict[str, str], **kw: Any
) -> tuple[int, dict[str, Any]]:
    resp = await client.post(
        f"/api/seckill/activities/{activity_id}/reservations", headers=headers, **kw
    )
    return resp.status, await resp.json()


async def test_admin_creates_an_activity_that_is_live_with_full_stock(
    seckill: TestClient[Any, Any], token: Token, db: asyncpg.Connection, redis: Redis
) -> None:
    created = await create_activity(seckill, token("ops", admin=True), stock=42)
    assert created["status"] == "live" and created["remaining_stock"] == 42
    assert (
        await db.fetchval("SELECT stock FROM seckill.activities WHERE id=$1", created["id"]) == 42
    )
    assert await db.fetchval(
        "SELECT warmed_at IS NOT NULL FROM seckill.activities WHERE id=$1", created["id"]
    )
    assert await redis.get(activity_keys(created["id"]).stock) == b"42"

    resp = await seckill.get(f"/api/seckill/activities/{created['id']}", headers=token("u1"))
    assert resp.status == 200
    assert (await resp.json()) == created
    listing = await (await seckill.get("/api/seckill/activities", headers=token("u1"))).json()
    assert [a["id"] for a in listing["activities"]] == [created["id"]]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"stock": 0}, "stock"),
        ({"stock": -5}, "stock"),
        ({"stock": "10"}, "stock"),
        ({"stock": True}, "stock"),
        ({"price_cents": 9.5}, "price_cents"),
        ({"sku": ""}, "sku"),
        ({"per_user_limit": 0}, "per_user_limit"),
        ({"starts_at": "tomorrow"}, "starts_at"),
        ({"starts_at": "2030-01-01T00:00:00"}, "starts_at"),
        ({"ends_at": (datetime.now(UTC) - timedelta(hours=2)).isoformat()}, "ends_at"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_invalid_activity_is_refused_and_nothing_is_created(
    seckill: TestClient[Any, Any],
    token: Token,
    db: asyncpg.Connection,
    redis: Redis,
    overrides: dict[str, Any],
    field: str,
) -> None:
    resp = await seckill.post(
        "/api/seckill/admin/activities",
        json=activity_body(**overrides),
        headers=token("ops", admin=True),
    )
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == "invalid_request" and body["field"] == field
    assert body["message"].startswith(field)
    assert await db.fetchval("SELECT count(*) FROM seckill.activities") == 0
    assert await redis.dbsize() == 0


async def test_missing_field_names_the_field(seckill: TestClient[Any, Any], token: Token) -> None:
    body = activity_body()
    del body["stock"]
    resp = await seckill.post(
        "/api/seckill/admin/activities", json=body, headers=token("ops", admin=True)
    )
    assert resp.status == 400
    assert (await resp.json())["field"] == "stock"


async def test_admin_route_refuses_shoppers_and_anonymous_callers(
    seckill: TestClient[Any, Any], token: Token, db: asyncpg.Connection
) -> None:
    resp = await seckill.post(
        "/api/seckill/admin/activities", json=activity_body(), headers=token("u1")
    )
    assert resp.status == 403
    assert (await resp.json())["error"] == "forbidden"
    resp = await seckill.post("/api/seckill/admin/activities", json=activity_body())
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert (await resp.json())["error"] == "unauthorized"
    assert await db.fetchval("SELECT count(*) FROM seckill.activities") == 0


async def test_first_press_reserves_and_second_is_refused(
    seckill: TestClient[Any, Any], token: Token, redis: Redis
) -> None:
    activity = await create_activity(seckill, token("ops", admin=True), stock=5)
    status, body = await reserve(seckill, activity["id"], token("u1"), json={"quantity": 1})
    assert status == 201
    assert body["activity_id"] == activity["id"] and body["quantity"] == 1
    assert body["reservation_id"].startswith(f"{activity['id']}-")
    status, again = await reserve(seckill, activity["id"], token("u1"))
    assert (status, again["error"]) == (409, "limit_reached")
    assert await redis.get(activity_keys(activity["id"]).stock) == b"4"

    resp = await seckill.get(
        f"/api/seckill/reservations/{body['reservation_id']}", headers=token("u1")
    )
    assert resp.status == 200
    state = await resp.json()
    assert state["state"] == "reserved" and state["pay_before"] == body["pay_before"]
    # Someone else's reservation is indistinguishable from a missing one.
    resp = await seckill.get(
        f"/api/seckill/reservations/{body['reservation_id']}", headers=token("u2")
    )
    assert resp.status == 404


def bad_token(settings: Settings) -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_token("another-secret-of-32-bytes-length!!", "u1")}


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": b"{not json"}, 400, "invalid_json"),
        ({"data": b"[1]"}, 400, "invalid_json"),
        ({"json": {"quantity": 0}}, 400, "invalid_request"),
        ({"json": {"quantity": -1}}, 400, "invalid_request"),
        ({"json": {"quantity": "1"}}, 400, "invalid_request"),
        ({"json": {"quantity": 1, "price": 0}}, 400, "invalid_request"),
        ({"json": {"quantity": 2}}, 409, "limit_reached"),
        ({"data": b"x" * 70_000}, 413, "payload_too_large"),
    ],
)
async def test_bad_reservation_input_changes_nothing(
    seckill: TestClient[Any, Any],
    token: Token,
    redis: Redis,
    kwargs: dict[str, Any],
    status: int,
    code: str,
) -> None:
    activity = await create_activity(seckill, token("ops", admin=True), stock=5)
    before = await snapshot(redis, activity["id"])
    got_status, body = await reserve(seckill, activity["id"], token("u1"), **kwargs)
    assert (got_status, body["error"]) == (status, code)
    assert isinstance(body["message"], str) and body["message"]
    assert await snapshot(redis, activity["id"]) == before


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic dTE6cHc="},
        {"Authorization": "Bearer not-a-jwt"},
        "wrong-secret",
    ],
)
async def test_reservation_without_a_valid_token_is_401_and_changes_nothing(
    seckill: TestClient[Any, Any],
    token: Token,
    redis: Redis,
    settings: Settings,
    headers: Any,
) -> None:
    activity = await create_activity(seckill, token("ops", admin=True), stock=5)
    before = await snapshot(redis, activity["id"])
    if headers == "wrong-secret":
        headers = bad_token(settings)
    status, body = await reserve(seckill, activity["id"], headers, json={})
    assert (status, body["error"]) == (401, "unauthorized")
    assert await snapshot(redis, activity["id"]) == before


@pytest.mark.parametrize("activity_id", ["999", "0", "abc", "-1", "1e3"])
async def test_unknown_activity_is_404(
    seckill: TestClient[Any, Any], token: Token, redis: Redis, activity_id: str
) -> None:
    status, body = await reserve(seckill, activity_id, token("u1"))
    assert (status, body["error"]) == (404, "not_found")
    resp = await seckill.get(f"/api/seckill/activities/{activity_id}", headers=token("u1"))
    assert resp.status == 404
    assert await redis.dbsize() == 0


async def test_presses_outside_the_window_are_refused_clearly(
    seckill: TestClient[Any, Any], token: Token, redis: Redis
) -> None:
    now = datetime.now(UTC)
    upcoming = await create_activity(
        seckill,
        token("ops", admin=True),
        starts_at=(now + timedelta(hours=1)).isoformat(),
        ends_at=(now + timedelta(hours=2)).isoformat(),
    )
    assert upcoming["status"] == "upcoming"
    status, body = await reserve(seckill, upcoming["id"], token("u1"))
    assert (status, body["error"]) == (409, "not_started")
    assert await redis.get(activity_keys(upcoming["id"]).stock) == b"10"

    ending = await create_activity(
        seckill, token("ops", admin=True), ends_at=(now + timedelta(seconds=1)).isoformat()
    )
    await _sleep_until(now + timedelta(seconds=1.2))
    status, body = await reserve(seckill, ending["id"], token("u1"))
    assert (status, body["error"]) == (410, "sale_ended")
    got = await (
        await seckill.get(f"/api/seckill/activities/{ending['id']}", headers=token("u1"))
    ).json()
    assert got["status"] == "ended" and got["remaining_stock"] == 10


async def test_sold_out_activity_answers_410_and_reports_sold_out(
    seckill: TestClient[Any, Any], token: Token
) -> None:
    activity = await create_activity(seckill, token("ops", admin=True), stock=1)
    assert (await reserve(seckill, activity["id"], token("u1")))[0] == 201
    for user in ("u2", "u3"):  # the second one is answered by the in-process flag
        status, body = await reserve(seckill, activity["id"], token(user))
        assert (status, body["error"]) == (410, "sold_out")
    got = await (
        await seckill.get(f"/api/seckill/activities/{activity['id']}", headers=token("u1"))
    ).json()
    assert got["status"] == "sold_out" and got["remaining_stock"] == 0


async def _sleep_until(moment: datetime) -> None:
    import asyncio

    delay = (moment - datetime.now(UTC)).total_seconds()
    if delay > 0:
        await asyncio.sleep(delay)


@pytest.mark.parametrize(("max_age", "shown_after_a_press"), [(60.0, 5), (0.0, 4)])
async def test_activity_pages_show_stock_read_at_most_once_per_max_age(
    settings: Settings, token: Token, redis: Redis, max_age: float, shown_after_a_press: int
) -> None:
    import dataclasses

    from services.seckill.app import create_app
    from tests.helpers import started_client

    api = await started_client(
        create_app(
            dataclasses.replace(settings, stock_display_max_age_seconds=max_age), run_relay=False
        )
    )
    try:
        activity = await create_activity(api, token("ops", admin=True), stock=5)
        page = f"/api/seckill/activities/{activity['id']}"
        assert (await (await api.get(page, headers=token("u1"))).json())["remaining_stock"] == 5
        press = await api.post(f"{page}/reservations", headers=token("u1"))
        assert press.status == 201
        # The press itself always sees Redis: the stock is taken there.
        assert int(await redis.get(activity_keys(activity["id"]).stock)) == 4
        shown = (await (await api.get(page, headers=token("u2"))).json())["remaining_stock"]
        listed = await (await api.get("/api/seckill/activities", headers=token("u2"))).json()
        in_list = [a["remaining_stock"] for a in listed["activities"] if a["id"] == activity["id"]]
        assert (shown, in_list) == (shown_after_a_press, [shown_after_a_press])
    finally:
        await api.close()
