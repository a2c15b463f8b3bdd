"""The console's API page in a real browser: the admin gateway's merged OpenAPI document,
served by the real nginx gateway, rendered by the console's own modules under its strict
CSP (nothing from another host), grouped by service, without a login."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.common.settings import Settings
from tests.browser.browser import Page, chromium
from tests.browser.stack import console_settings
from tests.e2e.processes import ROOT, service
from tests.gateway_process import Urls, running_gateway
from tools.openapi import admin_document

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
SCREENSHOT = ROOT / ".run" / "screenshots" / "console-api.png"


@pytest.fixture
async def urls(settings: Settings, tmp_path: Path) -> AsyncIterator[Urls]:
    """The console behind the gateway; no other service runs: the page needs none."""
    s = console_settings(settings)
    async with service("console", s, tmp_path), running_gateway(s, tmp_path / "gw") as running:
        yield running


@pytest.fixture
def page(urls: Urls, tmp_path: Path) -> Iterator[Page]:
    with chromium("UTC", tmp_path / "chromedriver.log") as driver:
        yield Page(driver, urls.admin)


def test_the_api_page_renders_every_operation_grouped_by_service(page: Page) -> None:
    document = admin_document()
    page.open("#/api")
    page.find('[data-service="seckill"] [data-operation="seckill_reserve"]')
    services = [str(e.get_attribute("data-service")) for e in page.all("[data-service]")]
    assert services == [tag["name"] for tag in document["tags"]]
    shown = {str(e.get_attribute("data-operation")) for e in page.all("[data-operation]")}
    expected = {op["operationId"] for ms in document["paths"].values() for op in ms.values()}
    assert shown == expected
    assert f"{len(expected)} operations" in page.find("[data-status]").text

    reserve = page.find('[data-operation="seckill_reserve"]')
    reserve.find_element("css selector", "summary").click()
    text = reserve.text
    assert "/api/seckill/activities/{id}/reservations" in text
    assert "Idempotency-Key" in text
    assert "quantity" in text and "≤ 100" in text
    answers = {
        str(e.get_attribute("data-status"))
        for e in reserve.find_elements("css selector", "[data-status]")
    }
    assert {"201", "400", "401", "409", "410", "429", "503"} <= answers

    live = page.find('[data-operation="seckill_admin_activity_live"]')
    live.find_element("css selector", "summary").click()
    assert "text/event-stream" in live.text and "role viewer" in live.text
    page.screenshot(SCREENSHOT)


def test_the_filter_keeps_only_the_operations_that_match(page: Page) -> None:
    page.open("#/api")
    page.find('[data-operation="order_payment_callback"]')
    page.fill('input[type="search"]', "payments/callback")
    visible = [
        str(e.get_attribute("data-operation"))
        for e in page.all("[data-operation]")
        if e.is_displayed()
    ]
    assert visible == ["order_payment_callback"]
