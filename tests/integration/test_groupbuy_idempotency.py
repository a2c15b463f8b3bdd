"""Idempotency-Key on opening and joining groups, against the real Redis: a retry gets the
first answer back, never a second group or membership, whatever the race; a key belongs
to one user and one target; a bad key is refused and changes nothing; records expire
after the campaign's last group could close."""

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
from services.groupbuy.keys import campaign_keys
from services.groupbuy.routes import GROUPBUY, Groupbuy
from tests.helpers import create_campaign, redis_keyspace, reply_dropping_proxy, started_client

Token = Callable[..., dict[str, str]]
Client = TestClient[Any, Any]
Answer = tuple[int, dict[str, Any], dict[str, str]]


def service(client: Client) -> Groupbuy:
    app = client.server.app
    assert app is not None
    return app[GROUPBUY]


async def post(client: Client, path: str, headers: dict[str, str], key: str | None) -> Answer:
    sent = {**headers, **({"Idempotency-Key": key} if key is not None else {})}
    resp = await client.post(path, headers=sent)
    return resp.status, await resp.json(), dict(resp.headers)


async def open_group(
    client: Client, campaign_id: int, headers: dict[str, str], key: str | None
) -> Answer:
    return await post(client, f"/api/groupbuy/campaigns/{campaign_id}/groups", headers, key)


async def join(client: Client, group_id: str, headers: dict[str, str], key: str | None) -> Answer:
    return await post(client, f"/api/groupbuy/groups/{group_id}/join", headers, key)


async def state(redis: Redis, campaign_id: int) -> tuple[int, int, list[str]]:
    """(stock, groups, event types in the outbox)"""
    keys = campaign_keys(campaign_id)
    entries = await redis.xrange(keys.outbox)
    groups = [k for k in await redis.keys(f"{keys.tag}:g:*") if not k.endswith(b":members")]
    return (
        int(await redis.get(keys.stock)),
        len(groups),
        [fields[b"type"].decode() for _, fields in entries],
    )


async def members(redis: Redis, campaign_id: int, group_id: str) -> list[bytes]:
    return list(await redis.zrange(campaign_keys(campaign_id).members(group_id), 0, -1))


async def test_opening_again_with_the_same_key_answers_the_first_group_and_opens_one(
    groupbuy: Client, token: Token, redis: Redis
) -> None:
    # A limit of 2: without the key, the second open would open a second group.
    campaign = await create_campaign(
        groupbuy, token("ops", admin=True), group_size=3, per_user_limit=2
    )
    status, first, headers = await open_group(groupbuy, campaign["id"], token("u1"), "k-1")
    assert status == 201 and "Idempotent-Replayed" not in headers
    status, again, headers = await open_group(groupbuy, campaign["id"], token("u1"), "k-1")
    assert (status, again, headers["Idempotent-Replayed"]) == (201, first, "true")
    assert headers["Location"] == f"/api/groupbuy/groups/{first['id']}"
    assert await state(redis, campaign["id"]) == (47, 1, ["group.opened"])


async def test_twenty_concurrent_opens_with_one_key_open_one_group(
    groupbuy: Client, token: Token, redis: Redis
) -> None:
    campaign = await create_campaign(
        groupbuy, token("ops", admin=True), group_size=3, per_user_limit=5
    )
    answers = await asyncio.gather(
        *(open_group(groupbuy, campaign["id"], token("u1"), "double-tap") for _ in range(20))
    )
    assert [status for status, _, _ in answers] == [201] * 20
    assert len({body["id"] for _, body, _ in answers}) == 1
    assert [h.get("Idempotent-Replayed") for _, _, h in answers].count("true") == 19
    assert await state(redis, campaign["id"]) == (47, 1, ["group.opened"])


async def test_joining_again_with_the_same_key_answers_the_first_join_and_joins_once(
    groupbuy: Client, token: Token, redis: Redis
) -> None:
    campaign = await create_campaign(groupbuy, token("ops", admin=True), group_size=3)
    _, opened, _ = await open_group(groupbuy, campaign["id"], token("leader"), None)
    status, first, headers = await join(groupbuy, opened["id"], token("u1"), "k-1")
    assert (status, first["position"], first["slots_left"]) == (201, 2, 1)
    # Without the key the retry would be refused 409 already_member: with it, the 201.
    status, again, headers = await join(groupbuy, opened["id"], token("u1"), "k-1")
    assert (status, again, headers["Idempotent-Replayed"]) == (201, first, "true")
    assert await members(redis, campaign["id"], opened["id"]) == [b"leader", b"u1"]
    assert (await state(redis, campaign["id"]))[2] == ["group.opened", "group.joined"]


async def test_twenty_concurrent_joins_with_one_key_join_once(
    groupbuy: Client, token: Token, redis: Redis
) -> None:
    campaign = await create_campaign(groupbuy, token("ops", admin=True), group_size=3)
    _, opened, _ = await open_group(groupbuy, campaign["id"], token("leader"), None)
    answers = await asyncio.gather(
        *(join(groupbuy, opened["id"], token("u1"), "double-tap") for _ in range(20))
    )
    assert [status for status, _, _ in answers] == [201] * 20
    assert {body["position"] for _, body, _ in answers} == {2}
    assert await members(redis, campaign["id"], opened["id"]) == [b"leader", b"u1"]
    assert (await state(redis, campaign["id"]))[2] == ["group.opened", "group.joined"]


async def test_the_join_that_completed_a_group_is_replayed_without_completing_it_again(
    groupbuy: Client, token: Token, redis: Redis
) -> None:
    campaign = await create_campaign(groupbuy, token("ops", admin=True), group_size=2)
    _, opened, _ = await open_group(groupbuy, campaign["id"], token("leader"), None)
    status, first, _ = await join(groupbuy, opened["id"], token("u1"), "k-1")
    assert (status, first["state"], first["slots_left"]) == (201, "completed", 0)
    answers = await asyncio.gather(
        *(join(groupbuy, opened["id"], token("u1"), "k-1") for _ in range(5))
    )
    assert [(status, body) for status, body, _ in answers] == [(201, first)] * 5
    events = (await state(redis, campaign["id"]))[2]
    assert events == ["group.opened", "group.joined", "group.completed"]
    metrics = service(groupbuy).metrics
    assert metrics.completed.labels("full")._value.get() == 1
    assert metrics.idempotent_replays.labels("join")._value.get() == 5


async def test_a_refused_join_is_refused_the_same_on_a_retry(
    groupbuy: Client, token: Token
) -> None:
    campaign = await create_campaign(groupbuy, token("ops", admin=True), group_size=2)
    _, opened, _ = await open_group(groupbuy, campaign["id"], token("leader"), None)
    assert (await join(groupbuy, opened["id"], token("u2"), None))[0] == 201
    status, refused, headers = await join(groupbuy, opened["id"], token("u1"), "k-1")
    assert (status, refused["error"]) == (409, "group_full")
    assert "Idempotent-Replayed" not in headers
    status, again, headers = await join(groupbuy, opened["id"], token("u1"), "k-1")
    assert (status, again, headers["Idempotent-Replayed"]) == (409, refused, "true")


async def test_a_refused_open_is_refused_the_same_even_once_the_allowance_came_back(
    groupbuy: Client, token: Token, redis: Redis
) -> None:
    campaign = await create_campaign(
        groupbuy, token("ops", admin=True), group_size=2, group_window_seconds=1
    )
    _, held, _ = await open_group(groupbuy, campaign["id"], token("u1"), None)
    status, refused, _ = await open_group(groupbuy, campaign["id"], token("u1"), "k-1")
    assert (status, refused["error"]) == (409, "limit_reached")
    # The group fails: its units and u1's allowance come back.
    await asyncio.sleep(1.1)
    settled = await service(groupbuy).store.expire_group(campaign["id"], held["id"])
    assert settled.result == "failed"
    status, again, headers = await open_group(groupbuy, campaign["id"], token("u1"), "k-1")
    assert (status, again, headers["Idempotent-Replayed"]) == (409, refused, "true")
    assert (await state(redis, campaign["id"]))[:2] == (50, 1)
    # A new key is a new open.
    assert (await open_group(groupbuy, campaign["id"], token("u1"), "k-2"))[0] == 201


async def test_one_key_is_independent_per_user_and_per_target(
    groupbuy: Client, token: Token, redis: Redis
) -> None:
    admin = token("ops", admin=True)
    campaign = await create_campaign(groupbuy, admin, group_size=4, per_user_limit=3)
    other = await create_campaign(groupbuy, admin, group_size=4)
    # Two users, one key: two groups.
    _, a, _ = await open_group(groupbuy, campaign["id"], token("a"), "same")
    _, b, headers = await open_group(groupbuy, campaign["id"], token("b"), "same")
    assert a["id"] != b["id"] and "Idempotent-Replayed" not in headers
    # One user, one key, another campaign: another group.
    status, elsewhere, _ = await open_group(groupbuy, other["id"], token("a"), "same")
    assert status == 201 and elsewhere["campaign_id"] == other["id"]
    # The key of an open, used to join, and used on two groups: two joins.
    status, into_b, headers = await join(groupbuy, b["id"], token("a"), "same")
    assert (status, into_b["id"]) == (201, b["id"]) and "Idempotent-Replayed" not in headers
    _, c, _ = await open_group(groupbuy, campaign["id"], token("c"), None)
    status, into_c, _ = await join(groupbuy, c["id"], token("a"), "same")
    assert (status, into_c["id"]) == (201, c["id"])
    assert await members(redis, campaign["id"], b["id"]) == [b"b", b"a"]
    assert await members(redis, campaign["id"], c["id"]) == [b"c", b"a"]
    assert (await state(redis, campaign["id"]))[:2] == (50 - 3 * 4, 3)


@pytest.mark.parametrize(
    "key", ["", "k" * 65, "two words", "caf\u00e9"], ids=["empty", "65 chars", "space", "non-ascii"]
)
async def test_an_invalid_key_is_refused_with_400_and_changes_nothing(
    groupbuy: Client, token: Token, redis: Redis, key: str
) -> None:
    campaign = await create_campaign(groupbuy, token("ops", admin=True), group_size=3)
    _, opened, _ = await open_group(groupbuy, campaign["id"], token("leader"), None)
    before = await redis_keyspace(redis, "gb:*")
    for status, body, _ in (
        await open_group(groupbuy, campaign["id"], token("u1"), key),
        await join(groupbuy, opened["id"], token("u1"), key),
    ):
        assert status == 400, body
        assert body["error"] == "invalid_idempotency_key" and "Idempotency-Key" in body["message"]
    assert await redis_keyspace(redis, "gb:*") == before


async def test_the_records_expire_once_the_campaigns_last_group_could_have_closed(
    groupbuy: Client, token: Token, redis: Redis, settings: Settings
) -> None:
    ends_at = datetime.now(UTC) + timedelta(hours=1)
    campaign = await create_campaign(
        groupbuy, token("ops", admin=True), ends_at=ends_at.isoformat(), group_window_seconds=600
    )
    _, opened, _ = await open_group(groupbuy, campaign["id"], token("leader"), "k-1")
    await join(groupbuy, opened["id"], token("u1"), "k-1")
    records = campaign_keys(campaign["id"]).idempotency
    assert await redis.hlen(records) == 2
    expires_ms = await redis.pexpiretime(records)
    wanted = (ends_at.timestamp() + 600 + settings.idempotency_key_retention_seconds) * 1000
    assert abs(expires_ms - wanted) < 1000


async def test_a_join_whose_answer_was_lost_is_retried_safely_with_its_key(
    settings: Settings, token: Token, redis: Redis
) -> None:
    from services.groupbuy.app import create_app

    url = urlsplit(settings.redis_url)
    async with reply_dropping_proxy(url.port or 6379) as (port, proxy):
        lossy = dataclasses.replace(
            settings,
            redis_url=urlunsplit(url._replace(netloc=f"127.0.0.1:{port}")),
            redis_timeout_seconds=0.5,
        )
        groupbuy = await started_client(
            create_app(lossy, run_relay=False, run_sweeper=False, run_consumers=False)
        )
        try:
            campaign = await create_campaign(groupbuy, token("ops", admin=True), group_size=3)
            _, opened, _ = await open_group(groupbuy, campaign["id"], token("leader"), None)
            proxy.dropping = True
            status, lost, _ = await join(groupbuy, opened["id"], token("u1"), "k-1")
            proxy.dropping = False
            assert (status, lost["error"]) == (503, "outcome_unknown")
            assert await members(redis, campaign["id"], opened["id"]) == [b"leader", b"u1"]

            status, retried, headers = await join(groupbuy, opened["id"], token("u1"), "k-1")
            assert (status, retried["position"], headers["Idempotent-Replayed"]) == (201, 2, "true")
            assert await members(redis, campaign["id"], opened["id"]) == [b"leader", b"u1"]
        finally:
            await groupbuy.close()
