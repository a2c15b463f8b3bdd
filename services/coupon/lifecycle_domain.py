"""A coupon's life after it was issued (docs/coupons.md): the orders it can apply to
(read from the orders topic), 下单返券 grants, redemption on a pending order, and the
events of locking, use, release, revocation and expiry.

Pure functions and dataclasses: no I/O, so tests call them directly.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.common.errors import DomainError, NotFound, ValidationError
from services.common.events import (
    COUPON_EXPIRED,
    COUPON_EXPIRING,
    COUPON_LOCKED,
    COUPON_RELEASED,
    COUPON_REVOKED,
    COUPON_USED,
    ORDER_CANCELLED,
    ORDER_CREATED,
    ORDER_PAID,
    Envelope,
    event_id_for,
    rfc3339,
)
from services.common.validation import MAX_BIGINT, owner_of, reject_unknown, storable
from services.coupon.terms import (
    GROUPBUY_SOURCE,
    MIN_AMOUNT_DUE_CENTS,
    SECKILL_SOURCE,
    Kind,
    OrderFacts,
    Scope,
    Terms,
)

# --- the orders topic ---------------------------------------------------------------

ORDER_EVENTS = (ORDER_CREATED, ORDER_PAID, ORDER_CANCELLED)


class OrderState(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    CANCELLED = "cancelled"


_STATE_OF_EVENT = {
    ORDER_CREATED: OrderState.PENDING_PAYMENT,
    ORDER_PAID: OrderState.PAID,
    ORDER_CANCELLED: OrderState.CANCELLED,
}
# The sources whose orders coupons know (coupon.orders.source); another source's events
# are skipped until coupons support it.
SOURCES = (SECKILL_SOURCE, GROUPBUY_SOURCE)
MAX_USER_ID = 128


class InvalidOrderEvent(ValueError):
    """An order event whose data cannot be read (dead-lettered, never retried)."""


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """What coupons need of order.created, order.paid and order.cancelled."""

    state: OrderState
    order_id: uuid.UUID
    user_id: str
    source: str
    sale_id: int
    sku: str
    # Before any coupon: an event of an order with a coupon carries the amount due and
    # the discount (docs/coupons.md, "Events"), their sum is the price.
    amount_cents: int
    pay_before: datetime | None
    coupon_id: str | None
    discount_cents: int | None

    @property
    def facts(self) -> OrderFacts:
        return OrderFacts(self.source, self.sale_id, self.sku, self.amount_cents)


def _get(data: Mapping[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise InvalidOrderEvent(f"{name} must be {kind.__name__}, got {value!r}")
    return value


def _optional(data: Mapping[str, Any], name: str, kind: type) -> Any:
    return None if data.get(name) is None else _get(data, name, kind)


def _moment(raw: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidOrderEvent(f"{name} is not a timestamp: {raw!r}") from None
    if moment.tzinfo is None:
        raise InvalidOrderEvent(f"{name} has no time zone")
    return moment


def parse_order_event(kind: str, data: Mapping[str, Any]) -> OrderEvent | None:
    """The order an order.created/paid/cancelled event speaks of; None for another type
    or an order of a source coupons do not know; InvalidOrderEvent when unreadable."""
    state = _STATE_OF_EVENT.get(kind)
    if state is None:
        return None
    # Flash-sale orders' events keep their original shape, without `source`.
    source = data.get("source", SECKILL_SOURCE)
    if source not in SOURCES:
        return None
    try:
        order_id = uuid.UUID(_get(data, "order_id", str))
    except ValueError:
        raise InvalidOrderEvent(f"order_id is not a UUID: {data.get('order_id')!r}") from None
    user_id = _get(data, "user_id", str)
    sku = _get(data, "sku", str)
    sale_id = _get(data, "activity_id", int)
    amount = _get(data, "amount_cents", int)
    coupon_id = _optional(data, "coupon_id", str)
    discount = _optional(data, "discount_cents", int)
    raw_pay_before = _optional(data, "pay_before", str)
    if not 0 < len(user_id) <= MAX_USER_ID or not sku or not storable(user_id + sku):
        raise InvalidOrderEvent("user_id and sku must be non-empty, storable text")
    if not 0 < sale_id <= MAX_BIGINT:
        raise InvalidOrderEvent("activity_id must be a positive bigint")
    if (coupon_id is None) != (discount is None):
        raise InvalidOrderEvent("coupon_id and discount_cents come together")
    if discount is not None and not 0 < discount <= MAX_BIGINT:
        raise InvalidOrderEvent("discount_cents must be positive")
    price = amount + (discount or 0)
    if not 0 <= amount <= MAX_BIGINT or price > MAX_BIGINT:
        raise InvalidOrderEvent("amount_cents must be a non-negative bigint")
    return OrderEvent(
        state=state,
        order_id=order_id,
        user_id=user_id,
        source=source,
        sale_id=sale_id,
        sku=sku,
        amount_cents=price,
        pay_before=None if raw_pay_before is None else _moment(raw_pay_before, "pay_before"),
        coupon_id=coupon_id,
        discount_cents=discount,
    )


# --- 下单返券 -------------------------------------------------------------------------


class Trigger(StrEnum):
    ANY = "any"  # every paid order
    ACTIVITY = "activity"  # paid orders of one flash sale (sale_id: the activity)
    CAMPAIGN = "campaign"  # paid orders of one group-buy campaign


_TRIGGER_OF_SOURCE = {SECKILL_SOURCE: Trigger.ACTIVITY, GROUPBUY_SOURCE: Trigger.CAMPAIGN}


def trigger_of(source: str) -> Trigger:
    """The trigger naming the sales of an order's source (rules match on it and the
    sale id, or are `any`)."""
    return _TRIGGER_OF_SOURCE[source]


def rule_matches(trigger: str, sale_id: int | None, order: OrderEvent) -> bool:
    """Whether a rule's trigger covers an order (the SQL of the grants repository says
    the same for the active rules)."""
    if trigger == Trigger.ANY:
        return True
    return trigger == trigger_of(order.source) and sale_id == order.sale_id


class GrantOutcome(StrEnum):
    GRANTED = "granted"
    # The template had run out, was ended, or its fixed validity was over: recorded for
    # the (order, rule), never retried.
    EXHAUSTED = "exhausted"
    # The template is not in Redis (not warmed yet, or Redis lost it): nothing decided.
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class GrantDecision:
    """grant.lua's answer. duplicate: the pair was decided before (a redelivery); then
    the validity is not known here (the coupon.granted event of the first decision
    carries it to the record)."""

    outcome: GrantOutcome
    coupon_id: str | None
    from_ms: int | None = None
    until_ms: int | None = None
    at_ms: int | None = None
    duplicate: bool = False


# --- coupon events from the PostgreSQL outbox (docs/coupons.md, "Events") -----------


class CouponState(StrEnum):
    AVAILABLE = "available"
    LOCKED = "locked"
    USED = "used"
    EXPIRED = "expired"
    REVOKED = "revoked"


def released_state(valid_until: datetime, now: datetime) -> CouponState:
    """Where a coupon released from its order goes: back to its holder, or expired if its
    validity ended while it was locked (the sweeper leaves locked coupons alone)."""
    return CouponState.AVAILABLE if now < valid_until else CouponState.EXPIRED


def _event(kind: str, natural_key: str, user_id: str, data: dict[str, Any]) -> Envelope:
    # Key = user id: one holder's coupon events keep their order.
    return Envelope(id=event_id_for(kind, natural_key), type=kind, key=user_id, data=data)


def coupon_locked_event(
    coupon_id: str,
    template_id: int,
    user_id: str,
    order_id: uuid.UUID,
    amount_cents: int,
    discount_cents: int,
) -> Envelope:
    return _event(
        COUPON_LOCKED,
        f"{coupon_id}:{order_id}",
        user_id,
        {
            "coupon_id": coupon_id,
            "template_id": template_id,
            "user_id": user_id,
            "order_id": str(order_id),
            "amount_cents": amount_cents,
            "discount_cents": discount_cents,
            "amount_due_cents": amount_due(amount_cents, discount_cents),
        },
    )


def coupon_used_event(
    coupon_id: str, user_id: str, order_id: uuid.UUID, discount_cents: int
) -> Envelope:
    return _event(
        COUPON_USED,
        coupon_id,
        user_id,
        {
            "coupon_id": coupon_id,
            "user_id": user_id,
            "order_id": str(order_id),
            "discount_cents": discount_cents,
        },
    )


def coupon_released_event(
    coupon_id: str, user_id: str, order_id: uuid.UUID, state: CouponState
) -> Envelope:
    # Per (coupon, order): a coupon released from one order may be locked to another.
    return _event(
        COUPON_RELEASED,
        f"{coupon_id}:{order_id}",
        user_id,
        {"coupon_id": coupon_id, "user_id": user_id, "order_id": str(order_id), "state": state},
    )


def coupon_revoked_event(coupon_id: str, user_id: str, order_id: uuid.UUID) -> Envelope:
    return _event(
        COUPON_REVOKED,
        coupon_id,
        user_id,
        {"coupon_id": coupon_id, "user_id": user_id, "order_id": str(order_id)},
    )


def coupon_expired_event(
    coupon_id: str, user_id: str, template_id: int, valid_until: datetime
) -> Envelope:
    return _event(
        COUPON_EXPIRED,
        coupon_id,
        user_id,
        {
            "coupon_id": coupon_id,
            "user_id": user_id,
            "template_id": template_id,
            "valid_until": rfc3339(valid_until),
        },
    )


def coupon_expiring_event(
    coupon_id: str, user_id: str, template_id: int, name: str, valid_until: datetime
) -> Envelope:
    return _event(
        COUPON_EXPIRING,
        coupon_id,
        user_id,
        {
            "coupon_id": coupon_id,
            "user_id": user_id,
            "template_id": template_id,
            "name": name,
            "valid_until": rfc3339(valid_until),
        },
    )


# --- redemption: POST /api/orders/{id}/coupon ----------------------------------------

MAX_COUPON_ID = 64


def amount_due(amount_cents: int, discount_cents: int) -> int:
    return max(MIN_AMOUNT_DUE_CENTS, amount_cents - discount_cents)


def parse_order_path_id(raw: str) -> uuid.UUID:
    """An order id in a path; anything else names no order (404)."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound("order") from None


def parse_redemption(body: Mapping[str, Any]) -> str:
    """{"coupon_id": "<template id>-<32 hex>"}: the coupon to lock. A string that is no
    coupon id names no coupon (404, like someone else's: ids do not leak)."""
    reject_unknown(dict(body), {"coupon_id"})
    coupon_id = body.get("coupon_id")
    if coupon_id is None:
        raise ValidationError("coupon_id", "is required")
    if not isinstance(coupon_id, str) or not coupon_id:
        raise ValidationError("coupon_id", "must be a non-empty string")
    if len(coupon_id) > MAX_COUPON_ID or not storable(coupon_id):
        raise ValidationError(
            "coupon_id", f"must be at most {MAX_COUPON_ID} characters, no NUL characters"
        )
    if owner_of(coupon_id) is None:
        raise NotFound("coupon")
    return coupon_id


def terms_of(template: Mapping[str, Any]) -> Terms:
    """A template row's terms (the columns of coupon.templates)."""
    return Terms(
        kind=Kind(template["kind"]),
        threshold_cents=template["threshold_cents"],
        amount_off_cents=template["amount_off_cents"],
        percent_off=template["percent_off"],
        max_discount_cents=template["max_discount_cents"],
        scope=Scope(template["scope"]),
        scope_ids=tuple(template["scope_ids"]),
        usable_on_flash_sales=template["usable_on_flash_sales"],
    )


@dataclass(frozen=True, slots=True)
class Lock:
    """A coupon locked to an order: the redemption's answer."""

    order_id: uuid.UUID
    coupon_id: str
    amount_cents: int
    discount_cents: int

    def view(self) -> dict[str, Any]:
        return {
            "order_id": str(self.order_id),
            "coupon_id": self.coupon_id,
            "amount_cents": self.amount_cents,
            "discount_cents": self.discount_cents,
            "amount_due_cents": amount_due(self.amount_cents, self.discount_cents),
        }


def order_not_pending() -> DomainError:
    return DomainError(409, "order_not_pending", "the order is paid or cancelled")


def order_has_coupon() -> DomainError:
    return DomainError(409, "order_has_coupon", "the order already has a coupon")


def coupon_not_available(state: str) -> DomainError:
    return DomainError(409, "coupon_not_available", f"the coupon is {state}")
