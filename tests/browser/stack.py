"""The platform the console's browser tests drive: service processes behind the real nginx
gateway, merchant accounts made with identity's account command, and what a test does
through the API beside the browser (reads as the merchant, presses and claims as
shoppers). Shared by the sales and coupon tests."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from services.common.auth import mint_token
from services.common.settings import Settings
from tests.browser.browser import Page
from tests.e2e.processes import ROOT, create_merchant, service
from tests.gateway_process import Urls, running_gateway
from tests.helpers import free_port

NAME, PASSWORD = "console-lead", "correct horse battery staple"
VIEWER = "console-viewer"
SESSION_KEY = "flashsale.console.session"
# The browser's clock is in a zone of its own (not the machine's, not UTC): the forms must
# send the instant the merchant typed, whatever zone the browser is in.
ZONE = ZoneInfo("Asia/Shanghai")
SCREENSHOTS = ROOT / ".run" / "screenshots"
# Orders and coupon records are made from events through Kafka: allow for a slow broker.
PIPELINE_SECONDS = 60.0


@dataclasses.dataclass
class Stack:
    settings: Settings
    urls: Urls
    merchant_id: int = 0

    async def call(self, method: str, url: str, token: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.request(method, url, json=body, headers=headers) as resp,
        ):
            return resp.status, await resp.json(content_type=None)

    def merchant_token(self, role: str) -> str:
        """A token of the merchant's identity, of the test's own (the console's expire
        within a test)."""
        return mint_token(self.settings.jwt_keys(), f"merchant:{self.merchant_id}", [role])

    async def admin(self, path: str) -> Any:
        """A read on the admin side, as the merchant."""
        status, body = await self.call("GET", self.urls.admin + path, self.merchant_token("viewer"))
        assert status == 200, (path, status, body)
        return body

    async def admin_change(self, method: str, path: str, body: Any, expected: int) -> Any:
        """A change on the admin side, as the merchant with the operator role."""
        url = self.urls.admin + path
        status, answer = await self.call(method, url, self.merchant_token("operator"), body)
        assert status == expected, (path, status, answer)
        return answer

    def shopper(self, n: int) -> str:
        return mint_token(self.settings.jwt_keys(), f"console-shopper-{n}")

    async def press(self, activity_id: int, shopper: int) -> tuple[int, Any]:
        url = f"{self.urls.public}/api/seckill/activities/{activity_id}/reservations"
        return await self.call("POST", url, self.shopper(shopper), {})

    async def claim(self, template_id: int, shopper: int) -> tuple[int, Any]:
        url = f"{self.urls.public}/api/coupons/templates/{template_id}/claims"
        return await self.call("POST", url, self.shopper(shopper), {})


def console_settings(settings: Settings, **overrides: Any) -> Settings:
    """settings with the gateway's and the console's ports free."""
    return dataclasses.replace(
        settings,
        gateway_port=free_port(),
        admin_gateway_port=free_port(),
        console_port=free_port(),
        console_ops_port=free_port(),
        **overrides,
    )


@contextlib.asynccontextmanager
async def running_stack(
    settings: Settings, tmp_path: Path, services: tuple[str, ...], **overrides: Any
) -> AsyncIterator[Stack]:
    """identity, console, `services` and the gateway on free ports; an operator account
    (NAME) and a viewer (VIEWER), the operator logged in once for its id."""
    s = console_settings(
        settings,
        # Nothing listens there: no test here logs a shopper in at WeChat.
        wechat_api_url=f"http://127.0.0.1:{free_port()}",
        **overrides,
    )
    create_merchant(s, NAME, "operator", PASSWORD)
    create_merchant(s, VIEWER, "viewer", PASSWORD)
    async with contextlib.AsyncExitStack() as running:
        for name in ("identity", *services, "console"):
            await running.enter_async_context(service(name, s, tmp_path))
        urls = await running.enter_async_context(running_gateway(s, tmp_path / "gateway"))
        stack = Stack(s, urls)
        status, login = await stack.call(
            "POST", urls.admin + "/api/auth/admin/login", "", {"name": NAME, "password": PASSWORD}
        )
        assert status == 200, login
        stack.merchant_id = login["merchant"]["id"]
        yield stack


def local(moment: datetime) -> str:
    """What a merchant types into a datetime-local input, in the browser's zone."""
    return moment.astimezone(ZONE).strftime("%Y-%m-%dT%H:%M:%S")


def log_in(
    page: Page, name: str = NAME, route: str = "#/sales", ready: str = "#sales-table"
) -> None:
    """Logs in on the way to `route` and waits for its list to answer."""
    page.open(route)
    page.fill("#login-name", name)
    page.fill("#login-password", PASSWORD)
    page.click("#login-form [type=submit]")
    page.find(ready)
    page.find("[data-total]")


def visible_field_errors(page: Page) -> dict[str, str]:
    return {
        str(e.get_attribute("data-error-for")): str(e.text)
        for e in page.all(".field-error")
        if e.is_displayed()
    }


def stored_session(page: Page) -> dict[str, Any] | None:
    raw = page.driver.execute_script("return sessionStorage.getItem(arguments[0])", SESSION_KEY)
    return None if raw is None else dict(json.loads(raw))


def figures(page: Page, *names: str) -> dict[str, str]:
    return {name: page.figure(name) for name in names}


async def until(moment: datetime) -> None:
    await asyncio.sleep(max(0.0, (moment - datetime.now(ZONE)).total_seconds()))
