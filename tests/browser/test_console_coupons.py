"""The console's coupon pages in a real browser, against the real coupon service (Redis
gate, PostgreSQL record, Kafka between them) behind the real nginx gateway: a template
made through the form, claimed by shoppers through the public side while its figures
change on the page, its quantity set and the template ended; a viewer who is shown no
change and refused one; a grant rule created and deactivated.

What the page shows is checked against the admin API's answer: the exact terms, the
exact figures (remaining, issued, claimed)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.support.ui import Select

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
    until,
    visible_field_errors,
)
from tests.helpers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TEMPLATES = "/api/coupons/admin/templates"
RULES = "/api/coupons/admin/rules"
QUANTITY, CLAIMERS = 50, 5


@pytest.fixture
async def stack(settings: Settings, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(
        settings, tmp_path, ("coupon",), coupon_port=free_port(), coupon_ops_port=free_port()
    ) as stack:
        yield stack


def now() -> datetime:
    return datetime.now(ZONE).replace(microsecond=0)


def template_body(name: str, claims_open: datetime, **changes: Any) -> dict[str, Any]:
    """A 满 100 减 20 template, claimable for an hour from claims_open."""
    body = {
        "name": name,
        "kind": "amount_off",
        "threshold_cents": 10000,
        "amount_off_cents": 2000,
        "validity": "relative",
        "valid_days": 7,
        "quantity": QUANTITY,
        "per_user_limit": 1,
        "claimable": True,
        "claim_starts_at": claims_open.isoformat(),
        "claim_ends_at": (claims_open + timedelta(hours=1)).isoformat(),
    }
    return body | changes


def fill_template(page: Page, name: str, claims_open: datetime, threshold: str) -> None:
    page.open("#/coupons/new")
    page.find("#coupon-form")
    page.fill("#f-name", name)
    Select(page.find("#f-kind")).select_by_value("amount_off")
    page.fill("#f-threshold_cents", threshold)
    page.fill("#f-amount_off_cents", "20")
    Select(page.find("#f-validity")).select_by_value("fixed")
    page.set_value("#f-valid_from", local(claims_open))
    page.set_value("#f-valid_until", local(claims_open + timedelta(days=30)))
    page.fill("#f-quantity", str(QUANTITY))
    page.fill("#f-per_user_limit", "1")
    page.set_value("#f-claim_starts_at", local(claims_open))
    page.set_value("#f-claim_ends_at", local(claims_open + timedelta(hours=1)))
    Select(page.find("#f-scope")).select_by_value("campaigns")
    page.fill("#f-scope_ids", "7, 8")


def created_template_id(page: Page) -> int:
    page.find("[data-coupon-name]")
    route = page.driver.execute_script("return location.hash")
    assert route.startswith("#/coupons/"), route
    return int(route.rsplit("/", 1)[1])


def audit_actions(page: Page) -> list[str]:
    return [str(r.get_attribute("data-audit-action")) for r in page.all("#audit-table tbody tr")]


async def test_a_merchant_creates_a_coupon_template_watches_shoppers_claim_it_and_ends_it(
    stack: Stack, page: Page
) -> None:
    log_in(page, route="#/coupons", ready="#coupons-table")
    assert page.find('[data-nav="coupons"].active')

    # A threshold not above the amount off: the page hints it, the server refuses it next
    # to the field, nothing is created.
    claims_open = now() + timedelta(seconds=20)
    fill_template(page, "Spring ¥20", claims_open, threshold="20")
    assert page.find('[data-warning-for="threshold_cents"]').text
    assert page.find("[data-terms-preview]").text.startswith("满 20 减 20")
    assert not page.all("[data-field=percent_off]")[0].is_displayed()
    assert not page.all("[data-field=valid_days]")[0].is_displayed()
    page.click("#save-coupon")
    page.wait("the threshold error", lambda: visible_field_errors(page) or None)
    assert visible_field_errors(page) == {
        "threshold_cents": "threshold_cents: must be above amount_off_cents"
    }
    listed = await stack.admin(TEMPLATES)
    assert (listed["templates"], listed["total"]) == ([], 0)

    page.fill("#f-threshold_cents", "100")
    page.wait(
        "the hint to go",
        lambda: not page.all('[data-warning-for="threshold_cents"]')[0].is_displayed() or None,
    )
    page.click("#save-coupon")
    template_id = created_template_id(page)
    made = await stack.admin(f"{TEMPLATES}/{template_id}")
    assert {k: made[k] for k in ("kind", "threshold_cents", "amount_off_cents", "quantity")} == {
        "kind": "amount_off",
        "threshold_cents": 10000,
        "amount_off_cents": 2000,
        "quantity": QUANTITY,
    }
    assert (made["scope"], made["scope_ids"], made["state"]) == (
        "campaigns",
        ["7", "8"],
        "upcoming",
    )
    assert datetime.fromisoformat(made["claim_starts_at"]) == claims_open
    assert page.find("[data-terms]").text == "满 100 减 20"
    page.wait("the first figures", lambda: page.figure("remaining") == str(QUANTITY) or None)

    # Edited while upcoming: only the changed field is sent (and audited).
    page.click('[data-action="edit"]')
    page.find("#coupon-form")
    assert page.find("#f-kind").get_attribute("disabled") is not None
    page.fill("#f-name", "Spring ¥20 off ¥100")
    page.click("#save-coupon")
    page.wait(
        "the new name",
        lambda: page.find("[data-coupon-name]").text == "Spring ¥20 off ¥100" or None,
    )
    edit = (await stack.admin(f"{TEMPLATES}/{template_id}/audit"))["entries"][0]
    assert (edit["after"], edit["before"]) == (
        {"name": "Spring ¥20 off ¥100"},
        {"name": "Spring ¥20"},
    )

    page.open("#/coupons?state=upcoming")
    row = page.find(f'#coupons-table [data-coupon-id="{template_id}"]')
    assert "满 100 减 20" in row.text and "upcoming" in row.text
    assert page.find("[data-total]").get_attribute("data-total") == "1"
    page.screenshot(SCREENSHOTS / "console-coupons.png")

    # Shoppers claim through the public side; the page follows the figures.
    page.click(f'#coupons-table [data-coupon-id="{template_id}"] a')
    page.find("[data-coupon-name]")
    await until(claims_open + timedelta(seconds=0.5))
    answers = [await stack.claim(template_id, n) for n in range(CLAIMERS)]
    again = await stack.claim(template_id, 0)
    assert Counter(status for status, _ in answers) == {201: CLAIMERS}
    assert (again[0], again[1]["error"]) == (409, "limit_reached")
    wanted = {
        "remaining": str(QUANTITY - CLAIMERS),
        "issued": str(CLAIMERS),
        "claimed": str(CLAIMERS),
    }
    page.wait(
        f"the figures to show {wanted}",
        lambda: figures(page, *wanted) == wanted or None,
        PIPELINE_SECONDS,
    )
    page.wait(
        "the state to go live", lambda: page.all('[data-coupon-state] [data-state="live"]') or None
    )

    # A new quantity: never below what was issued; the remaining follows.
    page.fill("#new-quantity", "40")
    page.click('[data-action="set-quantity"]')
    moved = {"quantity": "40", "remaining": str(40 - CLAIMERS)}
    page.wait(f"the figures to show {moved}", lambda: figures(page, *moved) == moved or None)
    page.driver.execute_script("window.scrollTo(0, 0)")  # the terms and figures
    page.screenshot(SCREENSHOTS / "console-coupon.png")

    # Ended from the console: a claim is refused at once.
    page.click('[data-action="end"]')
    page.click('[data-action="end-confirm"]')
    page.wait(
        "the template to end", lambda: page.all('[data-coupon-state] [data-state="ended"]') or None
    )
    status, refused = await stack.claim(template_id, CLAIMERS + 1)
    assert (status, refused["error"]) == (410, "claim_ended")
    ended = await stack.admin(f"{TEMPLATES}/{template_id}")
    assert (ended["state"], ended["quantity"]) == ("ended", 40)
    page.wait(
        "the end in the audit log", lambda: audit_actions(page)[:1] == ["template.end"] or None
    )
    assert audit_actions(page) == [
        "template.end",
        "template.quantity",
        "template.edit",
        "template.create",
    ]
    assert f"merchant:{stack.merchant_id}" in page.find("#audit-table tbody tr").text
    assert not page.all('[data-action="end"]')


async def test_a_viewer_sees_coupons_without_change_buttons_and_is_refused_a_change(
    stack: Stack, page: Page
) -> None:
    made = await stack.admin_change(
        "POST", TEMPLATES, template_body("Look only", now() + timedelta(hours=1)), 201
    )
    await stack.admin_change(
        "POST", RULES, {"name": "Back after any", "trigger": "any", "template_id": made["id"]}, 201
    )
    log_in(page, VIEWER, route="#/coupons", ready="#coupons-table")
    page.find(f'#coupons-table [data-coupon-id="{made["id"]}"]')
    assert not page.all("#new-coupon")

    page.open(f"#/coupons/{made['id']}")
    assert page.find("[data-terms]").text == "满 100 减 20"
    assert (
        page.find("[data-read-only]").text == "Your role may look at this template, not change it."
    )
    page.wait("the figures", lambda: page.figure("remaining") == str(QUANTITY) or None)
    assert not page.all("[data-action]")

    page.open("#/coupons/rules")
    page.find("#rules-table [data-rule-id]")
    assert not page.all("#rule-form") and not page.all("#rules-table [data-action]")

    # The form is reachable by its address; the API refuses the change, said plainly.
    fill_template(page, "Not mine", now() + timedelta(hours=1), threshold="100")
    page.click("#save-coupon")
    page.wait(
        "the refusal",
        lambda: "Your role may not do this." in page.find("#coupon-form").text or None,
    )
    assert (await stack.admin(TEMPLATES))["total"] == 1


async def test_a_merchant_creates_a_grant_rule_and_deactivates_it(stack: Stack, page: Page) -> None:
    granted = await stack.admin_change(
        "POST",
        TEMPLATES,
        {
            "name": "¥5 back",
            "kind": "no_threshold",
            "amount_off_cents": 500,
            "validity": "relative",
            "valid_days": 30,
            "quantity": 1000,
            "claimable": False,
        },
        201,
    )
    log_in(page, route="#/coupons/rules", ready="#rules-table")
    assert page.find("#rules-table").text.count("\n") == 0  # the header only
    page.fill("#f-name", "¥5 back after the tea sale")
    Select(page.find("#f-trigger")).select_by_value("activity")
    page.fill("#f-sale_id", "42")
    template = Select(page.find("#f-template_id"))
    assert [o.get_attribute("value") for o in template.options] == [str(granted["id"])]
    assert "无门槛减 5" in template.first_selected_option.text
    page.click("#save-rule")
    row = page.find("#rules-table [data-rule-id]")
    rule_id = int(str(row.get_attribute("data-rule-id")))
    assert row.get_attribute("data-active") == "true"
    assert "paid order of flash sale #42" in row.text
    rule = await stack.admin(f"{RULES}/{rule_id}")
    assert {k: rule[k] for k in ("name", "trigger", "sale_id", "template_id", "active")} == {
        "name": "¥5 back after the tea sale",
        "trigger": "activity",
        "sale_id": 42,
        "template_id": granted["id"],
        "active": True,
    }

    page.click(f'#rules-table [data-rule-id="{rule_id}"] [data-action="deactivate"]')
    page.find(f'#rules-table [data-rule-id="{rule_id}"][data-active="false"]')
    assert f"Rule #{rule_id} deactivated." in page.find("[data-status]").text
    assert (await stack.admin(f"{RULES}/{rule_id}"))["active"] is False
    trail = (await stack.admin(f"{RULES}/{rule_id}/audit"))["entries"]
    assert [(e["action"], e["before"], e["after"]) for e in trail[:1]] == [
        ("rule.edit", {"active": True}, {"active": False})
    ]
    page.screenshot(SCREENSHOTS / "console-coupon-rules.png")
