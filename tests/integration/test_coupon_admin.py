"""The merchant console's coupon template routes on the real Redis and PostgreSQL: roles,
the audit log, every 409, and Redis (the gate) never offering more than PostgreSQL (the
record) says."""

from __future__ import annotations

import asyncio
import dataclasses
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
from services.coupon.keys import template_keys
from tests.helpers import create_template, started_client, template_body, wait_for
from tests.redis_server import RedisServer

Token = Callable[..., dict[str, str]]
Client = TestClient[Any, Any]
ADMIN = "/api/coupons/admin/templates"


async def error(resp: Any) -> tuple[int, str]:
    return resp.status, (await resp.json())["error"]


def upcoming(**overrides: Any) -> dict[str, Any]:
    soon = datetime.now(UTC) + timedelta(hours=1)
    return {
        "claim_starts_at": soon.isoformat(),
        "claim_ends_at": (soon + timedelta(hours=1)).isoformat(),
        **overrides,
    }


def role(settings: Settings, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings.jwt_keys(), 'merchant:7', list(roles))}"}


async def audit(coupon: Client, admin: dict[str, str], template_id: int) -> list[dict[str, Any]]:
    resp = await coupon.get(f"{ADMIN}/{template_id}/audit", headers=admin)
    assert resp.status == 200
    return list((await resp.json())["entries"])


async def test_the_list_filters_by_state_pages_and_refuses_unknown_parameters(
    coupon: Client, token: Token, settings: Settings
) -> None:
    admin = token("ops", admin=True)
    live = [await create_template(coupon, admin) for _ in range(3)]
    soon = await create_template(coupon, admin, **upcoming())
    granted = await create_template(
        coupon, admin, claimable=False, claim_starts_at=None, claim_ends_at=None
    )
    viewer = role(settings, "viewer")
    page = await (await coupon.get(f"{ADMIN}?state=live&limit=2", headers=viewer)).json()
    assert (page["total"], page["limit"], page["offset"]) == (4, 2, 0)
    assert [t["id"] for t in page["templates"]] == [granted["id"], live[2]["id"]]
    assert page["templates"][0]["status"] == "not_claimable"
    rest = await (await coupon.get(f"{ADMIN}?state=live&offset=2", headers=viewer)).json()
    assert [t["id"] for t in rest["templates"]] == [live[1]["id"], live[0]["id"]]
    first = await (await coupon.get(f"{ADMIN}?state=upcoming", headers=viewer)).json()
    assert [(t["id"], t["state"]) for t in first["templates"]] == [(soon["id"], "upcoming")]
    assert first["templates"][0]["warm_up"] == "done"
    everything = await (await coupon.get(f"{ADMIN}?state=", headers=viewer)).json()
    assert everything["total"] == 5
    for query, field in (("state=cancelled", "state"), ("colour=red", "colour")):
        resp = await coupon.get(f"{ADMIN}?{query}", headers=viewer)
        assert (await resp.json()).get("field") == field and resp.status == 400
    assert await error(await coupon.get(ADMIN, headers=token("u1"))) == (403, "forbidden")


async def test_one_template_shows_its_figures_from_redis_and_the_record(
    coupon: Client, token: Token, settings: Settings, db: asyncpg.Connection
) -> None:
    admin = token("ops", admin=True)
    template = await create_template(coupon, admin, quantity=10, per_user_limit=2)
    for user in ("u1", "u1", "u2"):
        claim = f"/api/coupons/templates/{template['id']}/claims"
        assert (await coupon.post(claim, headers=token(user))).status == 201
    await db.execute(
        "INSERT INTO coupon.coupons (id, template_id, user_id, origin, valid_from, valid_until,"
        " issued_at) VALUES ($1, $2, 'u1', 'claim', now(), now() + interval '1 day', now())",
        f"{template['id']}-{'a' * 32}",
        template["id"],
    )
    resp = await coupon.get(f"{ADMIN}/{template['id']}", headers=role(settings, "viewer"))
    body = await resp.json()
    assert resp.status == 200
    assert (body["state"], body["remaining"], body["created_by"]) == ("live", 7, "ops")
    figures = body["figures"]
    assert datetime.fromisoformat(figures.pop("at")) <= datetime.now(UTC)
    assert figures == {
        "template_id": template["id"],
        "state": "live",
        "quantity": 10,
        "remaining": 7,
        "issued": 3,
        "claimed": 1,  # the record follows the gate by the relay's lag
        "granted": 0,
        "available": 1,
        "locked": 0,
        "used": 0,
        "expired": 0,
        "revoked": 0,
    }
    assert await error(await coupon.get(f"{ADMIN}/999", headers=admin)) == (404, "not_found")


async def test_an_upcoming_template_is_edited_and_the_audit_holds_only_what_changed(
    coupon: Client, token: Token, redis: Redis
) -> None:
    admin = token("ops", admin=True)
    template = await create_template(coupon, admin, quantity=10, **upcoming())
    tid = template["id"]
    resp = await coupon.patch(
        f"{ADMIN}/{tid}", json={"name": "50 off 300", "quantity": 4}, headers=admin
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert (body["name"], body["quantity"], body["remaining"]) == ("50 off 300", 4, 4)
    # A raise reaches Redis after the COMMIT; a new scope drops nothing it needs.
    resp = await coupon.patch(
        f"{ADMIN}/{tid}",
        json={"quantity": 12, "scope": "campaigns", "scope_ids": [7, "8"], "valid_days": 3},
        headers=admin,
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert (body["quantity"], body["remaining"], body["scope_ids"]) == (12, 12, ["7", "8"])
    keys = template_keys(tid)
    assert (await redis.get(keys.stock), await redis.hget(keys.meta, "total")) == (b"12", b"12")
    assert await redis.hget(keys.meta, "days") == b"3"
    resp = await coupon.patch(f"{ADMIN}/{tid}", json={"scope": "any"}, headers=admin)
    assert (await resp.json())["scope_ids"] == []
    entries = await audit(coupon, admin, tid)
    assert [e["action"] for e in entries] == [
        "template.edit",
        "template.edit",
        "template.edit",
        "template.create",
    ]
    assert (entries[-2]["before"], entries[-2]["after"]) == (
        {"name": "30 off 200", "quantity": 10},
        {"name": "50 off 300", "quantity": 4},
    )
    assert entries[0]["after"] == {"scope": "any"}
    assert entries[-1]["after"]["id"] == tid and entries[-1]["actor"] == "ops"
    for bad, field in (({"kind": "no_threshold"}, "kind"), ({}, "body"), ({"x": 1}, "x")):
        resp = await coupon.patch(f"{ADMIN}/{tid}", json=bad, headers=admin)
        assert (resp.status, (await resp.json())["field"]) == (400, field)
    resp = await coupon.patch(f"{ADMIN}/{tid}", json={"threshold_cents": 100}, headers=admin)
    assert (await resp.json())["field"] == "threshold_cents"
    assert len(await audit(coupon, admin, tid)) == 4


async def test_an_edit_is_refused_once_claims_opened_or_a_coupon_was_issued(
    coupon: Client, token: Token, redis: Redis, db: asyncpg.Connection
) -> None:
    admin = token("ops", admin=True)
    live = await create_template(coupon, admin)
    granted_only = await create_template(
        coupon, admin, claimable=False, claim_starts_at=None, claim_ends_at=None
    )
    for template in (live, granted_only):
        resp = await coupon.patch(f"{ADMIN}/{template['id']}", json={"name": "x"}, headers=admin)
        assert await error(resp) == (409, "already_started")
    soon = await create_template(coupon, admin, **upcoming())
    # A grant (grant.lua) took one before the claims open: the terms are someone's now.
    await redis.decr(template_keys(soon["id"]).stock)
    resp = await coupon.patch(f"{ADMIN}/{soon['id']}", json={"name": "x"}, headers=admin)
    body = await resp.json()
    assert (resp.status, body["error"], body["issued_units"]) == (409, "already_issued", 1)
    assert await db.fetchval("SELECT name FROM coupon.templates WHERE id = $1", soon["id"]) == (
        "30 off 200"
    )
    assert [e["action"] for e in await audit(coupon, admin, soon["id"])] == ["template.create"]


async def test_the_quantity_moves_never_below_what_was_issued(
    coupon: Client, token: Token, redis: Redis, settings: Settings
) -> None:
    admin = token("ops", admin=True)
    template = await create_template(coupon, admin, quantity=5, per_user_limit=3)
    tid = template["id"]
    for _ in range(3):
        await coupon.post(f"/api/coupons/templates/{tid}/claims", headers=token("u1"))
    url = f"{ADMIN}/{tid}/quantity"
    resp = await coupon.put(url, json={"quantity": 2}, headers=admin)
    body = await resp.json()
    assert (resp.status, body["error"], body["issued_units"]) == (409, "below_issued", 3)
    resp = await coupon.put(url, json={"quantity": 3}, headers=admin)
    assert (await resp.json())["remaining"] == 0
    resp = await coupon.put(url, json={"quantity": 8}, headers=admin)
    body = await resp.json()
    assert (resp.status, body["quantity"], body["remaining"]) == (200, 8, 5)
    assert await redis.get(template_keys(tid).stock) == b"5"
    assert (await coupon.put(url, json={"quantity": 8}, headers=admin)).status == 200
    actions = [(e["action"], e["before"], e["after"]) for e in await audit(coupon, admin, tid)]
    assert actions[:2] == [
        ("template.quantity", {"quantity": 3}, {"quantity": 8}),
        ("template.quantity", {"quantity": 5}, {"quantity": 3}),
    ]
    assert len(actions) == 3
    for bad in ({"quantity": 0}, {"quantity": "8"}, {"stock": 8}):
        assert (await coupon.put(url, json=bad, headers=admin)).status == 400
    viewer = role(settings, "viewer")
    assert await error(await coupon.put(url, json={"quantity": 9}, headers=viewer)) == (
        403,
        "forbidden",
    )
    operator = role(settings, "operator")
    assert (await coupon.put(url, json={"quantity": 9}, headers=operator)).status == 200


async def test_ending_a_template_refuses_claims_at_once_and_a_repeat_changes_nothing(
    coupon: Client, token: Token, redis: Redis
) -> None:
    admin = token("ops", admin=True)
    template = await create_template(coupon, admin, quantity=5)
    tid = template["id"]
    claim = f"/api/coupons/templates/{tid}/claims"
    assert (await coupon.post(claim, headers=token("u1"))).status == 201
    resp = await coupon.post(f"{ADMIN}/{tid}/end", headers=admin)
    ended = await resp.json()
    assert (resp.status, ended["state"], ended["status"]) == (200, "ended", "ended")
    assert ended["ended_early_at"] is not None
    assert await redis.hget(template_keys(tid).meta, "closed") == b"ended"
    assert await error(await coupon.post(claim, headers=token("u2"))) == (410, "claim_ended")
    again = await coupon.post(f"{ADMIN}/{tid}/end", json={}, headers=admin)
    assert (again.status, (await again.json())["ended_early_at"]) == (200, ended["ended_early_at"])
    entries = await audit(coupon, admin, tid)
    assert [e["action"] for e in entries] == ["template.end", "template.create"]
    assert entries[0]["before"] == {"state": "live"}
    assert entries[0]["after"]["state"] == "ended"
    for resp in (
        await coupon.put(f"{ADMIN}/{tid}/quantity", json={"quantity": 9}, headers=admin),
        await coupon.patch(f"{ADMIN}/{tid}", json={"name": "x"}, headers=admin),
    ):
        assert await error(resp) == (409, "sale_closed")
    resp = await coupon.post(f"{ADMIN}/{tid}/end", json={"now": True}, headers=admin)
    assert await error(resp) == (400, "invalid_request")
    assert await error(await coupon.post(f"{ADMIN}/999/end", headers=admin)) == (404, "not_found")


async def test_the_live_board_streams_the_template_s_figures(coupon: Client, token: Token) -> None:
    admin = token("ops", admin=True)
    template = await create_template(coupon, admin, quantity=4)
    await coupon.post(f"/api/coupons/templates/{template['id']}/claims", headers=token("u1"))
    resp = await coupon.get(f"{ADMIN}/{template['id']}/live", headers=admin)
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    seen = b""
    async with asyncio.timeout(5):
        while seen.count(b"event: figures") < 2:
            seen += await resp.content.readany()
    resp.close()
    data = next(line for line in seen.split(b"\n") if line.startswith(b"data: ")).removeprefix(
        b"data: "
    )
    figures = orjson.loads(data)
    assert (figures["quantity"], figures["remaining"], figures["issued"]) == (4, 3, 1)
    resp = await coupon.get(f"{ADMIN}/999/live", headers=admin)
    assert await error(resp) == (404, "not_found")


@pytest.fixture
async def coupon_on_own_redis(own_settings: Settings) -> AsyncIterator[Client]:
    from services.coupon.app import create_app

    quick = dataclasses.replace(own_settings, metrics_refresh_seconds=0.2)
    client = await started_client(create_app(quick, run_relay=False, run_consumers=False))
    yield client
    await client.close()


async def test_a_template_created_while_redis_is_down_is_recorded_once_and_claimable_later(
    coupon_on_own_redis: Client, redis_server: RedisServer, db: asyncpg.Connection, token: Token
) -> None:
    coupon = coupon_on_own_redis
    redis_server.kill()
    resp = await coupon.post(ADMIN, json=template_body(quantity=3), headers=token("ops", True))
    body = await resp.json()
    assert resp.status == 202, body
    assert (body["warm_up"], body["quantity"]) == ("pending", 3)
    assert resp.headers["Location"] == f"{ADMIN}/{body['id']}"
    admin = token("ops", admin=True)
    resp = await coupon.put(f"{ADMIN}/{body['id']}/quantity", json={"quantity": 4}, headers=admin)
    assert await error(resp) == (409, "warm_up_pending")
    await redis_server.start()
    claim = f"/api/coupons/templates/{body['id']}/claims"

    async def claimed() -> int:
        return (await coupon.post(claim, headers=token("u1"))).status

    assert await wait_for(claimed, 201, within=15) == 201
    assert await db.fetchval("SELECT count(*) FROM coupon.templates") == 1
    assert await db.fetchval("SELECT warmed_at IS NOT NULL FROM coupon.templates")
    assert (await coupon.post(claim, headers=token("u2"))).status == 201
    got = await coupon.get(f"/api/coupons/templates/{body['id']}", headers=token("u3"))
    assert (await got.json())["remaining"] == 1
