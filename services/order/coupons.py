"""A coupon locked to an order (coupon.locked, docs/coupons.md "Redemption"): what the
event says, and what it does to the order.

The coupon service decides whether a coupon may discount an order; the order service only
applies that decision to an order still waiting for its payment, so that the payment
callback then asks for the discounted amount. Pure functions and dataclasses: no I/O.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from services.common.validation import MAX_BIGINT, storable
from services.order.domain import MAX_USER_ID, Order, State, parse_order_id

# Coupon ids are "<template id>-<32 hex>"; the bound only keeps junk out of the column.
MAX_COUPON_ID = 100


class InvalidCouponLock(ValueError):
    """A coupon.locked whose data is not what the contract says (dead-lettered)."""


@dataclass(frozen=True, slots=True)
class CouponLock:
    coupon_id: str
    user_id: str
    order_id: uuid.UUID
    amount_cents: int  # the order's amount before the coupon, as the coupon service saw it
    discount_cents: int
    amount_due_cents: int


class LockResult(StrEnum):
    APPLIED = "applied"
    # The same coupon on the same order again (a redelivery): nothing changes.
    DUPLICATE = "duplicate"
    # Paid or cancelled before the lock arrived: the coupon service hears it from
    # order.paid / order.cancelled without this coupon, and releases the coupon.
    ORDER_NOT_PENDING = "order_not_pending"
    ORDER_HAS_COUPON = "order_has_coupon"
    # The lock does not describe this order (another user, another price) or its own
    # figures disagree: never applied, the order keeps its price.
    MISMATCH = "mismatch"
    UNKNOWN_ORDER = "unknown_order"


def _text(data: dict[str, Any], name: str, limit: int) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= limit or not storable(value):
        raise InvalidCouponLock(f"{name} must be a string of 1 to {limit} characters")
    return value


def _cents(data: dict[str, Any], name: str) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_BIGINT:
        raise InvalidCouponLock(f"{name} must be integer cents between 0 and {MAX_BIGINT}")
    return value


def coupon_lock_from_event(data: dict[str, Any]) -> CouponLock:
    """The lock a coupon.locked event announces, or InvalidCouponLock. Only the shape is
    checked here; whether the figures fit the order is decide_coupon_lock's business."""
    raw_order = data.get("order_id")
    order_id = parse_order_id(raw_order) if isinstance(raw_order, str) else None
    if order_id is None:
        raise InvalidCouponLock("order_id must be an order id (UUID)")
    return CouponLock(
        coupon_id=_text(data, "coupon_id", MAX_COUPON_ID),
        user_id=_text(data, "user_id", MAX_USER_ID),
        order_id=order_id,
        amount_cents=_cents(data, "amount_cents"),
        discount_cents=_cents(data, "discount_cents"),
        amount_due_cents=_cents(data, "amount_due_cents"),
    )


def figures_agree(order: Order, lock: CouponLock) -> bool:
    """The lock was computed from this order's price, takes something off, and leaves at
    least a cent to pay (docs/coupons.md: amount due = max(1, amount - discount), with the
    discount the coupon service reports being what it really took off)."""
    price = order.unit_price_cents * order.quantity
    return (
        lock.amount_cents == price
        and lock.discount_cents >= 1
        and lock.amount_due_cents >= 1
        and lock.amount_cents - lock.discount_cents == lock.amount_due_cents
    )


def decide_coupon_lock(order: Order | None, lock: CouponLock) -> LockResult:
    """What a coupon.locked does to its order (None: no such order). Only APPLIED changes
    anything; the checks run in an order where a redelivery of an applied lock is always
    DUPLICATE, whatever happened to the order since (paid, cancelled)."""
    if order is None:
        return LockResult.UNKNOWN_ORDER
    if order.user_id != lock.user_id:
        return LockResult.MISMATCH
    if order.coupon_id == lock.coupon_id:
        same = order.discount_cents == lock.discount_cents
        return LockResult.DUPLICATE if same else LockResult.MISMATCH
    if order.coupon_id is not None:
        return LockResult.ORDER_HAS_COUPON
    if order.state != State.PENDING_PAYMENT:
        return LockResult.ORDER_NOT_PENDING
    if not figures_agree(order, lock):
        return LockResult.MISMATCH
    return LockResult.APPLIED
