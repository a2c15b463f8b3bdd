"""Idempotency-Key on presses, against the real Redis: a retry gets the first answer back
and never reserves twice, whatever the race; a key belongs to one user and one activity;
a bad key is refused and changes nothing; the records expire with the sale."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from services.common.settings import Settings
from services.seckill.app import create_app
from services.seckill.keys import activity_keys
from services.seckill.routes import SECKILL, Seckill
from tests.helpers import create_activity, redis_keyspace, reply_dropping_proxy, started_client

Token = Callable[..., dict[str, str]]
Client = TestClient[Any, Any]


async def press(
    client: Client,
    activity_id: int,
    headers: dict[str, str],
    key: str | None = None,
    quantity: int = 1,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    sent = {**headers, **({"Idempotency-Key": key} if key is not None else {})}
    resp = await client.post(
        f"/api/seckill/activities/{activity_id}/reservations",
        json={"quantity": quantity},
        headers=sent,
    )
    return resp.status, await resp.json(), dict(resp.headers)


def service(client: Client) -> Seckill:
    app = client.server.app
    assert app is not None
    return app[SECKILL]


async def state(redis: Redis, activity_id: int) -> tuple[int, int, int, dict[bytes, bytes]]:
    """(stock, reservations, outbox entries, units held per user)"""
    keys = activity_keys(activity_id)
    return (
        int(await redis.get(keys.stock)),
        int(await redis.hlen(keys.reservations)),
        int(await redis.xlen(keys.outbox)),
        await redis.hgetall(keys.users),
    )


async def test_a_retry_with_the_same_key_gets_the_first_reservation_and_reserves_once(
    seckill: Client, token: Token, redis: Redis
) -> None:
    # A limit of 3: without the key, the second press would reserve again.
    activity = await create_activity(seckill, token("ops", admin=True), stock=5, per_user_limit=3)
    status, first, headers = await press(seckill, activity["id"], token("u1"), "k-1")
    assert status == 201 and "Idempotent-Replayed" not in headers
    status, again, headers = await press(seckill, activity["id"], token("u1"), "k-1")
    assert (status, again) == (201, first)
    assert headers["Idempotent-Replayed"] == "true"
    assert headers["Location"] == f"/api/seckill/reservations/{first['reservation_id']}"
    assert await state(redis, activity["id"]) == (4, 1, 1, {b"u1": b"1"})


async def test_twenty_concurrent_presses_with_one_key_reserve_once(
    seckill: Client, token: Token, redis: Redis
) -> None:
    # Concurrent presses on one activity are merged into one script call: the key must hold
    # inside a merged call too. 20 presses are also far above the per-user rate limit,
    # which a retry answered from the record does not count against.
    activity = await create_activity(seckill, token("ops", admin=True), stock=10, per_user_limit=5)
    answers = await asyncio.gather(
        *(press(seckill, activity["id"], token("u1"), "double-tap") for _ in range(20))
    )
    assert [status for status, _, _ in answers] == [201] * 20
    assert len({body["reservation_id"] for _, body, _ in answers}) == 1
    replayed = [h.get("Idempotent-Replayed") for _, _, h in answers]
    assert replayed.count(None) == 1 and replayed.count("true") == 19
    assert await state(redis, activity["id"]) == (9, 1, 1, {b"u1": b"1"})


async def test_a_retry_after_a_sold_out_refusal_is_refused_the_same_even_if_stock_came_back(
    seckill: Client, token: Token, redis: Redis
) -> None:
    activity = await create_activity(seckill, token("ops", admin=True), stock=1)
    status, taken, _ = await press(seckill, activity["id"], token("u2"))
    assert status == 201
    status, refused, _ = await press(seckill, activity["id"], token("u1"), "k-1")
    assert (status, refused["error"]) == (410, "sold_out")

    sk = service(seckill)
    await sk.stock.release(activity["id"], taken["reservation_id"], "test")
    sk.sold_out.clear(activity["id"])
    status, again, headers = await press(seckill, activity["id"], token("u1"), "k-1")
    assert (status, again) == (410, refused)
    assert headers["Idempotent-Replayed"] == "true"
    assert (await state(redis, activity["id"]))[:2] == (1, 1)
    # A new key is a new press: it gets the returned unit.
    status, _, _ = await press(seckill, activity["id"], token("u1"), "k-2")
    assert status == 201


async def test_a_retry_after_a_limit_refusal_is_refused_the_same(
    seckill: Client, token: Token, redis: Redis
) -> None:
    activity = await create_activity(seckill, token("ops", admin=True), stock=5, per_user_limit=1)
    status, held, _ = await press(seckill, activity["id"], token("u1"), "k-1")
    assert status == 201
    status, refused, _ = await press(seckill, activity["id"], token("u1"), "k-2")
    assert (status, refused["error"]) == (409, "limit_reached")
    await service(seckill).stock.release(activity["id"], held["reservation_id"], "test")
    status, again, headers = await press(seckill, activity["id"], token("u1"), "k-2")
    assert (status, again, headers["Idempotent-Replayed"]) == (409, refused, "true")
    assert (await state(redis, activity["id"]))[0] == 5
    status, first_again, _ = await press(seckill, activity["id"], token("u1"), "k-1")
    assert (status, first_again) == (201, held)  # the first key still answers its 201
    assert (await state(redis, activity["id"]))[0] == 5


async def test_one_key_from_two_users_reserves_for_each(
    seckill: Client, token: Token, redis: Redis
) -> None:
    activity = await create_activity(seckill, token("ops", admin=True), stock=5)
    status1, one, _ = await press(seckill, activity["id"], token("u1"), "same-key")
    status2, two, headers = await press(seckill, activity["id"], token("u2"), "same-key")
    assert (status1, status2) == (201, 201)
    assert one["reservation_id"] != two["reservation_id"]
    assert "Idempotent-Replayed" not in headers
    assert await state(redis, activity["id"]) == (3, 2, 2, {b"u1": b"1", b"u2": b"1"})


async def test_one_key_on_two_activities_is_two_presses(
    seckill: Client, token: Token, redis: Redis
) -> None:
    admin = token("ops", admin=True)
    first, second = await create_activity(seckill, admin), await create_activity(seckill, admin)
    status1, one, _ = await press(seckill, first["id"], token("u1"), "k-1")
    status2, two, _ = await press(seckill, second["id"], token("u1"), "k-1")
    assert (status1, status2) == (201, 201)
    assert (one["activity_id"], two["activity_id"]) == (first["id"], second["id"])
    assert (await state(redis, first["id"]))[:3] == (9, 1, 1)
    assert (await state(redis, second["id"]))[:3] == (9, 1, 1)


async def test_a_key_sent_again_with_another_quantity_is_refused_and_changes_nothing(
    seckill: Client, token: Token, redis: Redis
) -> None:
    activity = await create_activity(seckill, token("ops", admin=True), stock=5, per_user_limit=5)
    status, first, _ = await press(seckill, activity["id"], token("u1"), "k-1", quantity=1)
    assert status == 201
    before = await redis_keyspace(redis, "sk:*")
    status, body, _ = await press(seckill, activity["id"], token("u1"), "k-1", quantity=2)
    assert status == 422 and body["error"] == "idempotency_key_reused" and body["message"]
    assert await redis_keyspace(redis, "sk:*") == before
    status, again, _ = await press(seckill, activity["id"], token("u1"), "k-1", quantity=1)
    assert (status, again) == (201, first)


@pytest.mark.parametrize(
    "headers",
    [
        [("Idempotency-Key", "")],
        [("Idempotency-Key", "k" * 65)],
        [("Idempotency-Key", "two words")],
        [("Idempotency-Key", "caf\u00e9")],
        [("Idempotency-Key", "a\tb")],
        [("Idempotency-Key", "k-1"), ("Idempotency-Key", "k-2")],
    ],
    ids=["empty", "65 chars", "space", "non-ascii", "tab", "two headers"],
)
async def test_an_invalid_key_is_refused_with_400_and_changes_nothing(
    seckill: Client, token: Token, redis: Redis, headers: list[tuple[str, str]]
) -> None:
    activity = await create_activity(seckill, token("ops", admin=True), stock=5)
    before = await redis_keyspace(redis, "sk:*")
    resp = await seckill.post(
        f"/api/seckill/activities/{activity['id']}/reservations",
        headers=[*token("u1").items(), *headers],
    )
    body = await resp.json()
    assert resp.status == 400, body
    assert body["error"] == "invalid_idempotency_key" and "Idempotency-Key" in body["message"]
    assert await redis_keyspace(redis, "sk:*") == before


async def test_a_key_of_64_visible_characters_is_accepted(seckill: Client, token: Token) -> None:
    activity = await create_activity(seckill, token("ops", admin=True), stock=5)
    key = ("!~" + "Az09-_:{}\"'" * 10)[:64]
    status, first, _ = await press(seckill, activity["id"], token("u1"), key)
    assert status == 201
    assert (await press(seckill, activity["id"], token("u1"), key))[:2] == (201, first)


async def test_the_records_expire_with_the_sale_plus_the_retention(
    seckill: Client, token: Token, redis: Redis, settings: Settings
) -> None:
    ends_at = datetime.now(UTC) + timedelta(hours=1)
    activity = await create_activity(seckill, token("ops", admin=True), ends_at=ends_at.isoformat())
    await press(seckill, activity["id"], token("u1"), "k-1")
    expires_ms = await redis.pexpiretime(activity_keys(activity["id"]).idempotency)
    wanted = ends_at.timestamp() * 1000 + settings.idempotency_key_retention_seconds * 1000
    assert abs(expires_ms - wanted) < 1000
    # Presses without a key record nothing.
    other = await create_activity(seckill, token("ops", admin=True))
    await press(seckill, other["id"], token("u1"))
    assert not await redis.exists(activity_keys(other["id"]).idempotency)


async def test_a_keyed_retry_after_the_sale_sold_out_gets_its_reservation(
    seckill: Client, token: Token, redis: Redis
) -> None:
    activity = await create_activity(seckill, token("ops", admin=True), stock=1)
    status, first, _ = await press(seckill, activity["id"], token("u1"), "k-1")
    assert status == 201
    # u2 is refused and this process now answers sold out without asking Redis...
    assert (await press(seckill, activity["id"], token("u2")))[0] == 410
    assert (await press(seckill, activity["id"], token("u3"), "k-3"))[0] == 410
    # ...but not to a press with a key: it may be the retry of one that reserved.
    status, again, _ = await press(seckill, activity["id"], token("u1"), "k-1")
    assert (status, again) == (201, first)
    assert (await state(redis, activity["id"]))[:3] == (0, 1, 1)


async def test_a_keyed_retry_after_the_sale_ended_gets_its_reservation(
    seckill: Client, token: Token
) -> None:
    ends_at = datetime.now(UTC) + timedelta(seconds=1.5)
    activity = await create_activity(seckill, token("ops", admin=True), ends_at=ends_at.isoformat())
    status, first, _ = await press(seckill, activity["id"], token("u1"), "k-1")
    assert status == 201
    await asyncio.sleep(max(0.0, (ends_at - datetime.now(UTC)).total_seconds()) + 0.1)
    assert (await press(seckill, activity["id"], token("u1"), "k-1"))[:2] == (201, first)
    status, body, _ = await press(seckill, activity["id"], token("u1"), "k-2")
    assert (status, body["error"]) == (410, "sale_ended")


async def test_a_press_whose_answer_was_lost_is_retried_safely_with_its_key(
    settings: Settings, token: Token, redis: Redis
) -> None:
    # The service reaches Redis through a proxy that can lose answers: the press is
    # applied, and the service never hears of it.
    url = urlsplit(settings.redis_url)
    async with reply_dropping_proxy(url.port or 6379) as (port, proxy):
        lossy = dataclasses.replace(
            settings,
            redis_url=urlunsplit(url._replace(netloc=f"127.0.0.1:{port}")),
            redis_timeout_seconds=0.5,
        )
        seckill = await started_client(create_app(lossy, run_relay=False))
        try:
            admin = token("ops", admin=True)
            activity = await create_activity(seckill, admin, stock=5, per_user_limit=3)
            proxy.dropping = True
            status, lost, _ = await press(seckill, activity["id"], token("u1"), "k-1")
            proxy.dropping = False
            assert (status, lost["error"]) == (503, "outcome_unknown")
            keys = activity_keys(activity["id"])
            assert await redis.hexists(keys.reservations, lost["reservation_id"])

            status, retried, headers = await press(seckill, activity["id"], token("u1"), "k-1")
            assert (status, headers["Idempotent-Replayed"]) == (201, "true")
            assert retried["reservation_id"] == lost["reservation_id"]
            assert await state(redis, activity["id"]) == (4, 1, 1, {b"u1": b"1"})
        finally:
            await seckill.close()
