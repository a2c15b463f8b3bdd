"""The coupon lifecycle's pure rules: order events, rule matching, coupon events, the
redemption request, the rules' admin input."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.common.errors import DomainError, NotFound, ValidationError
from services.common.events import (
    COUPON_EXPIRING,
    COUPON_LOCKED,
    COUPON_RELEASED,
    ORDER_CANCELLED,
    ORDER_CREATED,
    ORDER_PAID,
    ORDER_PAYMENT_DUE,
    event_id_for,
)
from services.coupon.lifecycle_domain import (
    CouponState,
    InvalidOrderEvent,
    Lock,
    OrderState,
    Trigger,
    coupon_expiring_event,
    coupon_locked_event,
    coupon_released_event,
    parse_order_event,
    parse_redemption,
    released_state,
    rule_matches,
    terms_of,
)
from services.coupon.rules_domain import parse_new_rule, parse_rule_edit, parse_rule_filter
from services.coupon.terms import Kind, Scope
from tests.coupon_helpers import order_event

ORDER = uuid.UUID("6b1f8a3e-2c4d-4e5f-8a9b-0c1d2e3f4a5b")


def test_a_flash_sale_order_created_event_is_read_with_its_source_defaulted() -> None:
    event = order_event(ORDER_CREATED, ORDER, "u1", amount_cents=990, sale_id=5, sku="tea")
    order = parse_order_event(event.type, event.data)
    assert order is not None
    assert (order.state, order.order_id, order.user_id) == (OrderState.PENDING_PAYMENT, ORDER, "u1")
    assert (order.source, order.sale_id, order.sku, order.amount_cents) == (
        "seckill",
        5,
        "tea",
        990,
    )
    assert order.pay_before is not None and order.coupon_id is None


def test_an_order_paid_with_a_coupon_is_priced_before_the_discount() -> None:
    event = order_event(
        ORDER_PAID, ORDER, "u1", amount_cents=9_000, coupon_id="3-" + "a" * 32, discount_cents=1_000
    )
    order = parse_order_event(event.type, event.data)
    assert order is not None
    assert (order.state, order.amount_cents, order.coupon_id, order.discount_cents) == (
        OrderState.PAID,
        10_000,
        "3-" + "a" * 32,
        1_000,
    )


def test_group_orders_keep_their_source_and_other_sources_and_types_are_skipped() -> None:
    event = order_event(ORDER_CANCELLED, ORDER, "u1", source="groupbuy", sale_id=8)
    order = parse_order_event(event.type, event.data)
    assert order is not None and (order.source, order.sale_id) == ("groupbuy", 8)
    assert parse_order_event(ORDER_CREATED, {**event.data, "source": "bargain"}) is None
    assert parse_order_event(ORDER_PAYMENT_DUE, event.data) is None


@pytest.mark.parametrize(
    "change",
    [
        {"order_id": "nope"},
        {"order_id": None},
        {"user_id": ""},
        {"user_id": 7},
        {"activity_id": 0},
        {"activity_id": True},
        {"amount_cents": -1},
        {"amount_cents": "100"},
        {"sku": ""},
        {"coupon_id": "3-" + "a" * 32},
        {"coupon_id": "3-" + "a" * 32, "discount_cents": 0},
        {"pay_before": "tomorrow"},
        {"pay_before": "2030-01-01T00:00:00"},
    ],
)
def test_unreadable_order_events_are_refused(change: dict[str, Any]) -> None:
    data = {**order_event(ORDER_CREATED, ORDER, "u1").data, **change}
    with pytest.raises(InvalidOrderEvent):
        parse_order_event(ORDER_CREATED, data)


def test_rules_match_every_order_or_their_own_sale() -> None:
    flash = parse_order_event(ORDER_PAID, order_event(ORDER_PAID, ORDER, "u", sale_id=4).data)
    group = parse_order_event(
        ORDER_PAID, order_event(ORDER_PAID, ORDER, "u", source="groupbuy", sale_id=4).data
    )
    assert flash is not None and group is not None
    assert rule_matches(Trigger.ANY, None, flash) and rule_matches(Trigger.ANY, None, group)
    assert rule_matches(Trigger.ACTIVITY, 4, flash) and not rule_matches(Trigger.ACTIVITY, 4, group)
    assert rule_matches(Trigger.CAMPAIGN, 4, group) and not rule_matches(Trigger.CAMPAIGN, 4, flash)
    assert not rule_matches(Trigger.ACTIVITY, 5, flash)


def test_a_coupon_released_after_its_end_is_expired() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert released_state(now + timedelta(seconds=1), now) is CouponState.AVAILABLE
    assert released_state(now, now) is CouponState.EXPIRED


def test_lock_and_release_events_are_per_coupon_and_order() -> None:
    locked = coupon_locked_event("3-x", 3, "u1", ORDER, 500, 450)
    assert locked.id == event_id_for(COUPON_LOCKED, f"3-x:{ORDER}") and locked.key == "u1"
    assert locked.data["amount_due_cents"] == 50
    released = coupon_released_event("3-x", "u1", ORDER, CouponState.EXPIRED)
    assert released.id == event_id_for(COUPON_RELEASED, f"3-x:{ORDER}")
    assert released.data["state"] == "expired"
    other = coupon_released_event("3-x", "u1", uuid.uuid4(), CouponState.AVAILABLE)
    assert other.id != released.id
    until = datetime(2030, 1, 2, tzinfo=UTC)
    expiring = coupon_expiring_event("3-x", "u1", 3, "满100减10", until)
    assert expiring.id == event_id_for(COUPON_EXPIRING, "3-x")
    assert expiring.data["valid_until"] == "2030-01-02T00:00:00.000Z"


def test_the_amount_due_never_goes_below_one_cent() -> None:
    assert Lock(ORDER, "3-x", 1_000, 999).view()["amount_due_cents"] == 1
    assert Lock(ORDER, "3-x", 1_000, 1_500).view()["amount_due_cents"] == 1


def test_a_redemption_names_one_coupon() -> None:
    coupon = "12-" + "0123456789abcdef" * 2
    assert parse_redemption({"coupon_id": coupon}) == coupon
    for body in ({}, {"coupon_id": 12}, {"coupon_id": ""}, {"coupon_id": coupon, "x": 1}):
        with pytest.raises(ValidationError):
            parse_redemption(body)
    for name in ("12-abc", "0-" + "0" * 32, "x-" + "0" * 32):
        with pytest.raises(NotFound):
            parse_redemption({"coupon_id": name})


def test_a_template_rows_terms() -> None:
    terms = terms_of(
        {
            "kind": "percent_off",
            "threshold_cents": 0,
            "amount_off_cents": None,
            "percent_off": 20,
            "max_discount_cents": 500,
            "scope": "skus",
            "scope_ids": ["a", "b"],
            "usable_on_flash_sales": False,
        }
    )
    assert (terms.kind, terms.scope, terms.scope_ids) == (Kind.PERCENT_OFF, Scope.SKUS, ("a", "b"))


def test_a_new_rule_needs_a_sale_unless_it_is_for_every_order() -> None:
    rule = parse_new_rule(
        {"name": " after tea ", "trigger": "activity", "sale_id": 3, "template_id": 9}
    )
    assert (rule.name, rule.trigger, rule.sale_id, rule.template_id, rule.active) == (
        "after tea",
        Trigger.ACTIVITY,
        3,
        9,
        True,
    )
    every = parse_new_rule({"name": "all", "trigger": "any", "template_id": 9, "active": False})
    assert (every.sale_id, every.active) == (None, False)
    for body, field in [
        ({"name": "x", "trigger": "any", "template_id": 9, "sale_id": 3}, "sale_id"),
        ({"name": "x", "trigger": "campaign", "template_id": 9}, "sale_id"),
        ({"name": "x", "trigger": "every", "template_id": 9}, "trigger"),
        ({"name": "x", "trigger": "any", "template_id": "9"}, "template_id"),
    ]:
        with pytest.raises(ValidationError) as refused:
            parse_new_rule(body)
        assert refused.value.field == field


def test_a_rule_edit_changes_name_or_active_only() -> None:
    assert parse_rule_edit({"active": False}).active is False
    for body in (
        {},
        {"template_id": 3},
        {"active": "no"},
        {"active": None},
        {"name": ""},
        {"name": None},
    ):
        with pytest.raises(DomainError):
            parse_rule_edit(body)
    wanted = parse_rule_filter({"active": "false", "template_id": "4", "limit": "5"})
    assert (wanted.active, wanted.template_id, wanted.page.limit) == (False, 4, 5)
    with pytest.raises(ValidationError):
        parse_rule_filter({"enabled": "true"})
