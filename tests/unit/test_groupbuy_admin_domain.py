"""The group-buy admin rules without I/O: states, views, edits, stock, script refusals."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.common.errors import DomainError, ValidationError
from services.common.sales import SaleState
from services.groupbuy.domain import (
    AdminResult,
    Campaign,
    GroupCounts,
    Outcome,
    admin_refusal,
    admin_state,
    admin_view,
    campaign_view,
    editable_values,
    figures_view,
    gate_closed,
    gate_ends_at,
    parse_campaign_edit,
    parse_stock_total,
    refusal,
    require_not_closed,
    require_warm,
)

NOW = datetime(2030, 3, 17, 18, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def campaign(**overrides: Any) -> Campaign:
    values: dict[str, Any] = {
        "id": 7,
        "sku": "sku-1",
        "title": "Tea",
        "group_price_cents": 4900,
        "single_price_cents": 9900,
        "group_size": 3,
        "stock": 30,
        "starts_at": NOW + HOUR,
        "ends_at": NOW + 2 * HOUR,
        "group_window_seconds": 600,
        "per_user_limit": 1,
        "virtual_completion": False,
        "min_real_members": 3,
        "payment_timeout_seconds": 900,
        "created_at": NOW - HOUR,
        "warmed_at": NOW - HOUR,
    }
    values.update(overrides)
    return Campaign(**values)


def test_a_campaign_is_upcoming_then_live_then_ended() -> None:
    c = campaign()
    assert admin_state(c, NOW) is SaleState.UPCOMING
    assert admin_state(c, NOW + HOUR) is SaleState.LIVE
    assert admin_state(c, NOW + 2 * HOUR) is SaleState.ENDED


def test_ending_early_and_cancelling_override_the_window() -> None:
    assert admin_state(campaign(ended_early_at=NOW), NOW + HOUR) is SaleState.ENDED
    assert admin_state(campaign(cancelled_at=NOW), NOW) is SaleState.CANCELLED
    both = campaign(ended_early_at=NOW, cancelled_at=NOW + HOUR)
    assert admin_state(both, NOW + 3 * HOUR) is SaleState.CANCELLED


def test_the_admin_view_is_the_shoppers_view_plus_the_merchants_fields() -> None:
    c = campaign(cancelled_at=NOW, warmed_at=None)
    view = admin_view(c, 12, NOW)
    assert view == {
        **campaign_view(c, 12, NOW),
        "state": "cancelled",
        "ended_early": False,
        "cancelled_at": "2030-03-17T18:00:00.000Z",
        "warm_up": "pending",
        "created_at": "2030-03-17T17:00:00.000Z",
    }
    assert view["status"] == "cancelled"
    ended = campaign(ended_early_at=NOW + HOUR)
    assert campaign_view(ended, 30, NOW + HOUR)["status"] == "ended"
    assert admin_view(ended, 30, NOW + HOUR)["ended_early"] is True


def test_the_gate_is_closed_and_ends_where_the_merchant_stopped_it() -> None:
    assert (gate_closed(campaign()), gate_ends_at(campaign())) == ("", NOW + 2 * HOUR)
    ended = campaign(ended_early_at=NOW + HOUR)
    assert (gate_closed(ended), gate_ends_at(ended)) == ("ended", NOW + HOUR)
    cancelled = campaign(cancelled_at=NOW)
    assert (gate_closed(cancelled), gate_ends_at(cancelled)) == ("cancelled", NOW + 2 * HOUR)


def test_an_edit_keeps_what_it_does_not_name_and_validates_the_whole_campaign() -> None:
    c = campaign()
    edited = parse_campaign_edit(c, {"title": "Green tea", "stock": 12}, NOW)
    assert (edited.title, edited.stock, edited.sku, edited.group_size) == (
        "Green tea",
        12,
        "sku-1",
        3,
    )
    assert editable_values(edited) == {**editable_values(c), "title": "Green tea", "stock": 12}
    virtual = campaign(virtual_completion=True, min_real_members=2)
    assert parse_campaign_edit(virtual, {"per_user_limit": 3}, NOW).min_real_members == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sku": "x"}, "sku"),
        ({"group_size": 4}, "group_size"),
        ({"virtual_completion": True}, "virtual_completion"),
        ({"min_real_members": 1}, "min_real_members"),
        ({"colour": "red"}, "colour"),
        ({"group_price_cents": 9900}, "group_price_cents"),
        ({"single_price_cents": 100}, "group_price_cents"),
        ({"ends_at": "2030-03-17T18:30:00Z"}, "ends_at"),
        ({"starts_at": "2030-03-17T21:00:00Z"}, "ends_at"),
        ({"stock": 2}, "stock"),
        ({"title": "  "}, "title"),
    ],
)
def test_an_edit_is_refused_naming_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_campaign_edit(campaign(), body, NOW)
    assert err.value.field == field


def test_the_stock_total_is_at_least_one_group() -> None:
    assert parse_stock_total({"stock": 3}, campaign()) == 3
    for body, field in [({"stock": 2}, "stock"), ({}, "stock"), ({"stock": 9, "x": 1}, "x")]:
        with pytest.raises(ValidationError) as err:
            parse_stock_total(body, campaign())
        assert err.value.field == field


def codes(error: DomainError) -> tuple[int, str, dict[str, Any]]:
    return error.status, error.code, error.extra


def test_script_refusals_have_their_admin_codes() -> None:
    assert codes(admin_refusal(AdminResult.NOT_FOUND)) == (409, "warm_up_pending", {})
    assert codes(admin_refusal(AdminResult.STARTED)) == (409, "already_started", {})
    assert codes(admin_refusal(AdminResult.BELOW_RESERVED, 6)) == (
        409,
        "below_reserved",
        {"reserved_units": 6},
    )
    for result in (AdminResult.ENDED, AdminResult.CANCELLED):
        assert codes(admin_refusal(result)) == (409, "sale_closed", {})
    for result in (AdminResult.NOT_STARTED, AdminResult.ENDED, AdminResult.CANCELLED):
        assert codes(admin_refusal(result, ending=True)) == (409, "not_live", {})
    with pytest.raises(ValueError):
        admin_refusal(AdminResult.OK)
    assert codes(refusal(Outcome.CANCELLED)) == (410, "sale_cancelled", {})


def test_changes_need_an_open_and_warm_campaign() -> None:
    require_not_closed(campaign(), NOW + HOUR)
    for closed in (campaign(cancelled_at=NOW), campaign(ended_early_at=NOW)):
        with pytest.raises(DomainError) as err:
            require_not_closed(closed, NOW + HOUR)
        assert err.value.code == "sale_closed"
    with pytest.raises(DomainError) as err:
        require_warm(dataclasses.replace(campaign(), warmed_at=None))
    assert err.value.code == "warm_up_pending"


def test_figures_take_the_stock_from_redis_and_say_so_when_redis_has_none() -> None:
    counts = GroupCounts(open=2, completed=1, failed=3, members=9)
    assert figures_view(campaign(stock=30), 36, 20, counts, NOW + HOUR) == {
        "campaign_id": 7,
        "state": "live",
        "stock": 36,
        "remaining": 20,
        "reserved_units": 16,
        "groups_open": 2,
        "groups_completed": 1,
        "groups_failed": 3,
        "members": 9,
        "at": "2030-03-17T19:00:00.000Z",
    }
    missing = figures_view(campaign(stock=30), None, None, counts, NOW)
    assert (missing["stock"], missing["remaining"], missing["reserved_units"]) == (30, None, None)
