"""Identity end to end: real service processes behind the real nginx gateway, the local
fake WeChat provider, the account command run as an operator would run it."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.common.auth import principal_from_header
from services.common.kafka import publish_all, start_producer
from services.common.settings import Settings
from services.common.topics import ORDERS
from tests.e2e.processes import create_merchant as create_account
from tests.e2e.processes import service
from tests.gateway_process import Urls, running_gateway
from tests.helpers import activity_body, constant, free_port, wait_for
from tests.notify_helpers import order_paid, shared_token_settings
from tools.fake_wechat import FakeWeChat, code_for, openid_for, running_fake_wechat

pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery staple"


@dataclasses.dataclass
class Stack:
    settings: Settings
    fake: FakeWeChat
    urls: Urls


@pytest.fixture
async def stack(settings: Settings, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_fake_wechat() as fake:
        # notify sends through the fake with the access_token identity's keeper shares.
        s = shared_token_settings(
            settings,
            fake,
            gateway_port=free_port(),
            admin_gateway_port=free_port(),
            seckill_embedded_worker=False,
            wechat_token_check_seconds=0.2,
        )
        async with (
            service("identity", s, tmp_path),
            service("seckill", s, tmp_path),
            service("notify", s, tmp_path),
            running_gateway(s, tmp_path / "gateway") as urls,
        ):
            yield Stack(s, fake, urls)


async def post(url: str, body: Any, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=headers) as r:
        return r.status, await r.json(content_type=None)


async def test_an_account_made_with_the_command_logs_in_on_the_admin_side_and_creates_a_sale(
    stack: Stack,
) -> None:
    create_account(stack.settings, "ops-lead", "admin", PASSWORD)
    login = {"name": "ops-lead", "password": PASSWORD}

    # The merchant login exists only on the admin side.
    status, body = await post(f"{stack.urls.public}/api/auth/admin/login", login)
    assert (status, body["error"]) == (404, "not_found")

    status, body = await post(f"{stack.urls.admin}/api/auth/admin/login", login)
    assert status == 200, body
    who = principal_from_header(f"Bearer {body['access_token']}", stack.settings.jwt_keys())
    assert who.roles == frozenset({"admin"})
    assert who.user_id == f"merchant:{body['merchant']['id']}"

    # The admin token works on an admin route, through the admin side ...
    url = f"{stack.urls.admin}/api/seckill/admin/activities"
    status, created = await post(url, activity_body(), body["access_token"])
    assert status == 201, created
    # ... which the public side does not route at all.
    status, hidden = await post(
        f"{stack.urls.public}/api/seckill/admin/activities", activity_body(), body["access_token"]
    )
    assert (status, hidden["error"]) == (404, "not_found")

    # The merchant's refresh token rotates like a shopper's, and keeps the admin role.
    status, refreshed = await post(
        f"{stack.urls.admin}/api/auth/refresh", {"refresh_token": body["refresh_token"]}
    )
    assert status == 200, refreshed
    again = principal_from_header(f"Bearer {refreshed['access_token']}", stack.settings.jwt_keys())
    assert again.roles == frozenset({"admin"})


async def test_a_wrong_password_through_the_gateway_is_refused_and_creates_nothing(
    stack: Stack,
) -> None:
    create_account(stack.settings, "ops-two", "admin", PASSWORD)
    status, body = await post(
        f"{stack.urls.admin}/api/auth/admin/login", {"name": "ops-two", "password": "wrong" * 3}
    )
    assert (status, body["error"]) == (401, "invalid_credentials")
    status, unknown = await post(
        f"{stack.urls.admin}/api/auth/admin/login", {"name": "nobody", "password": "wrong" * 3}
    )
    assert (status, unknown) == (401, body)


async def test_a_shopper_logs_in_through_the_public_gateway_and_is_not_an_admin(
    stack: Stack,
) -> None:
    status, body = await post(f"{stack.urls.public}/api/auth/login", {"code": code_for("amy")})
    assert status == 200, body
    assert body["user"]["new"] is True
    # The shopper's token is accepted by another service, and refused on admin routes.
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{stack.urls.public}/api/seckill/activities",
            headers={"Authorization": f"Bearer {body['access_token']}"},
        ) as r:
            assert r.status == 200
    status, refused = await post(
        f"{stack.urls.admin}/api/seckill/admin/activities", activity_body(), body["access_token"]
    )
    assert (status, refused["error"]) == (403, "forbidden")
    # Logging in again through the gateway is the same user.
    status, again = await post(f"{stack.urls.public}/api/auth/login", {"code": code_for("amy")})
    assert (status, again["user"]) == (200, {"id": body["user"]["id"], "new": False})


async def test_a_paid_order_message_goes_to_the_openid_the_provider_gave_at_login(
    stack: Stack,
) -> None:
    """login (code2Session) -> user.registered -> notify learns the openid; the shopper
    consents; order.paid -> the provider receives it addressed to that openid, sent with
    the access_token identity fetched, never to our user id."""
    status, body = await post(f"{stack.urls.public}/api/auth/login", {"code": code_for("zoe")})
    assert status == 200, body
    user_id, token = body["user"]["id"], body["access_token"]
    status, consent = await post(
        f"{stack.urls.public}/api/notify/subscriptions", {"template": "order_paid"}, token
    )
    assert status == 201, consent
    producer = await start_producer(stack.settings)
    try:
        await publish_all(producer, stack.settings.topic(ORDERS), [order_paid(1, user_id)])
    finally:
        await producer.stop()
    accepted = await wait_for(lambda: constant(len(stack.fake.accepted)), 1, within=30)
    assert accepted == 1
    (message,) = stack.fake.accepted
    assert message["touser"] == openid_for(stack.fake.appid, "zoe")
    assert user_id not in str(message)
    assert stack.fake.token_fetches >= 1  # identity's keeper, not a fixed token
    assert stack.fake.bad_token == 0
