"""Notify test helpers: settings that send to the WeChat-shaped fake (tools/fake_wechat.py),
the events notify consumes, registrations, and a stand-in for identity's token keeper."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from redis.asyncio import Redis

from services.common.events import ORDER_PAID, USER_REGISTERED, Envelope, event_id_for
from services.common.settings import Settings
from services.common.wechat_token import AccessToken, read_token, reported_invalid, token_keys
from services.notify.domain import Recipient
from tools.fake_wechat import STABLE_TOKEN_PATH, STATIC_TOKEN, FakeWeChat, openid_for


def notify_settings(settings: Settings, fake: FakeWeChat, **overrides: Any) -> Settings:
    """Settings for a notify service sending to the fake with its always-valid static
    token, under the fake's appid, with short timeouts and backoff so that retries happen
    within a test."""
    values: dict[str, Any] = {
        "notify_channel": "http",
        "notify_provider_url": fake.url,
        "notify_access_token": STATIC_TOKEN,
        "wechat_appid": fake.appid,
        "wechat_secret": fake.secret,
        "wechat_api_url": fake.url,
        "notify_send_timeout_seconds": 2.0,
        "notify_sending_lease_seconds": 4.0,
        "notify_backoff_base_seconds": 0.05,
        "notify_backoff_max_seconds": 0.2,
        "notify_dispatch_poll_seconds": 0.1,
        "notify_max_attempts": 4,
        "notify_rate_limit_per_hour": 100,
        "notify_reminder_interval_seconds": 0.2,
        "metrics_refresh_seconds": 0.5,
    }
    values.update(overrides)
    return dataclasses.replace(settings, **values)


def shared_token_settings(settings: Settings, fake: FakeWeChat, **overrides: Any) -> Settings:
    """notify_settings, sending with the access_token shared in Redis (no static token).
    The lease covers the longest send: two sends and the wait for a new token."""
    values: dict[str, Any] = {
        "notify_access_token": "",
        "notify_token_wait_seconds": 2.0,
        "notify_sending_lease_seconds": 7.0,
    }
    values.update(overrides)
    return notify_settings(settings, fake, **values)


def order_paid(order_no: int, user: str, activity_id: int = 1) -> Envelope:
    """An order.paid envelope as the order service publishes it (same id per order)."""
    order_id = f"00000000-0000-4000-8000-{order_no:012d}"
    return Envelope(
        id=event_id_for(ORDER_PAID, order_id),
        type=ORDER_PAID,
        key=order_id,
        data={
            "order_id": order_id,
            "reservation_id": f"a{activity_id}-r{order_no}",
            "activity_id": activity_id,
            "user_id": user,
            "sku": "tea-set",
            "quantity": 1,
            "amount_cents": 9900,
            "transaction_id": f"tx{order_no}",
            "paid_at": "2026-11-23T10:00:00Z",
        },
    )


def recipient(user: str, appid: str) -> Recipient:
    """User `user` as the fake knows them: the shopper "<user>" logged in under appid."""
    return Recipient(user, appid, openid_for(appid, user), None, datetime(2026, 11, 1, tzinfo=UTC))


def user_registered(user: str, appid: str) -> Envelope:
    """identity's user.registered for `user`, whose wx.login() identity is "<user>"."""
    openid = openid_for(appid, user)
    return Envelope(
        id=event_id_for(USER_REGISTERED, f"{appid}:{openid}"),
        type=USER_REGISTERED,
        key=user,
        data={
            "user_id": user,
            "openid": openid,
            "appid": appid,
            "unionid": None,
            "registered_at": "2026-11-01T09:00:00Z",
        },
    )


@dataclass
class Keeper:
    """What the stand-in keeper did: tokens stored, renewals on a reported refusal."""

    stored: list[str] = dataclasses.field(default_factory=list)
    renewals: int = 0


@contextlib.asynccontextmanager
async def playing_token_keeper(
    redis: Redis, fake: FakeWeChat, *, store_first: bool = True, poll: float = 0.05
) -> AsyncIterator[Keeper]:
    """identity's access_token keeper, reduced to what notify relies on: a token fetched
    from the fake's stable_token endpoint is in Redis, and a token reported invalid
    (wechat_token.report_invalid) is replaced by a freshly fetched one."""
    keeper = Keeper()
    appid = fake.appid

    async def fetch_and_store(http: aiohttp.ClientSession, force: bool) -> None:
        body = {
            "grant_type": "client_credential",
            "appid": appid,
            "secret": fake.secret,
            "force_refresh": force,
        }
        async with http.post(fake.url + STABLE_TOKEN_PATH, json=body) as resp:
            answer = await resp.json()
        token = AccessToken(answer["access_token"], time.time() + answer["expires_in"])
        await redis.set(token_keys(appid).token, token.encode())
        keeper.stored.append(token.value)

    async def watch(http: aiohttp.ClientSession) -> None:
        while True:
            current = await read_token(redis, appid)
            refused = await reported_invalid(redis, appid)
            if current is not None and refused == current.value:
                await fetch_and_store(http, force=True)
                keeper.renewals += 1
            await asyncio.sleep(poll)

    async with aiohttp.ClientSession() as http:
        if store_first:
            await fetch_and_store(http, force=False)
        task = asyncio.create_task(watch(http), name="test-token-keeper")
        try:
            yield keeper
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def stored_token(redis: Redis, appid: str) -> str | None:
    token = await read_token(redis, appid)
    return token.value if token else None
