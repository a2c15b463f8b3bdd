"""The merchant console in a real browser, against the real platform: every service as a
process (seckill with its worker, order, groupbuy, notify, identity, console) behind the
real nginx gateway, a merchant account made with identity's account command, shoppers
pressing through the public side with their own tokens.

The console uses only the routes of docs/admin-api.md; the figures the board must reach
are exact (remaining 0, reservations = stock, orders created = stock)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from services.common.settings import Settings
from tests.browser.browser import Page
from tests.browser.stack import (
    PIPELINE_SECONDS,
    SCREENSHOTS,
    VIEWER,
    ZONE,
    Stack,
    figures,
    local,
    log_in,
    running_stack,
    stored_session,
    until,
    visible_field_errors,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# Short enough that the console must renew the token within a test.
ACCESS_TOKEN_SECONDS = 12
STOCK, SHOPPERS = 50, 200


@pytest.fixture
async def stack(settings: Settings, tmp_path: Path) -> AsyncIterator[Stack]:
    services = ("seckill", "seckill.worker", "order", "groupbuy", "notify")
    async with running_stack(
        settings,
        tmp_path,
        services,
        seckill_embedded_worker=False,
        admin_access_token_ttl_seconds=ACCESS_TOKEN_SECONDS,
    ) as stack:
        yield stack


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
