"""The merchant console in a real browser, against the real platform: every service as a
process (seckill with its worker, order, groupbuy, notify, identity, console) behind the
real nginx gateway, a merchant account made with identity's account command, shoppers
pressing through the public side with their own tokens.

The console uses only the routes of docs/admin-api.md; the figures the board must reach
are exact (remaining 0, reservations = stock, orders created = stock)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from services.common.auth import mint_token
from services.common.settings import Settings
from tests.browser.browser import Page, chromium
from tests.e2e.processes import ROOT, create_merchant, service
from tests.gateway_process import Urls, running_gateway
from tests.helpers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

NAME, PASSWORD = "console-lead", "correct horse battery staple"
VIEWER = "console-viewer"
# Short enough that the console must renew the token within a test.
ACCESS_TOKEN_SECONDS = 12
SESSION_KEY = "flashsale.console.session"
# The browser's clock is in a zone of its own (not the machine's, not UTC): the form must
# send the instant the merchant typed, whatever zone the browser is in.
ZONE = ZoneInfo("Asia/Shanghai")
STOCK, SHOPPERS = 50, 200
SCREENSHOTS = ROOT / ".run" / "screenshots"
# Orders are created from the reservations through Kafka: allow for a slow broker.
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

    async def admin(self, path: str) -> Any:
        """A read with the merchant's identity, in a token of the test's own (the
        console's expire within the test)."""
        token = mint_token(self.settings.jwt_keys(), f"merchant:{self.merchant_id}", ["viewer"])
        status, body = await self.call("GET", self.urls.admin + path, token)
        assert status == 200, (path, status, body)
        return body

    def shopper(self, n: int) -> str:
        return mint_token(self.settings.jwt_keys(), f"console-shopper-{n}")

    async def press(self, activity_id: int, shopper: int) -> tuple[int, Any]:
        url = f"{self.urls.public}/api/seckill/activities/{activity_id}/reservations"
        return await self.call("POST", url, self.shopper(shopper), {})


@pytest.fixture
async def stack(settings: Settings, tmp_path: Path) -> AsyncIterator[Stack]:
    s = dataclasses.replace(
        settings,
        gateway_port=free_port(),
        admin_gateway_port=free_port(),
        console_port=free_port(),
        console_ops_port=free_port(),
        seckill_embedded_worker=False,
        admin_access_token_ttl_seconds=ACCESS_TOKEN_SECONDS,
        # Nothing listens there: no test here logs a shopper in at WeChat.
        wechat_api_url=f"http://127.0.0.1:{free_port()}",
    )
    create_merchant(s, NAME, "operator", PASSWORD)
    create_merchant(s, VIEWER, "viewer", PASSWORD)
    async with (
        service("identity", s, tmp_path),
        service("seckill", s, tmp_path),
        service("seckill.worker", s, tmp_path),
        service("order", s, tmp_path),
        service("groupbuy", s, tmp_path),
        service("notify", s, tmp_path),
        service("console", s, tmp_path),
        running_gateway(s, tmp_path / "gateway") as urls,
    ):
        stack = Stack(s, urls)
        status, login = await stack.call(
            "POST", urls.admin + "/api/auth/admin/login", "", {"name": NAME, "password": PASSWORD}
        )
        assert status == 200, login
        stack.merchant_id = login["merchant"]["id"]
        yield stack


@pytest.fixture
def page(stack: Stack, tmp_path: Path) -> Iterator[Page]:
    with chromium(str(ZONE), tmp_path / "chromedriver.log") as driver:
        yield Page(driver, stack.urls.admin)


def local(moment: datetime) -> str:
    """What a merchant types into a datetime-local input, in the browser's zone."""
    return moment.astimezone(ZONE).strftime("%Y-%m-%dT%H:%M:%S")


def log_in(page: Page, name: str = NAME) -> None:
    page.open("#/sales")
    page.fill("#login-name", name)
    page.fill("#login-password", PASSWORD)
    page.click("#login-form [type=submit]")
    page.find("#sales-table")
    page.find("[data-total]")  # the list answered


def fill_flash_sale(page: Page, title: str, starts: datetime, ends: datetime) -> None:
    page.open("#/sales/new?kind=seckill")
    page.find('#sale-form[data-kind="seckill"]')
    page.fill("#f-sku", "tea-set")
    page.fill("#f-title", title)
    page.fill("#f-price_cents", "99.00")
    page.fill("#f-stock", str(STOCK))
    page.fill("#f-per_user_limit", "1")
    page.set_value("#f-starts_at", local(starts))
    page.set_value("#f-ends_at", local(ends))


def created_sale_id(page: Page) -> int:
    page.find("#open-board")
    route = page.driver.execute_script("return location.hash")
    assert route.startswith("#/sales/seckill/"), route
    return int(route.rsplit("/", 1)[1])


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


async def test_a_merchant_runs_a_flash_sale_from_the_console_and_watches_it_sell_out(
    stack: Stack, page: Page
) -> None:
    log_in(page)

    # A bad input first: the server's refusal shows next to the field it names, and
    # nothing is created.
    starts = datetime.now(ZONE).replace(microsecond=0) + timedelta(seconds=15)
    fill_flash_sale(page, "Tea set", starts, starts - timedelta(minutes=1))
    page.click("#save-sale")
    page.wait("the ends_at error", lambda: visible_field_errors(page) or None)
    assert visible_field_errors(page) == {"ends_at": "ends_at: must be after starts_at"}
    listed = await stack.admin("/api/seckill/admin/activities")
    assert (listed["activities"], listed["total"]) == ([], 0)

    page.set_value("#f-ends_at", local(starts + timedelta(hours=1)))
    page.click("#save-sale")
    sale_id = created_sale_id(page)
    sale = await stack.admin(f"/api/seckill/admin/activities/{sale_id}")
    assert datetime.fromisoformat(sale["starts_at"]) == starts
    assert (sale["stock"], sale["price_cents"], sale["state"]) == (STOCK, 9900, "upcoming")

    page.click("#open-board")
    page.wait("the board's first reading", lambda: page.figure("remaining") == str(STOCK) or None)

    # The burst: SHOPPERS shoppers press once each through the public side.
    await until(starts + timedelta(seconds=0.5))
    answers = await asyncio.gather(*(stack.press(sale_id, n) for n in range(SHOPPERS)))
    assert Counter(status for status, _ in answers) == {201: STOCK, 410: SHOPPERS - STOCK}

    wanted = {"remaining": "0", "reservations": str(STOCK), "orders_created": str(STOCK)}
    page.wait(
        f"the board to show {wanted}",
        lambda: figures(page, *wanted) == wanted or None,
        PIPELINE_SECONDS,
    )
    assert page.find('[data-board-state] [data-state="live"]')
    assert page.find("[data-last-update]").get_attribute("datetime")
    page.screenshot(SCREENSHOTS / "console-board.png")

    # A second sale, ended early from the console: a press is refused at once.
    second_starts = datetime.now(ZONE).replace(microsecond=0) + timedelta(seconds=8)
    fill_flash_sale(page, "Tea cups", second_starts, second_starts + timedelta(hours=1))
    page.click("#save-sale")
    second_id = created_sale_id(page)
    await until(second_starts + timedelta(seconds=0.5))
    page.driver.refresh()  # the detail page shows the state it loaded: now live
    page.click('[data-action="end"]')
    page.click('[data-action="end-confirm"]')
    page.wait("the sale to end", lambda: page.all('.page h1 [data-state="ended"]') or None)
    status, refused = await stack.press(second_id, SHOPPERS + 1)
    assert (status, refused["error"]) == (410, "sale_ended")
    ended = await stack.admin(f"/api/seckill/admin/activities/{second_id}")
    assert (ended["state"], ended["ended_early"]) == ("ended", True)
    newest = page.find("#audit-table tbody tr")
    assert newest.get_attribute("data-audit-action") == "activity.end"
    assert f"merchant:{stack.merchant_id}" in newest.text

    # An order, found by its id, with its history.
    reserved = next(n for n, (status, _) in enumerate(answers) if status == 201)
    status, mine = await stack.call(
        "GET", f"{stack.urls.public}/api/orders", stack.shopper(reserved)
    )
    assert status == 200 and len(mine["orders"]) == 1, mine
    order_id = mine["orders"][0]["id"]
    page.open("#/orders")
    page.fill("#q-order_id", order_id)
    page.click("#search-orders")
    page.click(f'#orders-table [data-order-id="{order_id}"] a')
    history = page.find('#order-history li[data-history="created"]')
    assert [li.get_attribute("data-history") for li in page.all("#order-history li")] == ["created"]
    assert "created" in history.text
    assert page.find("[data-order-state]").text == "pending_payment"

    page.open("#/sales?kind=seckill")
    page.wait(
        "both sales listed", lambda: len(page.all("#sales-table [data-sale-id]")) == 2 or None
    )
    page.screenshot(SCREENSHOTS / "console-sales.png")


async def test_a_viewer_stays_logged_in_past_the_token_s_life_and_is_told_a_change_is_not_theirs(
    stack: Stack, page: Page
) -> None:
    log_in(page, VIEWER)
    first = stored_session(page)
    assert first is not None and first["merchant"]["roles"] == ["viewer"]
    assert page.find("#who-name").text == f"{VIEWER} (viewer)"

    # The console renews the access token before it expires, with a rotated refresh token.
    renewed = page.wait(
        "the access token to be renewed",
        lambda: (
            (now := stored_session(page)) and now["access_token"] != first["access_token"] and now
        ),
        ACCESS_TOKEN_SECONDS + 10,
    )
    assert renewed["refresh_token"] != first["refresh_token"]
    page.open("#/sales?kind=groupbuy")
    page.find('[data-kind="groupbuy"].active')
    assert page.find("[data-total]").get_attribute("data-total") == "0"

    # A change the role does not grant: the API's 403, said plainly; nothing is created.
    starts = datetime.now(ZONE).replace(microsecond=0) + timedelta(minutes=5)
    fill_flash_sale(page, "Not mine", starts, starts + timedelta(hours=1))
    page.click("#save-sale")
    page.wait(
        "the refusal", lambda: "Your role may not do this." in page.find("#sale-form").text or None
    )
    listed = await stack.admin("/api/seckill/admin/activities")
    assert listed["total"] == 0

    # Logging out ends the login itself, not only the tab's copy of it.
    page.click("#logout")
    page.find("#login-form")
    assert stored_session(page) is None
    status, body = await stack.call(
        "POST",
        stack.urls.admin + "/api/auth/refresh",
        "",
        {"refresh_token": renewed["refresh_token"]},
    )
    assert (status, body["error"]) == (401, "refresh_token_revoked")
