"""Notify against the real PostgreSQL, Redis, broker and the WeChat-shaped fake provider
(tools/fake_wechat.py), which accepts messages only with an access_token it issued."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from services.common.settings import Settings
from services.common.wechat_token import AccessToken, token_keys
from services.notify.app import DISPATCHER, REGISTRY, create_app
from services.notify.domain import Intent, RecipientWait, intents_for, recipient_unknown_reason
from services.notify.repository import RecipientConflict
from services.notify.routes import REPO
from tests.helpers import constant, read_topic, started_client, wait_for
from tests.notify_helpers import (
    notify_settings,
    order_paid,
    recipient,
    running_token_keeper,
    shared_token_settings,
    stored_token,
)
from tools.fake_wechat import FakeWeChat, openid_for, running_fake_wechat

Token = Callable[..., dict[str, str]]
APPID = "wx-test-appid"


@pytest.fixture
async def fake() -> AsyncIterator[FakeWeChat]:
    async with running_fake_wechat(appid=APPID) as f:
        yield f


def oid(user: str) -> str:
    """The openid the fake gives shopper `user` (the user id's login identity)."""
    return openid_for(APPID, user)


@pytest.fixture
async def notify_api(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The notify API only: no consumers, no dispatcher (tests drive the repository)."""
    app = create_app(settings, run_consumers=False, run_dispatcher=False, run_reminders=False)
    client = await started_client(app)
    yield client
    await client.close()


async def subscribe(
    client: TestClient[Any, Any], headers: dict[str, str], **body: Any
) -> dict[str, Any]:
    resp = await client.post("/api/notify/subscriptions", json=body, headers=headers)
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


def intent(order_no: int, user: str, activity_id: int = 1) -> Intent:
    [one] = intents_for(order_paid(order_no, user, activity_id))
    return one


# --- Routes --------------------------------------------------------------------------


async def test_a_subscription_is_created_for_the_caller(
    notify_api: TestClient[Any, Any], token: Token, db: asyncpg.Connection
) -> None:
    body = await subscribe(notify_api, token("u1"), template="order_paid", activity_id=42)
    assert body["template"] == "order_paid" and body["kind"] == "one_time"
    assert body["state"] == "active" and body["activity_id"] == 42 and body["group_id"] is None
    row = await db.fetchrow("SELECT user_id, scope FROM notify.subscriptions")
    assert dict(row) == {"user_id": "u1", "scope": "activity:42"}


async def test_bad_subscriptions_are_refused_and_change_nothing(
    notify_api: TestClient[Any, Any], token: Token, db: asyncpg.Connection
) -> None:
    url = "/api/notify/subscriptions"
    resp = await notify_api.post(url, json={"template": "no_such"}, headers=token("u1"))
    assert resp.status == 400 and (await resp.json())["error"] == "unknown_template"
    resp = await notify_api.post(
        url, json={"template": "order_paid", "kind": "x"}, headers=token("u1")
    )
    assert resp.status == 400 and (await resp.json())["error"] == "invalid_request"
    resp = await notify_api.post(url, data=b"{nope", headers=token("u1"))
    assert resp.status == 400 and (await resp.json())["error"] == "invalid_json"
    resp = await notify_api.post(url, json={"template": "order_paid"})
    assert resp.status == 401
    assert await db.fetchval("SELECT count(*) FROM notify.subscriptions") == 0


async def test_messages_lists_only_the_callers_delivered_messages_newest_first(
    notify_api: TestClient[Any, Any], token: Token, db: asyncpg.Connection
) -> None:
    repo = notify_api.server.app[REPO]
    await subscribe(notify_api, token("u1"), template="order_paid", kind="long_term")
    await subscribe(notify_api, token("u2"), template="order_paid", kind="long_term")
    await repo.enqueue([intent(1, "u1"), intent(2, "u1"), intent(3, "u2"), intent(4, "u1")], 0)
    # Delivered: order 1, then order 2 (later), and u2's; u1's order 4 still pending.
    for n, user in ((1, "u1"), (2, "u1"), (3, "u2")):
        await db.execute(
            "UPDATE notify.deliveries SET state = 'sent', channel = 'http', "
            "sent_at = now() + make_interval(secs => $2) WHERE event_id = $1",
            intent(n, user).event_id,
            n,
        )
    resp = await notify_api.get("/api/notify/messages", headers=token("u1"))
    assert resp.status == 200
    messages = (await resp.json())["messages"]
    assert [m["event_id"] for m in messages] == [intent(2, "u1").event_id, intent(1, "u1").event_id]
    assert messages[0]["template"] == "order_paid" and messages[0]["data"]["thing2"]
    resp = await notify_api.get("/api/notify/messages?limit=1", headers=token("u1"))
    assert [m["event_id"] for m in (await resp.json())["messages"]] == [intent(2, "u1").event_id]
    resp = await notify_api.get("/api/notify/messages?limit=0", headers=token("u1"))
    assert resp.status == 400


# --- Repository: consent, dedupe, rate limit -----------------------------------------


async def test_a_redelivered_event_queues_nothing_new(
    notify_api: TestClient[Any, Any], token: Token, db: asyncpg.Connection
) -> None:
    repo = notify_api.server.app[REPO]
    await subscribe(notify_api, token("u1"), template="order_paid", kind="long_term")
    first = await repo.enqueue([intent(1, "u1")], 5)
    again = await repo.enqueue([intent(1, "u1"), intent(1, "u1")], 5)
    assert len(first.queued) == 1 and again.queued == [] and len(again.duplicates) == 2
    assert await db.fetchval("SELECT count(*) FROM notify.deliveries") == 1


async def test_without_consent_nothing_is_queued_and_a_later_redelivery_stays_dropped(
    notify_api: TestClient[Any, Any], token: Token, db: asyncpg.Connection
) -> None:
    repo = notify_api.server.app[REPO]
    result = await repo.enqueue([intent(1, "u1")], 5)
    assert len(result.no_consent) == 1 and result.queued == []
    # Consent given afterwards covers future events, not the one already dropped.
    await subscribe(notify_api, token("u1"), template="order_paid")
    assert (await repo.enqueue([intent(1, "u1")], 5)).queued == []
    assert len((await repo.enqueue([intent(2, "u1")], 5)).queued) == 1
    states = await db.fetch("SELECT state, skip_reason FROM notify.deliveries ORDER BY id")
    assert [tuple(r) for r in states] == [("skipped", "no_consent"), ("pending", None)]


async def test_a_one_time_consent_allows_exactly_one_message_even_concurrently(
    notify_api: TestClient[Any, Any], token: Token, db: asyncpg.Connection
) -> None:
    repo = notify_api.server.app[REPO]
    await subscribe(notify_api, token("u1"), template="order_paid")
    results = await asyncio.gather(*(repo.enqueue([intent(n, "u1")], 0) for n in range(8)))
    assert sum(len(r.queued) for r in results) == 1
    assert sum(len(r.no_consent) for r in results) == 7
    assert await db.fetchval("SELECT state FROM notify.subscriptions") == "used"


async def test_consent_scope_and_long_term_consents_are_preferred(
    notify_api: TestClient[Any, Any], token: Token, db: asyncpg.Connection
) -> None:
    repo = notify_api.server.app[REPO]
    await subscribe(notify_api, token("u1"), template="order_paid", activity_id=7)
    # Another activity's consent does not cover activity 8.
    assert len((await repo.enqueue([intent(1, "u1", activity_id=8)], 0)).no_consent) == 1
    long_term = await subscribe(notify_api, token("u1"), template="order_paid", kind="long_term")
    # Activity 7 is covered by both: the standing consent is used, the one-time one kept.
    queued = await repo.enqueue([intent(2, "u1", activity_id=7)], 0)
    assert len(queued.queued) == 1
    used = await db.fetchval(
        "SELECT subscription_id FROM notify.deliveries WHERE state = 'pending'"
    )
    assert used == long_term["id"]
    assert await db.fetchval("SELECT count(*) FROM notify.subscriptions WHERE state='active'") == 2


async def test_the_rate_limit_drops_and_counts_the_excess_without_using_consent(
    notify_api: TestClient[Any, Any], token: Token, db: asyncpg.Connection
) -> None:
    repo = notify_api.server.app[REPO]
    await subscribe(notify_api, token("u1"), template="order_paid", kind="long_term")
    await subscribe(notify_api, token("u1"), template="payment_due")
    result = await repo.enqueue([intent(n, "u1") for n in range(5)], 3)
    assert len(result.queued) == 3 and len(result.rate_limited) == 2
    assert len((await repo.enqueue([intent(9, "u2")], 3)).no_consent) == 1
    due = intents_for(
        order_paid(10, "u1").__class__(
            id="due-1",
            type="order.payment_due",
            key="o",
            data={**order_paid(10, "u1").data, "pay_before": "2026-11-23T10:15:00Z"},
        )
    )
    assert len((await repo.enqueue(due, 3)).rate_limited) == 1
    # Rate-limited: the one-time consent to payment_due is still there for later.
    assert (
        await db.fetchval("SELECT state FROM notify.subscriptions WHERE template='payment_due'")
        == "active"
    )


# --- Repository: recipients and messages waiting for them ----------------------------

WAIT = RecipientWait(APPID, 60.0)


async def test_a_message_for_a_user_without_an_openid_waits_holding_no_consent_or_budget(
    notify_api: TestClient[Any, Any], token: Token, db: asyncpg.Connection
) -> None:
    repo = notify_api.server.app[REPO]
    consent = await subscribe(notify_api, token("u1"), template="order_paid")
    result = await repo.enqueue([intent(1, "u1")], 1, WAIT)
    assert [i.event_id for i in result.waiting] == [intent(1, "u1").event_id]
    assert result.queued == []
    row = await db.fetchrow(
        "SELECT state, subscription_id, queued_at, wait_until > now() AS later "
        "FROM notify.deliveries"
    )
    assert dict(row) == {
        "state": "waiting",
        "subscription_id": None,
        "queued_at": None,
        "later": True,
    }
    assert await db.fetchval("SELECT state FROM notify.subscriptions") == "active"
    # The registration admits it: consent spent now, and within the limit of 1 per hour
    # (the wait did not count against it).
    admitted = await repo.add_recipients([recipient("u1", APPID)], APPID, 1)
    assert admitted.admitted == [("order_paid", "pending")]
    row = await db.fetchrow("SELECT state, subscription_id, queued_at FROM notify.deliveries")
    assert (row["state"], row["subscription_id"]) == ("pending", consent["id"])
    assert row["queued_at"] is not None
    assert await db.fetchval("SELECT state FROM notify.subscriptions") == "used"


async def test_a_registration_admits_waiting_messages_oldest_first_under_the_rules(
    notify_api: TestClient[Any, Any], token: Token, db: asyncpg.Connection
) -> None:
    repo = notify_api.server.app[REPO]
    await subscribe(notify_api, token("u1"), template="order_paid")  # one message
    await subscribe(notify_api, token("u2"), template="order_paid", kind="long_term")
    await repo.enqueue([intent(1, "u1")], 0, WAIT)
    await repo.enqueue([intent(2, "u1"), intent(3, "u2")], 0, WAIT)
    # u3 never consented: skipped at once, nothing to wait for.
    assert len((await repo.enqueue([intent(4, "u3")], 0, WAIT)).no_consent) == 1
    # A registration under another appid is recorded but admits nothing.
    other = await repo.add_recipients([recipient("u2", "wx-other")], APPID, 0)
    assert len(other.added) == 1 and other.admitted == []
    result = await repo.add_recipients([recipient("u1", APPID)], APPID, 0)
    assert result.admitted == [("order_paid", "pending"), ("order_paid", "no_consent")]
    rows = await db.fetch("SELECT event_id, state, skip_reason FROM notify.deliveries")
    assert {r["event_id"]: (r["state"], r["skip_reason"]) for r in rows} == {
        intent(1, "u1").event_id: ("pending", None),
        intent(2, "u1").event_id: ("skipped", "no_consent"),
        intent(3, "u2").event_id: ("waiting", None),
        intent(4, "u3").event_id: ("skipped", "no_consent"),
    }
    # u1 is known now: its next message is queued without waiting.
    await subscribe(notify_api, token("u1"), template="order_paid")
    assert len((await repo.enqueue([intent(5, "u1")], 0, WAIT)).queued) == 1


async def test_a_redelivered_registration_changes_nothing_and_a_contradicting_one_is_refused(
    notify_api: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    repo = notify_api.server.app[REPO]
    first = await repo.add_recipients([recipient("u1", APPID)], APPID, 0)
    again = await repo.add_recipients([recipient("u1", APPID), recipient("u1", APPID)], APPID, 0)
    assert len(first.added) == 1 and again.added == [] and len(again.duplicates) == 2
    moved = dataclasses.replace(recipient("u1", APPID), openid=oid("somebody-else"))
    with pytest.raises(RecipientConflict):
        await repo.add_recipients([recipient("u2", APPID), moved], APPID, 0)
    taken = dataclasses.replace(recipient("u1", APPID), user_id="u3")
    with pytest.raises(RecipientConflict):
        await repo.add_recipients([taken], APPID, 0)
    rows = await db.fetch("SELECT user_id, appid, openid FROM notify.recipients")
    assert [tuple(r) for r in rows] == [("u1", APPID, oid("u1"))]


# --- Dispatcher against the fake provider --------------------------------------------


@pytest.fixture
async def dispatching(
    settings: Settings, fake: FakeWeChat
) -> AsyncIterator[tuple[TestClient[Any, Any], Settings]]:
    """The notify service with its dispatcher sending to the fake provider with a static
    token (no consumers: tests register users and queue through the repository)."""
    s = notify_settings(settings, fake, notify_recipient_wait_seconds=1.0)
    client = await started_client(create_app(s, run_consumers=False, run_reminders=False))
    yield client, s
    await client.close()


async def queue(
    client: TestClient[Any, Any],
    token: Token,
    *pairs: tuple[int, str],
    register: bool = True,
    wait: RecipientWait = WAIT,
) -> None:
    """Consent, registration (the user's openid) and the message of each (order, user)."""
    app = client.server.app
    for _, user in pairs:
        await subscribe(client, token(user), template="order_paid")
    if register:
        users = sorted({u for _, u in pairs})
        await app[REPO].add_recipients([recipient(u, APPID) for u in users], APPID, 0)
    await app[REPO].enqueue([intent(n, u) for n, u in pairs], 0, wait)
    app[DISPATCHER].wake()


def sample(client: TestClient[Any, Any], name: str, **labels: str) -> float | None:
    value = client.server.app[REGISTRY].get_sample_value(name, labels)
    return float(value) if value is not None else None


async def test_a_provider_failing_three_times_then_succeeding_delivers_once(
    dispatching: tuple[TestClient[Any, Any], Settings],
    fake: FakeWeChat,
    token: Token,
    db: asyncpg.Connection,
) -> None:
    client, _ = dispatching
    fake.fail_times[oid("u1")] = 3
    await queue(client, token, (1, "u1"))
    state = lambda: db.fetchval("SELECT state FROM notify.deliveries")  # noqa: E731
    assert await wait_for(state, "sent", 10) == "sent"
    assert fake.requests[oid("u1")] == 4
    assert fake.accepted_by_user() == {oid("u1"): 1}
    assert await db.fetchval("SELECT attempts FROM notify.deliveries") == 4


async def test_a_provider_that_always_fails_ends_in_the_dead_letter_topic(
    dispatching: tuple[TestClient[Any, Any], Settings],
    fake: FakeWeChat,
    token: Token,
    db: asyncpg.Connection,
) -> None:
    client, s = dispatching
    fake.errcode[oid("u1")] = -1  # system busy, every time
    await queue(client, token, (1, "u1"))
    dead = await read_topic(s, "notify.dlq", lambda seen: len(seen) >= 1)
    assert len(dead) == 1
    assert dead[0].key == "u1" and dead[0].type == "notify.dead_lettered"
    assert dead[0].data["attempts"] == 4 and "errcode -1" in dead[0].data["reason"]
    assert dead[0].data["template"] == "order_paid"
    row = await db.fetchrow("SELECT state, attempts, dlq_published_at FROM notify.deliveries")
    assert row["state"] == "dead" and row["attempts"] == 4 and row["dlq_published_at"]
    assert fake.requests[oid("u1")] == 4 and fake.accepted == []


async def test_a_permanent_error_is_not_retried(
    dispatching: tuple[TestClient[Any, Any], Settings],
    fake: FakeWeChat,
    token: Token,
    db: asyncpg.Connection,
) -> None:
    client, _ = dispatching
    fake.errcode[oid("u1")] = 47003  # template parameters wrong
    await queue(client, token, (1, "u1"))
    state = lambda: db.fetchval("SELECT state FROM notify.deliveries")  # noqa: E731
    assert await wait_for(state, "dead", 10) == "dead"
    await asyncio.sleep(0.3)
    assert fake.requests[oid("u1")] == 1


async def test_a_user_refusal_revokes_the_consent_and_is_never_retried(
    dispatching: tuple[TestClient[Any, Any], Settings],
    fake: FakeWeChat,
    token: Token,
    db: asyncpg.Connection,
) -> None:
    client, _ = dispatching
    fake.errcode[oid("u1")] = 43101
    await subscribe(client, token("u1"), template="order_paid", kind="long_term")
    await queue(client, token, (1, "u1"))
    state = lambda: db.fetchval("SELECT state FROM notify.deliveries")  # noqa: E731
    assert await wait_for(state, "refused", 10) == "refused"
    await asyncio.sleep(0.5)
    assert fake.requests[oid("u1")] == 1
    # Every consent of u1 to the template is revoked (the message used the long-term
    # one; the one-time one was still active): the next event reaches no provider.
    states = await db.fetch("SELECT kind, state FROM notify.subscriptions ORDER BY id")
    assert [tuple(r) for r in states] == [("long_term", "revoked"), ("one_time", "revoked")]
    result = await client.server.app[REPO].enqueue([intent(2, "u1")], 0)
    assert len(result.no_consent) == 1


async def test_a_provider_hanging_for_one_user_does_not_hold_up_the_others(
    dispatching: tuple[TestClient[Any, Any], Settings],
    fake: FakeWeChat,
    token: Token,
    db: asyncpg.Connection,
) -> None:
    client, s = dispatching
    fake.hang.add(oid("slow"))
    await queue(client, token, (1, "slow"))
    assert await wait_for(lambda: constant(fake.held), 1, 5) == 1
    started = time.monotonic()
    await queue(client, token, *((n, f"u{n}") for n in range(2, 12)))
    delivered = await wait_for(lambda: constant(len(fake.accepted)), 10, 10)
    elapsed = time.monotonic() - started
    assert delivered == 10
    assert elapsed < s.notify_send_timeout_seconds, elapsed
    assert oid("slow") not in fake.accepted_by_user()
    # The hung send timed out and is retried later.
    retried = lambda: db.fetchval(  # noqa: E731
        "SELECT attempts > 1 FROM notify.deliveries WHERE user_id = 'slow'"
    )
    assert await wait_for(retried, True, 10)


async def test_sale_starting_reminders_go_once_to_each_subscriber_of_the_activity(
    dispatching: tuple[TestClient[Any, Any], Settings],
    fake: FakeWeChat,
    token: Token,
    db: asyncpg.Connection,
) -> None:
    from prometheus_client import CollectorRegistry

    from services.notify.metrics import NotifyMetrics
    from services.notify.reminders import Reminders

    client, s = dispatching
    insert = """
    INSERT INTO seckill.activities
        (sku, title, price_cents, stock, starts_at, ends_at, per_user_limit,
         payment_timeout_seconds)
    VALUES ('tea', $1, 100, 5, now() + make_interval(secs => $2),
            now() + make_interval(secs => $2 + 3600), 1, 900)
    RETURNING id
    """
    soon = await db.fetchval(insert, "Tea set sale", s.notify_reminder_lead_seconds / 2)
    later = await db.fetchval(insert, "Later sale", s.notify_reminder_lead_seconds * 2)
    await subscribe(client, token("a"), template="sale_starting", activity_id=soon)
    await subscribe(
        client, token("b"), template="sale_starting", activity_id=soon, kind="long_term"
    )
    await subscribe(client, token("c"), template="sale_starting", activity_id=later)
    app = client.server.app
    recipients = [recipient(u, APPID) for u in ("a", "b", "c")]
    await app[REPO].add_recipients(recipients, APPID, 0)
    reminders = Reminders(app[REPO], s, NotifyMetrics(CollectorRegistry()), app[DISPATCHER].wake)
    assert await reminders.run_once() == 2
    assert await reminders.run_once() == 0  # idempotent per activity and user
    assert await wait_for(lambda: constant(len(fake.accepted)), 2, 10) == 2
    await asyncio.sleep(0.3)
    assert fake.accepted_by_user() == {oid("a"): 1, oid("b"): 1}
    assert fake.accepted[0]["data"]["thing1"] == {"value": "Tea set sale"}
    assert fake.accepted[0]["page"] == f"pages/activity/detail?id={soon}"


# --- Recipients and the access_token at send time ------------------------------------


async def test_a_message_whose_user_never_registers_is_never_sent_and_dead_letters_as_unknown(
    dispatching: tuple[TestClient[Any, Any], Settings],
    fake: FakeWeChat,
    token: Token,
    db: asyncpg.Connection,
) -> None:
    client, s = dispatching
    wait = RecipientWait(APPID, s.notify_recipient_wait_seconds)
    await queue(client, token, (1, "u9"), register=False, wait=wait)
    assert await db.fetchval("SELECT state FROM notify.deliveries") == "waiting"
    dead = await read_topic(s, "notify.dlq", lambda seen: len(seen) >= 1)
    assert [(d.key, d.data["event_id"], d.data["attempts"], d.data["reason"]) for d in dead] == [
        ("u9", intent(1, "u9").event_id, 0, recipient_unknown_reason("u9", APPID))
    ]
    assert dead[0].data["reason"].startswith("recipient_unknown: no openid known for user u9")
    row = await db.fetchrow("SELECT state, attempts, subscription_id FROM notify.deliveries")
    assert tuple(row) == ("dead", 0, None)
    # Nothing reached the provider, and the consent is still there for the next message.
    assert fake.requests == {} and fake.accepted == [] and fake.bad_token == 0
    assert await db.fetchval("SELECT state FROM notify.subscriptions") == "active"
    assert sample(client, "notify_recipient_unknown_total", template="order_paid") == 1.0


async def has_token(redis: Redis) -> bool:
    return await stored_token(redis, APPID) is not None


@pytest.fixture
async def shared_token_notify(
    settings: Settings, fake: FakeWeChat
) -> AsyncIterator[tuple[TestClient[Any, Any], Settings]]:
    """The notify dispatcher sending with the access_token shared in Redis."""
    # Enough attempts that a message outlives the waits these tests make on purpose.
    s = shared_token_settings(settings, fake, notify_max_attempts=50)
    client = await started_client(create_app(s, run_consumers=False, run_reminders=False))
    yield client, s
    await client.close()


async def test_a_refused_token_is_renewed_once_and_the_message_goes_once_with_the_new_one(
    shared_token_notify: tuple[TestClient[Any, Any], Settings],
    fake: FakeWeChat,
    redis: Redis,
    token: Token,
    db: asyncpg.Connection,
) -> None:
    client, s = shared_token_notify
    async with running_token_keeper(s, redis) as keeper:
        assert await wait_for(lambda: has_token(redis), True) is True
        first = await stored_token(redis, APPID)
        assert first is not None and first == fake.current_token
        fake.revoke_tokens()  # as after a fetch elsewhere: the stored token is dead
        await queue(client, token, (1, "u1"))
        state = lambda: db.fetchval("SELECT state FROM notify.deliveries")  # noqa: E731
        assert await wait_for(state, "sent", 10) == "sent"
        await asyncio.sleep(0.3)
        renewed = await stored_token(redis, APPID)
    assert fake.bad_token == 1  # the one refused send
    assert (keeper.fetches("missing"), keeper.fetches("reported_invalid")) == (1.0, 1.0)
    assert fake.token_fetches == 2
    assert renewed == fake.current_token and renewed != first and fake.token_valid(renewed)
    assert fake.accepted_by_user() == {oid("u1"): 1}
    # One attempt: the re-ask and the second send were part of it.
    assert await db.fetchval("SELECT attempts FROM notify.deliveries") == 1
    assert sample(client, "notify_token_reasks_total", result="renewed") == 1.0
    assert sample(client, "notify_token_reasks_total", result="no_new_token") == 0.0


async def test_without_a_token_yet_the_send_waits_and_goes_once_when_one_is_stored(
    shared_token_notify: tuple[TestClient[Any, Any], Settings],
    fake: FakeWeChat,
    redis: Redis,
    token: Token,
    db: asyncpg.Connection,
) -> None:
    client, s = shared_token_notify
    await queue(client, token, (1, "u1"))
    no_token = lambda: db.fetchval(  # noqa: E731
        "SELECT last_error = 'no access_token yet' AND attempts >= 2 FROM notify.deliveries"
    )
    assert await wait_for(no_token, True, 10) is True
    assert fake.requests == {} and fake.bad_token == 0
    async with running_token_keeper(s, redis) as keeper:
        state = lambda: db.fetchval("SELECT state FROM notify.deliveries")  # noqa: E731
        assert await wait_for(state, "sent", 10) == "sent"
        await asyncio.sleep(0.3)
    assert fake.accepted_by_user() == {oid("u1"): 1} and fake.bad_token == 0
    assert (keeper.fetches("missing"), keeper.fetches("reported_invalid")) == (1.0, 0.0)
    assert sample(client, "notify_token_reasks_total", result="renewed") == 0.0


async def test_a_refused_token_without_a_new_one_is_retried_never_dead_and_spends_no_consent(
    shared_token_notify: tuple[TestClient[Any, Any], Settings],
    fake: FakeWeChat,
    redis: Redis,
    token: Token,
    db: asyncpg.Connection,
) -> None:
    client, s = shared_token_notify
    # A token that was valid, then revoked, and no keeper running to replace it.
    stale = AccessToken("fake-token-stale", time.time() + 3600)
    await redis.set(token_keys(APPID).token, stale.encode())
    await subscribe(client, token("u1"), template="order_paid", kind="long_term")
    await queue(client, token, (1, "u1"))
    expected = (
        "errcode 40001: invalid credential; no new access_token within "
        f"{s.notify_token_wait_seconds} s"
    )
    errored = lambda: db.fetchval("SELECT last_error FROM notify.deliveries")  # noqa: E731
    assert await wait_for(errored, expected, 10) == expected
    # Retried, not given up on: the first token failure never dead-letters.
    assert await db.fetchval("SELECT state FROM notify.deliveries") in ("pending", "sending")
    assert (sample(client, "notify_token_reasks_total", result="no_new_token") or 0) >= 1
    assert fake.accepted == [] and fake.bad_token >= 1
    # The long-term consent is untouched (a token refusal is not the user's refusal).
    states = await db.fetch("SELECT kind, state FROM notify.subscriptions ORDER BY id")
    assert [tuple(r) for r in states] == [("long_term", "active"), ("one_time", "active")]
    # The keeper comes back: it sees the report and the message goes, once.
    async with running_token_keeper(s, redis) as keeper:
        state = lambda: db.fetchval("SELECT state FROM notify.deliveries")  # noqa: E731
        assert await wait_for(state, "sent", 15) == "sent"
        await asyncio.sleep(0.3)
    assert (keeper.fetches("missing"), keeper.fetches("reported_invalid")) == (0.0, 1.0)
    assert fake.accepted_by_user() == {oid("u1"): 1}
    assert await db.fetchval("SELECT count(*) FROM notify.deliveries WHERE state = 'dead'") == 0


async def test_readyz_needs_redis_only_when_notify_sends_with_the_shared_token(
    settings: Settings, fake: FakeWeChat
) -> None:
    from services.notify.app import create_ops
    from tests.helpers import free_port

    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    answers: dict[str, tuple[int, str, bool]] = {}
    for name, s in (
        ("shared", shared_token_settings(settings, fake, redis_url=nowhere)),
        ("static", notify_settings(settings, fake, redis_url=nowhere)),
        ("shared, Redis up", shared_token_settings(settings, fake)),
    ):
        api = await started_client(create_app(s, run_consumers=False, run_dispatcher=False))
        ops = await started_client(create_ops(api.app))
        try:
            resp = await ops.get("/readyz")
            body = await resp.json()
            answers[name] = (resp.status, body["status"], body["checks"]["redis"] == "ok")
        finally:
            await ops.close()
            await api.close()
    assert answers == {
        "shared": (503, "not_ready", False),
        "static": (200, "degraded", False),
        "shared, Redis up": (200, "ready", True),
    }
