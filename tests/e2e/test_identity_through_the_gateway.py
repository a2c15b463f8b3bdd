"""Identity end to end: real service processes behind the real nginx gateway, the local
fake WeChat provider, the account command run as an operator would run it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.common.auth import principal_from_header
from services.common.settings import Settings
from tests.e2e.processes import ROOT, service
from tests.gateway_process import Urls, running_gateway
from tests.helpers import activity_body, free_port, settings_env
from tools.fake_wechat import FakeWeChat, code_for, running_fake_wechat

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
        s = dataclasses.replace(
            settings,
            wechat_api_url=fake.url,
            wechat_appid=fake.appid,
            wechat_secret=fake.secret,
            gateway_port=free_port(),
            admin_gateway_port=free_port(),
            seckill_embedded_worker=False,
        )
        async with (
            service("identity", s, tmp_path),
            service("seckill", s, tmp_path),
            running_gateway(s, tmp_path / "gateway") as urls,
        ):
            yield Stack(s, fake, urls)


async def post(url: str, body: Any, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=headers) as r:
        return r.status, await r.json(content_type=None)


def create_account(settings: Settings, name: str, role: str, password: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.identity.admin",
            "create",
            name,
            "--role",
            role,
            "--password-stdin",
        ],
        cwd=ROOT,
        env=settings_env(settings),
        input=f"{password}\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert password not in done.stdout + done.stderr


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
