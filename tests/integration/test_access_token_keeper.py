"""The WeChat access_token keeper (identity) against real Redis and the local fake provider:
one fetch for all replicas, renewal ahead of expiry, replacement of a reported token."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from services.common.settings import Settings
from services.common.wechat_token import SharedAccessToken, read_token, token_keys
from services.identity.access_token import AccessTokenKeeper
from services.identity.metrics import IdentityMetrics
from services.identity.provider import WeChatApi
from tools.fake_wechat import FakeWeChat


@pytest.fixture
def keeper_settings(settings: Settings, fake: FakeWeChat) -> Settings:
    return dataclasses.replace(
        settings,
        wechat_api_url=fake.url,
        wechat_appid=fake.appid,
        wechat_secret=fake.secret,
        wechat_timeout_seconds=1.0,
        wechat_token_refresh_ahead_seconds=300.0,
        wechat_token_check_seconds=0.05,
    )


class Replica:
    """One identity replica's keeper with its own client and metrics."""

    def __init__(self, redis: Redis, settings: Settings, name: str) -> None:
        self.metrics = IdentityMetrics(CollectorRegistry())
        own = dataclasses.replace(settings, instance_id=name)
        self.api = WeChatApi(own, self.metrics.provider_seconds)
        self.keeper = AccessTokenKeeper(redis, self.api, own, self.metrics)

    def fetches(self, outcome: str, reason: str) -> float:
        return self.metrics.token_fetches.labels(outcome, reason)._value.get()


@pytest.fixture
async def replicas(redis: Redis, keeper_settings: Settings) -> AsyncIterator[list[Replica]]:
    made = [Replica(redis, keeper_settings, f"replica-{i}") for i in range(3)]
    yield made
    for replica in made:
        await replica.api.close()


async def test_the_first_check_fetches_a_token_and_the_next_ones_leave_it(
    replicas: list[Replica], redis: Redis, fake: FakeWeChat, keeper_settings: Settings
) -> None:
    keeper = replicas[0].keeper
    assert await keeper.check_once() is True
    stored = await read_token(redis, fake.appid)
    assert stored is not None and stored.value == fake.current_token
    assert 7100 < stored.seconds_left() <= 7200
    # Stored with the token's own expiry: Redis drops it when WeChat would refuse it.
    ttl = await redis.pttl(token_keys(fake.appid).token)
    assert 7_100_000 < ttl <= 7_200_000
    assert [await keeper.check_once() for _ in range(3)] == [False, False, False]
    assert fake.token_fetches == 1
    assert replicas[0].fetches("ok", "missing") == 1


async def test_replicas_checking_at_once_fetch_one_token(
    replicas: list[Replica], fake: FakeWeChat
) -> None:
    results = await asyncio.gather(*(r.keeper.check_once() for r in replicas))
    assert sorted(results) == [False, False, True]
    assert fake.token_fetches == 1


async def test_a_token_reported_invalid_is_replaced_at_once_and_only_once(
    replicas: list[Replica], redis: Redis, fake: FakeWeChat
) -> None:
    await replicas[0].keeper.check_once()
    old = fake.current_token
    assert old is not None
    reader = SharedAccessToken(redis, fake.appid, poll_seconds=0.02)
    keepers = [asyncio.create_task(r.keeper.run()) for r in replicas]
    try:
        new = await asyncio.wait_for(reader.renewed(old, wait_seconds=5.0), 6.0)
        # A second reader reporting the same old token changes nothing more.
        await reader.renewed(old, wait_seconds=0.3)
        await asyncio.sleep(0.3)
    finally:
        for task in keepers:
            task.cancel()
        await asyncio.gather(*keepers, return_exceptions=True)
    assert new is not None and new != old
    assert new == fake.current_token
    assert not fake.token_valid(old)  # a forced refresh retired the old token
    assert fake.token_fetches == 2
    assert sum(r.fetches("ok", "reported_invalid") for r in replicas) == 1


async def test_a_token_close_to_expiry_is_renewed_ahead(
    redis: Redis, keeper_settings: Settings, fake: FakeWeChat
) -> None:
    fake.token_ttl_seconds = 320
    replica = Replica(redis, keeper_settings, "r")
    try:
        assert await replica.keeper.check_once() is True
        assert await replica.keeper.check_once() is False  # 320 s left > 300 s ahead
        first = fake.current_token
        soon = Replica(
            redis,
            dataclasses.replace(keeper_settings, wechat_token_refresh_ahead_seconds=330.0),
            "r2",
        )
        try:
            assert await soon.keeper.check_once() is True
            assert soon.fetches("ok", "expiring") == 1
        finally:
            await soon.api.close()
    finally:
        await replica.api.close()
    stored = await read_token(redis, fake.appid)
    assert stored is not None
    assert stored.value == fake.current_token != first
    assert not fake.token_valid(first or "")


async def test_a_provider_error_keeps_the_current_token_and_is_counted(
    replicas: list[Replica], redis: Redis, fake: FakeWeChat
) -> None:
    await replicas[0].keeper.check_once()
    before = await read_token(redis, fake.appid)
    fake.secret = "rotated-elsewhere"  # our secret is now wrong: errcode 40125
    await SharedAccessToken(redis, fake.appid).renewed(before.value if before else "", 0.0)
    assert await replicas[0].keeper.check_once() is False
    assert replicas[0].fetches("error", "reported_invalid") == 1
    assert await read_token(redis, fake.appid) == before


async def test_no_token_is_read_while_none_was_fetched(redis: Redis, fake: FakeWeChat) -> None:
    assert await SharedAccessToken(redis, fake.appid).current() is None
    await redis.set(token_keys(fake.appid).token, b"garbage")
    assert await SharedAccessToken(redis, fake.appid).current() is None
