"""What a coupon takes off an order, and whether it may: pure rules (docs/coupons.md).

Shared by the redemption path (which decides) and the admin API (which shows a template's
terms); no I/O, so tests call them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from services.common.errors import DomainError

# An order is never discounted below this: a payment of 0 is no payment.
MIN_AMOUNT_DUE_CENTS = 1


class Kind(StrEnum):
    AMOUNT_OFF = "amount_off"  # 满减
    PERCENT_OFF = "percent_off"  # 折扣
    NO_THRESHOLD = "no_threshold"  # 无门槛


class Scope(StrEnum):
    ANY = "any"
    ACTIVITIES = "activities"
    CAMPAIGNS = "campaigns"
    SKUS = "skus"


# Order sources (the order service's `source`) and the scope that names their sales.
SECKILL_SOURCE = "seckill"
GROUPBUY_SOURCE = "groupbuy"
_SCOPE_OF_SOURCE = {SECKILL_SOURCE: Scope.ACTIVITIES, GROUPBUY_SOURCE: Scope.CAMPAIGNS}


@dataclass(frozen=True, slots=True)
class Terms:
    """A template's terms: what its coupons take off, and from which orders."""

    kind: Kind
    threshold_cents: int
    amount_off_cents: int | None
    percent_off: int | None
    max_discount_cents: int | None
    scope: Scope
    scope_ids: tuple[str, ...]
    usable_on_flash_sales: bool


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """What the coupon service knows of an order (its read model of the orders topic)."""

    source: str  # seckill | groupbuy
    sale_id: int  # the activity or campaign
    sku: str
    amount_cents: int  # before any coupon


def discount_cents(terms: Terms, amount_cents: int) -> int:
    """What the coupon takes off an order of amount_cents (already known to qualify),
    never leaving less than MIN_AMOUNT_DUE_CENTS to pay."""
    if terms.kind is Kind.PERCENT_OFF:
        assert terms.percent_off is not None and terms.max_discount_cents is not None
        # Rounded down: the shop never gives away more than the percentage says.
        wanted = min(amount_cents * terms.percent_off // 100, terms.max_discount_cents)
    else:
        assert terms.amount_off_cents is not None
        wanted = terms.amount_off_cents
    return max(0, min(wanted, amount_cents - MIN_AMOUNT_DUE_CENTS))


def in_scope(terms: Terms, order: OrderFacts) -> bool:
    if terms.scope is Scope.ANY:
        return True
    if terms.scope is Scope.SKUS:
        return order.sku in terms.scope_ids
    return (
        _SCOPE_OF_SOURCE.get(order.source) is terms.scope and str(order.sale_id) in terms.scope_ids
    )


def applicable(
    terms: Terms,
    order: OrderFacts,
    valid_from: datetime,
    valid_until: datetime,
    now: datetime,
) -> int:
    """The discount a coupon with these terms and validity gives this order now; raises
    the 409 refusal of docs/coupons.md ("Errors") when it may not be used on it."""
    if now < valid_from:
        raise DomainError(409, "coupon_not_valid_yet", "the coupon is not valid yet")
    if now >= valid_until:
        raise DomainError(409, "coupon_expired", "the coupon has expired")
    if not in_scope(terms, order):
        raise DomainError(409, "out_of_scope", "the coupon does not apply to this order")
    if order.source == SECKILL_SOURCE and not terms.usable_on_flash_sales:
        raise DomainError(
            409, "flash_sale_price", "the coupon cannot be used on a flash-sale price"
        )
    if order.amount_cents < terms.threshold_cents:
        raise DomainError(
            409,
            "below_threshold",
            f"the order must reach {terms.threshold_cents} cents for this coupon",
        )
    discount = discount_cents(terms, order.amount_cents)
    if discount <= 0:
        # A 1-cent order: nothing can come off it.
        raise DomainError(409, "below_threshold", "nothing can come off this order")
    return discount
