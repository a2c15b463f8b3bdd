"""Notify's admin API (docs/admin-api.md, "Notifications"): provider template ids set in
the console, which the dispatcher sends with, and delivery counts; on real PostgreSQL and
the WeChat-shaped fake provider (tools/fake_wechat.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient

from services.common.auth import mint_token
from services.common.settings import Settings
from services.notify.app import DISPATCHER, create_app
from services.notify.domain import DELIVERY_STATES, TEMPLATES, RecipientWait, intents_for
from services.notify.routes import REPO
from tests.helpers import constant, started_client, wait_for
from tests.notify_helpers import notify_settings, order_paid, recipient
from tools.fake_wechat import FakeWeChat, running_fake_wechat

APPID = "wx-admin-appid"
MERCHANT = "merchant:3"


def merchant(settings: Settings, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings.jwt_keys(), MERCHANT, [role])}"}


def shopper(settings: Settings, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings.jwt_keys(), user)}"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeWeChat]:
    async with running_fake_wechat(appid=APPID) as f:
        yield f


@pytest.fixture
async def notify_api(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The notify API with a template id from the setting, and no background work."""
    s = dataclasses.replace(settings, notify_template_ids="order_paid=TPL-PAID-DEFAULT")
    client = await started_client(
        create_app(s, run_consumers=False, run_dispatcher=False, run_reminders=False)
    )
    yield client
    await client.close()


async def put_template(
    client: TestClient[Any, Any], kind: str, body: Any, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    resp = await client.put(f"/api/notify/admin/templates/{kind}", json=body, headers=headers)
    return resp.status, await resp.json()


async def test_every_kind_is_listed_with_the_id_it_is_sent_with(
    notify_api: TestClient[Any, Any], settings: Settings
) -> None:
    resp = await notify_api.get("/api/notify/admin/templates", headers=merchant(settings, "viewer"))
    assert resp.status == 200
    entries = (await resp.json())["templates"]
    assert [e["kind"] for e in entries] == list(TEMPLATES)
    by_kind = {e["kind"]: e for e in entries}
    assert by_kind["order_paid"] == {
        "kind": "order_paid",
        "provider_template_id": "TPL-PAID-DEFAULT",
        "source": "default",
        "updated_at": None,
        "updated_by": None,
    }
    assert by_kind["payment_due"]["provider_template_id"] == "payment_due"


async def test_setting_a_template_id_is_stored_audited_and_listed(
    notify_api: TestClient[Any, Any], settings: Settings, db: asyncpg.Connection
) -> None:
    operator = merchant(settings, "operator")
    status, body = await put_template(
        notify_api, "order_paid", {"provider_template_id": "Ab_c-9"}, operator
    )
    assert status == 200
    assert {k: body[k] for k in ("kind", "provider_template_id", "source", "updated_by")} == {
        "kind": "order_paid",
        "provider_template_id": "Ab_c-9",
        "source": "set",
        "updated_by": MERCHANT,
    }
    assert body["updated_at"] is not None
    resp = await notify_api.get("/api/notify/admin/templates", headers=merchant(settings, "viewer"))
    listed = {e["kind"]: e for e in (await resp.json())["templates"]}
    assert listed["order_paid"] == body
    # The same id again changes nothing and writes no audit entry.
    status, again = await put_template(
        notify_api, "order_paid", {"provider_template_id": "Ab_c-9"}, operator
    )
    assert (status, again) == (200, body)
    status, _ = await put_template(
        notify_api, "order_paid", {"provider_template_id": "Second"}, operator
    )
    assert status == 200
    rows = await db.fetch(
        "SELECT actor, action, target, target_id, before::text, after::text"
        " FROM notify.admin_audit ORDER BY id"
    )
    assert [(r["actor"], r["action"], r["target"], r["target_id"]) for r in rows] == [
        (MERCHANT, "template.set", "template", "order_paid"),
        (MERCHANT, "template.set", "template", "order_paid"),
    ]
    assert [(orjson.loads(r["before"]), orjson.loads(r["after"])) for r in rows] == [
        (
            {"provider_template_id": "TPL-PAID-DEFAULT", "source": "default"},
            {"provider_template_id": "Ab_c-9", "source": "set"},
        ),
        ({"provider_template_id": "Ab_c-9"}, {"provider_template_id": "Second"}),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"provider_template_id": ""},
        {"provider_template_id": "x" * 129},
        {"provider_template_id": "has space"},
        {"provider_template_id": "semi;colon"},
        {"provider_template_id": 42},
        {"provider_template_id": "ok", "kind": "order_paid"},
    ],
)
async def test_a_bad_template_id_is_400_and_changes_nothing(
    notify_api: TestClient[Any, Any], settings: Settings, db: asyncpg.Connection, body: Any
) -> None:
    status, answer = await put_template(
        notify_api, "order_paid", body, merchant(settings, "operator")
    )
    field = "kind" if "kind" in body else "provider_template_id"
    assert (status, answer["error"], answer["field"]) == (400, "invalid_request", field)
    assert await db.fetchval("SELECT count(*) FROM notify.templates") == 0
    assert await db.fetchval("SELECT count(*) FROM notify.admin_audit") == 0


async def test_template_and_delivery_routes_refuse_who_may_not_call_them(
    notify_api: TestClient[Any, Any], settings: Settings, db: asyncpg.Connection
) -> None:
    put = "/api/notify/admin/templates/order_paid"
    body = {"provider_template_id": "X1"}
    for method, url in (
        ("GET", "/api/notify/admin/templates"),
        ("PUT", put),
        ("GET", "/api/notify/admin/deliveries"),
    ):
        resp = await notify_api.request(method, url, json=body)
        assert (resp.status, (await resp.json())["error"]) == (401, "unauthorized")
        resp = await notify_api.request(method, url, json=body, headers=shopper(settings, "u1"))
        assert (resp.status, (await resp.json())["error"]) == (403, "forbidden")
    status, answer = await put_template(
        notify_api, "order_paid", body, merchant(settings, "viewer")
    )
    assert (status, answer["error"]) == (403, "forbidden")
    status, answer = await put_template(notify_api, "no_such", body, merchant(settings, "operator"))
    assert (status, answer["error"]) == (404, "not_found")
    assert await db.fetchval("SELECT count(*) FROM notify.templates") == 0


async def test_delivery_counts_cover_every_state_and_kind(
    notify_api: TestClient[Any, Any], settings: Settings, db: asyncpg.Connection
) -> None:
    repo = notify_api.server.app[REPO]
    for user in ("u1", "u2", "u3"):
        resp = await notify_api.post(
            "/api/notify/subscriptions",
            json={"template": "order_paid", "kind": "long_term"},
            headers=shopper(settings, user),
        )
        assert resp.status == 201
    intents = [
        i for n, u in ((1, "u1"), (2, "u2"), (3, "u3")) for i in intents_for(order_paid(n, u))
    ]
    await repo.enqueue(intents, 0)
    await repo.enqueue(intents_for(order_paid(4, "u4")), 0)  # no consent: skipped
    await db.execute(
        "UPDATE notify.deliveries SET state = 'sent', sent_at = now() WHERE user_id = 'u1'"
    )
    await db.execute(
        "UPDATE notify.deliveries SET state = 'dead', finished_at = now() WHERE user_id = 'u2'"
    )
    resp = await notify_api.get(
        "/api/notify/admin/deliveries", headers=merchant(settings, "viewer")
    )
    assert resp.status == 200
    body = await resp.json()
    zero = dict.fromkeys(DELIVERY_STATES, 0)
    assert body["counts"] == {**zero, "sent": 1, "dead": 1, "pending": 1, "skipped": 1}
    assert set(body["by_kind"]) == set(TEMPLATES)
    assert body["by_kind"]["order_paid"] == body["counts"]
    assert body["by_kind"]["payment_due"] == zero


# --- the dispatcher sends with the id set ---------------------------------------------


async def queue_paid(
    client: TestClient[Any, Any], settings: Settings, order_no: int, user: str
) -> None:
    app = client.server.app
    resp = await client.post(
        "/api/notify/subscriptions",
        json={"template": "order_paid"},
        headers=shopper(settings, user),
    )
    assert resp.status == 201
    await app[REPO].add_recipients([recipient(user, APPID)], APPID, 0)
    await app[REPO].enqueue(intents_for(order_paid(order_no, user)), 0, RecipientWait(APPID, 60))
    app[DISPATCHER].wake()


async def test_a_message_sent_after_the_change_carries_the_new_template_id(
    settings: Settings, fake: FakeWeChat
) -> None:
    """The change is made through one process (the API) and the message sent by another
    (the dispatcher), which takes it up within NOTIFY_TEMPLATE_CACHE_SECONDS."""
    s = notify_settings(
        settings,
        fake,
        notify_template_ids="order_paid=TPL-OLD",
        notify_template_cache_seconds=0.5,
    )
    sender = await started_client(create_app(s, run_consumers=False, run_reminders=False))
    api = await started_client(
        create_app(s, run_consumers=False, run_dispatcher=False, run_reminders=False)
    )
    try:
        await queue_paid(sender, s, 1, "u1")
        assert await wait_for(lambda: constant(len(fake.accepted)), 1, 10) == 1
        assert fake.accepted[0]["template_id"] == "TPL-OLD"

        status, _ = await put_template(
            api, "order_paid", {"provider_template_id": "TPL-NEW"}, merchant(s, "operator")
        )
        assert status == 200
        # Within the cache time every process sends with it.
        await asyncio.sleep(0.6)
        await queue_paid(sender, s, 2, "u2")
        assert await wait_for(lambda: constant(len(fake.accepted)), 2, 10) == 2
        assert [m["template_id"] for m in fake.accepted] == ["TPL-OLD", "TPL-NEW"]
    finally:
        await api.close()
        await sender.close()


async def test_the_process_that_served_the_change_sends_with_it_at_once(
    settings: Settings, fake: FakeWeChat
) -> None:
    s = notify_settings(settings, fake, notify_template_cache_seconds=3600.0)
    client = await started_client(create_app(s, run_consumers=False, run_reminders=False))
    try:
        await queue_paid(client, s, 1, "u1")
        assert await wait_for(lambda: constant(len(fake.accepted)), 1, 10) == 1
        status, _ = await put_template(
            client, "order_paid", {"provider_template_id": "TPL-NOW"}, merchant(s, "admin")
        )
        assert status == 200
        await queue_paid(client, s, 2, "u2")
        assert await wait_for(lambda: constant(len(fake.accepted)), 2, 10) == 2
        assert [m["template_id"] for m in fake.accepted] == ["order_paid", "TPL-NOW"]
    finally:
        await client.close()
