"""Notify against the real PostgreSQL, broker and a real local HTTP provider."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from services.common.settings import Settings
from services.notify.app import create_app
from services.notify.domain import Intent, intents_for
from services.notify.routes import REPO
from tests.helpers import constant, read_topic, started_client, wait_for
from tests.notify_provider import FakeProvider, fake_provider, notify_settings, order_paid

Token = Callable[..., dict[str, str]]


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    async with fake_provider() as p:
        yield p


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


# --- Dispatcher against the fake provider --------------------------------------------


@pytest.fixture
async def dispatching(
    settings: Settings, provider: FakeProvider
) -> AsyncIterator[tuple[TestClient[Any, Any], Settings]]:
    """The notify service with its dispatcher sending to the fake provider (no consumers:
    tests queue through the repository)."""
    s = notify_settings(settings, provider)
    client = await started_client(create_app(s, run_consumers=False, run_reminders=False))
    yield client, s
    await client.close()


async def queue(client: TestClient[Any, Any], token: Token, *pairs: tuple[int, str]) -> None:
    for _, user in pairs:
        await subscribe(client, token(user), template="order_paid")
    app = client.server.app
    await app[REPO].enqueue([intent(n, u) for n, u in pairs], 0)
    from services.notify.app import DISPATCHER

    app[DISPATCHER].wake()


async def test_a_provider_failing_three_times_then_succeeding_delivers_once(
    dispatching: tuple[TestClient[Any, Any], Settings],
    provider: FakeProvider,
    token: Token,
    db: asyncpg.Connection,
) -> None:
    client, _ = dispatching
    provider.fail_times["u1"] = 3
    await queue(client, token, (1, "u1"))
    state = lambda: db.fetchval("SELECT state FROM notify.deliveries")  # noqa: E731
    assert await wait_for(state, "sent", 10) == "sent"
    assert provider.requests["u1"] == 4
    assert provider.accepted_by_user() == {"u1": 1}
    assert await db.fetchval("SELECT attempts FROM notify.deliveries") == 4


async def test_a_provider_that_always_fails_ends_in_the_dead_letter_topic(
    dispatching: tuple[TestClient[Any, Any], Settings],
    provider: FakeProvider,
    token: Token,
    db: asyncpg.Connection,
) -> None:
    client, s = dispatching
    provider.errcode["u1"] = -1  # system busy, every time
    await queue(client, token, (1, "u1"))
    dead = await read_topic(s, "notify.dlq", lambda seen: len(seen) >= 1)
    assert len(dead) == 1
    assert dead[0].key == "u1" and dead[0].type == "notify.dead_lettered"
    assert dead[0].data["attempts"] == 4 and "errcode -1" in dead[0].data["reason"]
    assert dead[0].data["template"] == "order_paid"
    row = await db.fetchrow("SELECT state, attempts, dlq_published_at FROM notify.deliveries")
    assert row["state"] == "dead" and row["attempts"] == 4 and row["dlq_published_at"]
    assert provider.requests["u1"] == 4 and provider.accepted == []


async def test_a_permanent_error_is_not_retried(
    dispatching: tuple[TestClient[Any, Any], Settings],
    provider: FakeProvider,
    token: Token,
    db: asyncpg.Connection,
) -> None:
    client, _ = dispatching
    provider.errcode["u1"] = 47003  # template parameters wrong
    await queue(client, token, (1, "u1"))
    state = lambda: db.fetchval("SELECT state FROM notify.deliveries")  # noqa: E731
    assert await wait_for(state, "dead", 10) == "dead"
    await asyncio.sleep(0.3)
    assert provider.requests["u1"] == 1


async def test_a_user_refusal_revokes_the_consent_and_is_never_retried(
    dispatching: tuple[TestClient[Any, Any], Settings],
    provider: FakeProvider,
    token: Token,
    db: asyncpg.Connection,
) -> None:
    client, _ = dispatching
    provider.errcode["u1"] = 43101
    await subscribe(client, token("u1"), template="order_paid", kind="long_term")
    await queue(client, token, (1, "u1"))
    state = lambda: db.fetchval("SELECT state FROM notify.deliveries")  # noqa: E731
    assert await wait_for(state, "refused", 10) == "refused"
    await asyncio.sleep(0.5)
    assert provider.requests["u1"] == 1
    # Every consent of u1 to the template is revoked (the message used the long-term
    # one; the one-time one was still active): the next event reaches no provider.
    states = await db.fetch("SELECT kind, state FROM notify.subscriptions ORDER BY id")
    assert [tuple(r) for r in states] == [("long_term", "revoked"), ("one_time", "revoked")]
    result = await client.server.app[REPO].enqueue([intent(2, "u1")], 0)
    assert len(result.no_consent) == 1


async def test_a_provider_hanging_for_one_user_does_not_hold_up_the_others(
    dispatching: tuple[TestClient[Any, Any], Settings],
    provider: FakeProvider,
    token: Token,
    db: asyncpg.Connection,
) -> None:
    client, s = dispatching
    provider.hang.add("slow")
    await queue(client, token, (1, "slow"))
    assert await wait_for(lambda: constant(provider.held), 1, 5) == 1
    started = time.monotonic()
    await queue(client, token, *((n, f"u{n}") for n in range(2, 12)))
    delivered = await wait_for(lambda: constant(len(provider.accepted)), 10, 10)
    elapsed = time.monotonic() - started
    assert delivered == 10
    assert elapsed < s.notify_send_timeout_seconds, elapsed
    assert "slow" not in provider.accepted_by_user()
    # The hung send timed out and is retried later.
    retried = lambda: db.fetchval(  # noqa: E731
        "SELECT attempts > 1 FROM notify.deliveries WHERE user_id = 'slow'"
    )
    assert await wait_for(retried, True, 10)


async def test_sale_starting_reminders_go_once_to_each_subscriber_of_the_activity(
    dispatching: tuple[TestClient[Any, Any], Settings],
    provider: FakeProvider,
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
    from services.notify.app import DISPATCHER

    app = client.server.app
    reminders = Reminders(app[REPO], s, NotifyMetrics(CollectorRegistry()), app[DISPATCHER].wake)
    assert await reminders.run_once() == 2
    assert await reminders.run_once() == 0  # idempotent per activity and user
    assert await wait_for(lambda: constant(len(provider.accepted)), 2, 10) == 2
    await asyncio.sleep(0.3)
    assert provider.accepted_by_user() == {"a": 1, "b": 1}
    assert provider.accepted[0]["data"]["thing1"] == {"value": "Tea set sale"}
    assert provider.accepted[0]["page"] == f"pages/activity/detail?id={soon}"
