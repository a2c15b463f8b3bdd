"""The coupon service's coupon.expiring, on the real broker's `coupons` topic, becomes a
consented coupon_expiring message from the whole notify service (consumers, dispatcher)
to the WeChat-shaped fake provider; other coupon events ask for nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from services.common.events import COUPON_CLAIMED, COUPON_EXPIRED, Envelope, event_id_for
from services.common.kafka import publish_all, start_producer
from services.common.settings import Settings
from services.common.topics import COUPONS, USERS
from services.notify.app import COUPONS_GROUP, REGISTRY, create_app
from tests.helpers import constant, started_client, wait_for
from tests.notify_helpers import coupon_expiring, notify_settings, user_registered
from tools.fake_wechat import FakeWeChat, openid_for, running_fake_wechat

Token = Callable[..., dict[str, str]]
Client = TestClient[Any, Any]
APPID = "wx-test-appid"


@pytest.fixture
async def fake() -> AsyncIterator[FakeWeChat]:
    async with running_fake_wechat(appid=APPID) as f:
        yield f


@pytest.fixture
async def notify(settings: Settings, fake: FakeWeChat) -> AsyncIterator[tuple[Client, Settings]]:
    s = notify_settings(settings, fake)
    client = await started_client(create_app(s))
    yield client, s
    await client.close()


async def publish(settings: Settings, topic: str, *events: Envelope) -> None:
    producer = await start_producer(settings)
    try:
        await publish_all(producer, settings.topic(topic), events)
    finally:
        await producer.stop()


async def consent(client: Client, headers: dict[str, str], **body: Any) -> None:
    resp = await client.post("/api/notify/subscriptions", json=body, headers=headers)
    assert resp.status == 201, await resp.text()


def coupon_events_handled(client: Client, s: Settings) -> float:
    value = client.server.app[REGISTRY].get_sample_value(
        "kafka_consumer_messages_total",
        {"topic": s.topic(COUPONS), "group": s.group(COUPONS_GROUP), "result": "ok"},
    )
    return float(value or 0)


async def settle(fake: FakeWeChat, expected: int) -> int:
    """Wait for expected acceptances, then a little longer so extras would show."""
    got = await wait_for(lambda: constant(len(fake.accepted)), expected)
    await asyncio.sleep(1.0)
    return max(got, len(fake.accepted))


def other_coupon_event(kind: str, user: str) -> Envelope:
    coupon_id = "7-" + "e" * 32
    return Envelope(
        id=event_id_for(kind, coupon_id),
        type=kind,
        key=user,
        data={"coupon_id": coupon_id, "user_id": user, "template_id": 7},
    )


async def test_a_consented_user_gets_exactly_one_message_for_a_redelivered_expiring_coupon(
    notify: tuple[Client, Settings], fake: FakeWeChat, token: Token, db: asyncpg.Connection
) -> None:
    client, s = notify
    # A standing consent: only the event id's dedupe stands between a redelivery and a
    # second message.
    await consent(client, token("u1"), template="coupon_expiring", kind="long_term")
    await publish(s, USERS, user_registered("u1", APPID))
    expiring = coupon_expiring(1, "u1")
    await publish(
        s,
        COUPONS,
        other_coupon_event(COUPON_CLAIMED, "u1"),
        expiring,
        other_coupon_event(COUPON_EXPIRED, "u1"),
    )
    await publish(s, COUPONS, expiring)  # redelivered: the same event id

    assert await settle(fake, 1) == 1
    assert await wait_for(lambda: constant(coupon_events_handled(client, s)), 4.0) == 4.0
    assert fake.accepted_by_user() == {openid_for(APPID, "u1"): 1}
    [body] = fake.accepted
    assert body["template_id"] == "coupon_expiring"
    assert body["data"] == {
        "thing1": {"value": "Tea 10 off"},
        "time2": {"value": "2026-11-24 16:00"},
    }
    assert body["page"] == f"pages/coupon/detail?id={expiring.data['coupon_id']}"
    rows = await db.fetch("SELECT template, state FROM notify.deliveries")
    assert [tuple(r) for r in rows] == [("coupon_expiring", "sent")]
    resp = await client.get("/api/notify/messages", headers=token("u1"))
    assert [m["template"] for m in (await resp.json())["messages"]] == ["coupon_expiring"]


async def test_a_user_who_did_not_consent_to_coupon_expiring_gets_no_message(
    notify: tuple[Client, Settings], fake: FakeWeChat, token: Token, db: asyncpg.Connection
) -> None:
    client, s = notify
    # u1 consented to another kind only; u2 is the control that proves delivery works.
    await consent(client, token("u1"), template="order_paid", kind="long_term")
    await consent(client, token("u2"), template="coupon_expiring")
    await publish(s, USERS, user_registered("u1", APPID), user_registered("u2", APPID))
    await publish(s, COUPONS, coupon_expiring(1, "u1"), coupon_expiring(2, "u2"))

    assert await settle(fake, 1) == 1
    assert fake.accepted_by_user() == {openid_for(APPID, "u2"): 1}
    assert fake.requests[openid_for(APPID, "u1")] == 0
    rows = await db.fetch(
        "SELECT user_id, template, state, skip_reason FROM notify.deliveries ORDER BY user_id"
    )
    assert [tuple(r) for r in rows] == [
        ("u1", "coupon_expiring", "skipped", "no_consent"),
        ("u2", "coupon_expiring", "sent", None),
    ]
    # The one-time consent was spent on that message.
    assert (
        await db.fetchval(
            "SELECT state FROM notify.subscriptions WHERE template = 'coupon_expiring'"
        )
        == "used"
    )
