"""Notify test helpers: settings that send to the WeChat-shaped fake (tools/fake_wechat.py),
the events notify consumes, registrations, and identity's access_token keeper to run
beside notify."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from services.common.events import COUPON_EXPIRING, ORDER_PAID, Envelope, event_id_for
from services.common.settings import Settings
from services.common.wechat_token import read_token
from services.identity.access_token import AccessTokenKeeper
from services.identity.domain import ProviderSession, registration_event
from services.identity.metrics import IdentityMetrics
from services.identity.provider import WeChatApi
from services.notify.domain import Recipient
from tools.fake_wechat import STATIC_TOKEN, FakeWeChat, openid_for


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


def coupon_expiring(coupon_no: int, user: str) -> Envelope:
    """coupon.expiring as the coupon service's sweeper publishes it on `coupons` (same id
    per coupon: docs/coupons.md, "Events")."""
    coupon_id = f"7-{coupon_no:032x}"
    return Envelope(
        id=event_id_for(COUPON_EXPIRING, coupon_id),
        type=COUPON_EXPIRING,
        key=user,
        data={
            "coupon_id": coupon_id,
            "user_id": user,
            "template_id": 7,
            "name": "Tea 10 off",
            "valid_until": "2026-11-24T16:00:00Z",
        },
    )


def recipient(user: str, appid: str) -> Recipient:
    """User `user` as the fake knows them: the shopper "<user>" logged in under appid."""
    return Recipient(user, appid, openid_for(appid, user), None, datetime(2026, 11, 1, tzinfo=UTC))


def user_registered(user: str, appid: str) -> Envelope:
    """identity's user.registered for `user`, whose wx.login() identity is "<user>", built
    by identity's own code: notify is tested on exactly what identity publishes."""
    session = ProviderSession(openid_for(appid, user), None)
    return registration_event(user, appid, session, "2026-11-01T09:00:00.000Z")


@dataclass
class Keeper:
    """identity's access_token keeper running against the fake, and what it fetched."""

    metrics: IdentityMetrics

    def fetches(self, reason: str) -> float:
        """Successful fetches for `reason`: missing, expiring or reported_invalid."""
        value = self.metrics.token_fetches.labels("ok", reason)._value.get()
        return float(value)


@contextlib.asynccontextmanager
async def running_token_keeper(settings: Settings, redis: Redis) -> AsyncIterator[Keeper]:
    """identity's AccessTokenKeeper (services/identity/access_token.py), fetching from the
    fake at settings.wechat_api_url and checking every 50 ms: it stores a token when none
    is there and replaces one that notify reported refused."""
    own = dataclasses.replace(
        settings, wechat_token_check_seconds=0.05, instance_id=f"{settings.instance_id}-keeper"
    )
    keeper = Keeper(IdentityMetrics(CollectorRegistry()))
    api = WeChatApi(own, keeper.metrics.provider_seconds)
    task = asyncio.create_task(
        AccessTokenKeeper(redis, api, own, keeper.metrics).run(), name="test-token-keeper"
    )
    try:
        yield keeper
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await api.close()


async def stored_token(redis: Redis, appid: str) -> str | None:
    token = await read_token(redis, appid)
    return token.value if token else None
