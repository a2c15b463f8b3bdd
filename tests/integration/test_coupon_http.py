"""The coupon service's templates, claims and a shopper's coupons through the aiohttp test
client, on the real Redis, PostgreSQL and Kafka: each refusal has its own status and code
and changes nothing, a rush never issues more than the quantity, and the record of coupons
holds exactly one row per coupon issued."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from services.common.auth import mint_token
from services.common.events import COUPON_CLAIMED, COUPON_LOCKED, Envelope, event_id_for
from services.common.kafka import publish_all, start_producer
from services.common.settings import Settings
from services.common.topics import COUPONS, dlq
from services.coupon.keys import template_keys
from tests.helpers import (
    create_template,
    read_topic,
    redis_keyspace,
    started_client,
    template_body,
    wait_for,
)

Token = Callable[..., dict[str, str]]
Client = TestClient[Any, Any]
ADMIN = "/api/coupons/admin/templates"


async def keyspace(redis: Redis) -> dict[bytes, Any]:
    """The coupon keys, but the per-user rate counters (a refused claim may count)."""
    return {k: v for k, v in (await redis_keyspace(redis, "cp:*")).items() if b":rl:" not in k}


async def error(resp: Any) -> tuple[int, str]:
    return resp.status, (await resp.json())["error"]


def claims(template_id: int) -> str:
    return f"/api/coupons/templates/{template_id}/claims"


@pytest.fixture
async def coupon_service(settings: Settings) -> AsyncIterator[Client]:
    """The whole coupon service in-process: API, relay and the record consumer."""
    from services.coupon.app import create_app

    client = await started_client(create_app(settings))
    yield client
    await client.close()


async def test_an_operator_creates_a_template_and_a_shopper_reads_it(
    coupon: Client, token: Token, db: asyncpg.Connection, redis: Redis
) -> None:
    created = await create_template(coupon, token("ops", admin=True), quantity=20)
    assert created["status"] == "live" and created["remaining"] == 20
    assert (created["kind"], created["amount_off_cents"], created["threshold_cents"]) == (
        "amount_off",
        3000,
        20000,
    )
    assert (created["validity"], created["valid_days"], created["valid_from"]) == (
        "relative",
        7,
        None,
    )
    resp = await coupon.get(f"/api/coupons/templates/{created['id']}", headers=token("u1"))
    assert resp.status == 200 and (await resp.json()) == created
    assert await db.fetchval("SELECT count(*) FROM coupon.templates") == 1
    assert await db.fetchval("SELECT created_by FROM coupon.templates") == "ops"
    meta = await redis.hgetall(template_keys(created["id"]).meta)
    assert meta == {
        b"claimable": b"1",
        b"starts_ms": meta[b"starts_ms"],
        b"ends_ms": meta[b"ends_ms"],
        b"limit": b"1",
        b"validity": b"relative",
        b"days": b"7",
        b"total": b"20",
        b"closed": b"",
    }
    assert await redis.get(template_keys(created["id"]).stock) == b"20"


async def test_creating_a_template_needs_the_operator_role(
    coupon: Client, token: Token, settings: Settings, db: asyncpg.Connection
) -> None:
    viewer = mint_token(settings.jwt_keys(), "merchant:2", ["viewer"])
    for headers, expected in (
        (token("u1"), (403, "forbidden")),
        ({"Authorization": f"Bearer {viewer}"}, (403, "forbidden")),
        ({}, (401, "unauthorized")),
    ):
        resp = await coupon.post(ADMIN, json=template_body(), headers=headers)
        assert await error(resp) == expected
    assert await db.fetchval("SELECT count(*) FROM coupon.templates") == 0


async def test_bad_templates_are_refused_naming_the_field_and_change_nothing(
    coupon: Client, token: Token, db: asyncpg.Connection, redis: Redis
) -> None:
    now = datetime.now(UTC)
    past = (now - timedelta(minutes=1)).isoformat()
    bad: list[tuple[str, dict[str, Any]]] = [
        ("threshold_cents", {"threshold_cents": 3000}),  # not above the amount off
        ("percent_off", {"percent_off": 10}),  # not for amount_off
        ("kind", {"kind": "free_lunch"}),
        ("quantity", {"quantity": 0}),
        ("quantity", {"quantity": 10_000_001}),
        ("per_user_limit", {"per_user_limit": 101}),
        ("valid_days", {"valid_days": 3651}),
        ("valid_from", {"valid_from": now.isoformat()}),  # not for relative validity
        ("claim_ends_at", {"claim_ends_at": past}),
        ("claim_starts_at", {"claim_starts_at": None}),
        ("scope_ids", {"scope": "skus"}),
        ("scope_ids", {"scope": "activities", "scope_ids": ["x1"]}),
        ("scope_ids", {"scope_ids": ["1"]}),  # scope any takes none
        ("name", {"name": "a\x00b"}),
        ("colour", {"colour": "red"}),
        ("claimable", {"claimable": "yes"}),
        ("usable_on_flash_sales", {"usable_on_flash_sales": 1}),
    ]
    for field, override in bad:
        resp = await coupon.post(
            ADMIN, json=template_body(**override), headers=token("ops", admin=True)
        )
        body = await resp.json()
        assert (resp.status, body["error"], body.get("field")) == (400, "invalid_request", field)
    assert await db.fetchval("SELECT count(*) FROM coupon.templates") == 0
    assert await keyspace(redis) == {}


async def test_a_claim_answers_the_coupon_valid_from_redis_time_and_appends_its_event(
    coupon: Client, token: Token, redis: Redis
) -> None:
    template = await create_template(coupon, token("ops", admin=True), quantity=3)
    before = datetime.now(UTC)
    resp = await coupon.post(claims(template["id"]), headers=token("u1"))
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert set(body) == {"coupon_id", "template_id", "valid_from", "valid_until", "state"}
    assert body["coupon_id"].startswith(f"{template['id']}-")
    assert (body["template_id"], body["state"]) == (template["id"], "available")
    valid_from = datetime.fromisoformat(body["valid_from"])
    valid_until = datetime.fromisoformat(body["valid_until"])
    assert before - timedelta(seconds=1) <= valid_from <= datetime.now(UTC)
    assert valid_until - valid_from == timedelta(days=7)
    keys = template_keys(template["id"])
    assert await redis.get(keys.stock) == b"2"
    assert await redis.hgetall(keys.users) == {b"u1": b"1"}
    ((_, fields),) = await redis.xrange(keys.outbox)
    assert fields[b"type"] == b"coupon.claimed" and fields[b"cid"] == body["coupon_id"].encode()
    assert fields[b"user"] == b"u1"
    page = await coupon.get(f"/api/coupons/templates/{template['id']}", headers=token("x"))
    assert (await page.json())["remaining"] == 2  # first read of this template's page


async def test_a_fixed_validity_coupon_is_valid_over_the_template_s_dates(
    coupon: Client, token: Token
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    template = await create_template(
        coupon,
        token("ops", admin=True),
        validity="fixed",
        valid_days=None,
        valid_from=now.isoformat(),
        valid_until=(now + timedelta(days=30)).isoformat(),
        kind="percent_off",
        amount_off_cents=None,
        threshold_cents=None,
        percent_off=15,
        max_discount_cents=5000,
    )
    assert (template["percent_off"], template["threshold_cents"]) == (15, 0)
    body = await (await coupon.post(claims(template["id"]), headers=token("u1"))).json()
    assert datetime.fromisoformat(body["valid_from"]) == now
    assert datetime.fromisoformat(body["valid_until"]) == now + timedelta(days=30)


async def test_each_refused_claim_has_its_own_status_and_code_and_changes_nothing(
    coupon: Client, token: Token, redis: Redis
) -> None:
    admin = token("ops", admin=True)
    soon = datetime.now(UTC) + timedelta(hours=1)
    upcoming = await create_template(
        coupon,
        admin,
        claim_starts_at=soon.isoformat(),
        claim_ends_at=(soon + timedelta(hours=1)).isoformat(),
    )
    one = await create_template(coupon, admin, quantity=1)
    ended = await create_template(coupon, admin)
    granted_only = await create_template(
        coupon, admin, claimable=False, claim_starts_at=None, claim_ends_at=None
    )
    assert (await coupon.post(claims(one["id"]), headers=token("u1"))).status == 201
    resp = await coupon.post(f"{ADMIN}/{ended['id']}/end", headers=admin)
    assert resp.status == 200
    before = await keyspace(redis)
    cases = [
        (upcoming["id"], "u2", (409, "not_started")),
        (one["id"], "u1", (409, "limit_reached")),
        (one["id"], "u2", (410, "exhausted")),
        (ended["id"], "u2", (410, "claim_ended")),
        (granted_only["id"], "u2", (404, "not_found")),
        (999, "u2", (404, "not_found")),
    ]
    for template_id, user, expected in cases:
        resp = await coupon.post(claims(template_id), headers=token(user))
        assert await error(resp) == expected, (template_id, user)
    for path in ("/api/coupons/templates/x/claims", "/api/coupons/templates/0/claims"):
        assert await error(await coupon.post(path, headers=token("u2"))) == (404, "not_found")
    resp = await coupon.post(claims(one["id"]), json={"quantity": 2}, headers=token("u3"))
    assert await error(resp) == (400, "invalid_request")
    resp = await coupon.post(claims(one["id"]), headers=token("u1"), data=b"[1]")
    assert await error(resp) == (400, "invalid_json")
    assert await keyspace(redis) == before
    # A template only granted by rules is not the shoppers' to see either.
    resp = await coupon.get(f"/api/coupons/templates/{granted_only['id']}", headers=token("u2"))
    assert await error(resp) == (404, "not_found")


async def test_claiming_too_fast_is_refused_429_with_retry_after(
    coupon: Client, token: Token, settings: Settings, redis: Redis
) -> None:
    template = await create_template(
        coupon, token("ops", admin=True), per_user_limit=100, quantity=100
    )
    statuses = []
    for _ in range(settings.user_rate_limit_per_second + 1):
        resp = await coupon.post(claims(template["id"]), headers=token("u1"))
        statuses.append(resp.status)
    assert statuses[:-1] == [201] * settings.user_rate_limit_per_second
    assert statuses[-1] == 429 and resp.headers["Retry-After"] == "1"
    assert (await resp.json())["error"] == "rate_limited"
    left = await redis.get(template_keys(template["id"]).stock)
    assert int(left) == 100 - settings.user_rate_limit_per_second


async def test_a_retry_with_the_same_idempotency_key_gets_the_first_answer_back(
    coupon: Client, token: Token, redis: Redis
) -> None:
    template = await create_template(coupon, token("ops", admin=True), quantity=5)
    url = claims(template["id"])
    keyed = {**token("u1"), "Idempotency-Key": "k-1"}
    first = await coupon.post(url, headers=keyed)
    again = await coupon.post(url, headers=keyed)
    assert (first.status, again.status) == (201, 201)
    assert await again.json() == await first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    # Another key is another claim: refused (limit 1), and that refusal is kept too.
    other = {**token("u1"), "Idempotency-Key": "k-2"}
    assert await error(await coupon.post(url, headers=other)) == (409, "limit_reached")
    replay = await coupon.post(url, headers=other)
    assert await error(replay) == (409, "limit_reached")
    assert replay.headers["Idempotent-Replayed"] == "true"
    # The same key from another user is that user's own claim.
    theirs = await coupon.post(url, headers={**token("u2"), "Idempotency-Key": "k-1"})
    assert theirs.status == 201
    assert (await theirs.json())["coupon_id"] != (await first.json())["coupon_id"]
    assert await redis.get(template_keys(template["id"]).stock) == b"3"
    bad = await coupon.post(url, headers={**token("u3"), "Idempotency-Key": "a b"})
    assert await error(bad) == (400, "invalid_idempotency_key")


async def test_a_rush_of_two_thousand_claims_issues_exactly_the_quantity_once_per_user(
    coupon_service: Client, token: Token, db: asyncpg.Connection, redis: Redis
) -> None:
    """1,000 shoppers each press twice at once on 100 coupons, one per shopper."""
    template = await create_template(coupon_service, token("ops", admin=True), quantity=100)
    url = claims(template["id"])
    users = [f"shopper-{i}" for i in range(1000)]
    headers = {user: token(user) for user in users}
    sem = asyncio.Semaphore(200)  # the test client's connector, not the service, is the limit

    async def press(user: str) -> tuple[str, int, dict[str, Any]]:
        async with sem:
            resp = await coupon_service.post(url, headers=headers[user])
            return user, resp.status, await resp.json()

    answers = await asyncio.gather(*(press(u) for u in users * 2))
    by_status = Counter(status for _, status, _ in answers)
    assert by_status[201] == 100
    assert by_status[201] + by_status[409] + by_status[410] == 2000, by_status
    winners = Counter(user for user, status, _ in answers if status == 201)
    assert max(winners.values()) == 1
    codes = {body["error"] for _, status, body in answers if status != 201}
    assert codes <= {"limit_reached", "exhausted"}
    issued = {body["coupon_id"] for _, status, body in answers if status == 201}
    assert await redis.get(template_keys(template["id"]).stock) == b"0"

    # The relay and the record consumer (both running in the service) catch up.
    count = "SELECT count(*) FROM coupon.coupons WHERE template_id = $1"
    assert await wait_for(lambda: db.fetchval(count, template["id"]), 100, within=30) == 100
    await asyncio.sleep(1.0)  # nothing more arrives
    rows = await db.fetch("SELECT id, user_id, origin, state FROM coupon.coupons")
    assert {r["id"] for r in rows} == issued
    assert Counter(r["user_id"] for r in rows) == winners
    assert {(r["origin"], r["state"]) for r in rows} == {("claim", "available")}


async def test_the_record_holds_one_row_per_coupon_however_often_its_event_arrives(
    coupon_service: Client, token: Token, db: asyncpg.Connection, settings: Settings
) -> None:
    template = await create_template(coupon_service, token("ops", admin=True), quantity=5)
    answers = [
        await (await coupon_service.post(claims(template["id"]), headers=token(u))).json()
        for u in ("u1", "u2")
    ]
    count = "SELECT count(*) FROM coupon.coupons"
    assert await wait_for(lambda: db.fetchval(count), 2) == 2
    # Every event published again, twice, with a lifecycle event the record ignores and a
    # claimed event that cannot be a coupon (another template's id in its coupon id).
    published = await read_topic(settings, COUPONS, lambda seen: len(seen) >= 2)
    assert {e.type for e in published} == {COUPON_CLAIMED}
    assert {e.id for e in published} == {
        event_id_for(COUPON_CLAIMED, a["coupon_id"]) for a in answers
    }
    ignored = Envelope("lock-1", COUPON_LOCKED, "u1", {"coupon_id": answers[0]["coupon_id"]})
    bad = dataclasses.replace(
        published[0],
        id="bad-1",
        data={**published[0].data, "coupon_id": f"999-{'a' * 32}"},
    )
    producer = await start_producer(settings)
    try:
        await publish_all(producer, settings.topic(COUPONS), [*published, ignored, bad, *published])
    finally:
        await producer.stop()
    dead = await read_topic(settings, dlq(COUPONS), lambda seen: len(seen) >= 1)
    assert [e.id for e in dead] == ["bad-1"]
    assert await db.fetchval(count) == 2
    rows = await db.fetch("SELECT id, user_id FROM coupon.coupons ORDER BY user_id")
    assert [(r["id"], r["user_id"]) for r in rows] == [
        (answers[0]["coupon_id"], "u1"),
        (answers[1]["coupon_id"], "u2"),
    ]


async def test_a_shopper_lists_their_own_coupons_by_state_with_name_and_terms(
    coupon_service: Client, token: Token, db: asyncpg.Connection
) -> None:
    coupon = coupon_service
    template = await create_template(
        coupon, token("ops", admin=True), scope="skus", scope_ids=["tea-1", "tea-2"]
    )
    claimed = await (await coupon.post(claims(template["id"]), headers=token("u1"))).json()
    await coupon.post(claims(template["id"]), headers=token("u2"))
    count = "SELECT count(*) FROM coupon.coupons"
    assert await wait_for(lambda: db.fetchval(count), 2) == 2
    # One of u1's coupons ended yesterday, not yet swept: expired to its holder.
    await db.execute(
        "INSERT INTO coupon.coupons (id, template_id, user_id, origin, valid_from, valid_until,"
        " issued_at) VALUES ($1, $2, 'u1', 'claim', now() - interval '8 days',"
        " now() - interval '1 day', now() - interval '8 days')",
        f"{template['id']}-{'e' * 32}",
        template["id"],
    )
    resp = await coupon.get("/api/coupons", headers=token("u1"))
    assert resp.status == 200
    page = await resp.json()
    assert (page["total"], page["limit"], page["offset"]) == (1, 20, 0)
    (mine,) = page["coupons"]
    assert mine["coupon_id"] == claimed["coupon_id"]
    assert (mine["name"], mine["state"], mine["origin"]) == ("30 off 200", "available", "claim")
    assert (mine["kind"], mine["amount_off_cents"], mine["threshold_cents"]) == (
        "amount_off",
        3000,
        20000,
    )
    assert (mine["scope"], mine["scope_ids"]) == ("skus", ["tea-1", "tea-2"])
    assert (mine["valid_until"], mine["order_id"]) == (claimed["valid_until"], None)
    expired = await (await coupon.get("/api/coupons?state=expired", headers=token("u1"))).json()
    assert [c["coupon_id"] for c in expired["coupons"]] == [f"{template['id']}-{'e' * 32}"]
    used = await (await coupon.get("/api/coupons?state=used", headers=token("u1"))).json()
    assert (used["coupons"], used["total"]) == ([], 0)
    theirs = await (await coupon.get("/api/coupons", headers=token("u2"))).json()
    assert theirs["total"] == 1 and theirs["coupons"][0]["coupon_id"] != claimed["coupon_id"]
    for query, field in (("state=spent", "state"), ("colour=red", "colour"), ("limit=0", "limit")):
        resp = await coupon.get(f"/api/coupons?{query}", headers=token("u1"))
        body = await resp.json()
        assert (resp.status, body["error"], body["field"]) == (400, "invalid_request", field)
    assert await error(await coupon.get("/api/coupons")) == (401, "unauthorized")
