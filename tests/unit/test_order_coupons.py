"""A coupon locked to an order (services/order/coupons.py) and what the order's events and
views say of it, checked without PostgreSQL or Kafka."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.common.events import (
    ORDER_CANCELLED,
    ORDER_CREATED,
    ORDER_PAID,
    ORDER_PAYMENT_DUE,
    ORDER_REFUND_REQUESTED,
)
from services.order.coupons import (
    MAX_COUPON_ID,
    CouponLock,
    InvalidCouponLock,
    LockResult,
    coupon_lock_from_event,
    decide_coupon_lock,
)
from services.order.domain import (
    NewOrder,
    Order,
    order_cancelled_event,
    order_created_event,
    order_paid_event,
    order_view,
    payment_due_event,
    refund_requested_event,
)

ORDER_ID = uuid.UUID("0b6f2c1e-4d1a-5c3b-9e8f-7a6b5c4d3e2f")
AT = datetime(2030, 3, 17, 17, 46, 40, tzinfo=UTC)
COUPON = "7-0123456789abcdef0123456789abcdef"


def order(**overrides: Any) -> Order:
    """An unpaid order of 2 x 2500 cents, without a coupon."""
    values: dict[str, Any] = {
        "id": ORDER_ID,
        "reservation_id": "42-r1",
        "activity_id": 42,
        "user_id": "u1",
        "sku": "tea",
        "quantity": 2,
        "unit_price_cents": 2500,
        "amount_cents": 5000,
        "state": "pending_payment",
        "cancel_reason": None,
        "reserved_at": AT,
        "pay_before": AT + timedelta(minutes=15),
        "created_at": AT,
    }
    values.update(overrides)
    return Order(**values)


def discounted(**overrides: Any) -> Order:
    """The same order once COUPON took 1000 off."""
    return order(coupon_id=COUPON, discount_cents=1000, amount_cents=4000, **overrides)


def locked(**overrides: Any) -> dict[str, Any]:
    """The data of coupon.locked as the coupon service publishes it (docs/coupons.md)."""
    data: dict[str, Any] = {
        "coupon_id": COUPON,
        "template_id": 7,
        "user_id": "u1",
        "order_id": str(ORDER_ID),
        "amount_cents": 5000,
        "discount_cents": 1000,
        "amount_due_cents": 4000,
    }
    data.update(overrides)
    return data


def lock(**overrides: Any) -> CouponLock:
    return coupon_lock_from_event(locked(**overrides))


# --- coupon_lock_from_event -------------------------------------------------------------


def test_a_locked_event_becomes_an_exact_lock() -> None:
    assert coupon_lock_from_event(locked()) == CouponLock(
        coupon_id=COUPON,
        user_id="u1",
        order_id=ORDER_ID,
        amount_cents=5000,
        discount_cents=1000,
        amount_due_cents=4000,
    )


def test_fields_the_order_service_does_not_use_are_not_required() -> None:
    data = locked()
    del data["template_id"]
    assert coupon_lock_from_event({**data, "extra": [1]}).coupon_id == COUPON


@pytest.mark.parametrize(
    "name",
    ["coupon_id", "user_id", "order_id", "amount_cents", "discount_cents", "amount_due_cents"],
)
def test_a_lock_missing_a_field_is_invalid(name: str) -> None:
    data = locked()
    del data[name]
    with pytest.raises(InvalidCouponLock, match=name):
        coupon_lock_from_event(data)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("coupon_id", ""),
        ("coupon_id", "x" * (MAX_COUPON_ID + 1)),
        ("coupon_id", "7-a\x00b"),
        ("coupon_id", 7),
        ("user_id", ""),
        ("user_id", "u" * 129),
        ("user_id", None),
        ("order_id", "not-a-uuid"),
        ("order_id", 12),
        ("amount_cents", -1),
        ("amount_cents", 2**63),
        ("amount_cents", "5000"),
        ("amount_cents", 5000.0),
        ("discount_cents", True),
        ("amount_due_cents", None),
    ],
)
def test_a_lock_field_of_the_wrong_type_or_out_of_range_is_invalid(name: str, value: Any) -> None:
    with pytest.raises(InvalidCouponLock, match=name):
        coupon_lock_from_event(locked(**{name: value}))


def test_the_longest_coupon_id_is_valid() -> None:
    assert lock(coupon_id="c" * MAX_COUPON_ID).coupon_id == "c" * MAX_COUPON_ID


# --- decide_coupon_lock -----------------------------------------------------------------


def test_a_lock_of_an_unpaid_order_without_a_coupon_that_fits_it_applies() -> None:
    assert decide_coupon_lock(order(), lock()) is LockResult.APPLIED


def test_a_lock_may_leave_exactly_one_cent_to_pay() -> None:
    assert (
        decide_coupon_lock(order(), lock(discount_cents=4999, amount_due_cents=1))
        is LockResult.APPLIED
    )


def test_an_open_group_order_can_take_a_coupon() -> None:
    group_order = order(source="groupbuy", group_id="g1", group_state="open", quantity=1)
    assert (
        decide_coupon_lock(group_order, lock(amount_cents=2500, amount_due_cents=1500))
        is LockResult.APPLIED
    )


def test_no_order_is_an_unknown_order() -> None:
    assert decide_coupon_lock(None, lock()) is LockResult.UNKNOWN_ORDER


@pytest.mark.parametrize("state", ["pending_payment", "paid", "cancelled"])
def test_the_same_coupon_again_is_a_duplicate_whatever_became_of_the_order(state: str) -> None:
    assert decide_coupon_lock(discounted(state=state), lock()) is LockResult.DUPLICATE


def test_another_coupon_on_an_order_with_one_is_refused() -> None:
    other = lock(coupon_id="7-ffffffffffffffffffffffffffffffff")
    assert decide_coupon_lock(discounted(), other) is LockResult.ORDER_HAS_COUPON


@pytest.mark.parametrize("state", ["paid", "cancelled"])
def test_a_lock_arriving_after_the_order_was_paid_or_cancelled_is_late(state: str) -> None:
    assert decide_coupon_lock(order(state=state), lock()) is LockResult.ORDER_NOT_PENDING


@pytest.mark.parametrize(
    "overrides",
    [
        {"user_id": "u2"},  # someone else's order
        {"amount_cents": 6000, "amount_due_cents": 5000},  # another price than the order's
        {"amount_due_cents": 3999},  # its own figures disagree
        {"discount_cents": 0, "amount_due_cents": 5000},  # takes nothing off
        {"discount_cents": 5000, "amount_due_cents": 0},  # leaves nothing to pay
    ],
)
def test_a_lock_that_does_not_describe_its_order_is_a_mismatch(overrides: dict[str, Any]) -> None:
    assert decide_coupon_lock(order(), lock(**overrides)) is LockResult.MISMATCH


def test_the_same_coupon_with_another_discount_is_a_mismatch_not_a_duplicate() -> None:
    again = lock(discount_cents=500, amount_due_cents=4500)
    assert decide_coupon_lock(discounted(), again) is LockResult.MISMATCH


def test_someone_elses_lock_is_a_mismatch_even_when_the_coupon_matches() -> None:
    assert decide_coupon_lock(discounted(), lock(user_id="u2")) is LockResult.MISMATCH


# --- the order's events and views -------------------------------------------------------

COUPON_FIELDS = {"coupon_id": COUPON, "discount_cents": 1000}


@pytest.mark.parametrize(
    ("kind", "event"),
    [
        (ORDER_PAID, lambda o: order_paid_event(o, "txn-1", AT)),
        (
            ORDER_CANCELLED,
            lambda o: order_cancelled_event(
                dataclasses.replace(o, cancel_reason="user", cancelled_at=AT)
            ),
        ),
        (ORDER_PAYMENT_DUE, payment_due_event),
        (
            ORDER_REFUND_REQUESTED,
            lambda o: refund_requested_event(o, "txn-2", o.amount_cents, "already_paid"),
        ),
    ],
)
def test_events_of_an_order_with_a_coupon_name_it_and_carry_the_amount_due(
    kind: str, event: Any
) -> None:
    with_coupon = event(discounted()).data
    assert with_coupon["amount_cents"] == 4000
    assert {k: with_coupon[k] for k in COUPON_FIELDS} == COUPON_FIELDS
    without = event(order()).data
    assert without["amount_cents"] == 5000
    # Orders without a coupon keep the events' shape they always had.
    assert not set(COUPON_FIELDS) & set(without)


def test_order_created_never_carries_a_coupon() -> None:
    new = NewOrder(
        id=ORDER_ID,
        reservation_id="42-r1",
        activity_id=42,
        user_id="u1",
        sku="tea",
        quantity=2,
        unit_price_cents=2500,
        reserved_at=AT,
        pay_before=AT + timedelta(minutes=15),
    )
    event = order_created_event(new)
    assert event.type == ORDER_CREATED and "coupon_id" not in event.data


def test_the_order_view_shows_the_discount_and_the_coupon_or_none() -> None:
    view = order_view(discounted())
    assert (view["amount_cents"], view["discount_cents"], view["coupon_id"]) == (4000, 1000, COUPON)
    view = order_view(order())
    assert (view["amount_cents"], view["discount_cents"], view["coupon_id"]) == (5000, 0, None)
