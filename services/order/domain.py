"""Order rules: an order from a reservation event, the events it emits, its views.

Pure functions and dataclasses: no I/O, so tests call them directly.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.common.errors import DomainError, ValidationError
from services.common.events import (
    ORDER_CANCELLED,
    ORDER_CREATED,
    ORDER_PAID,
    ORDER_PAYMENT_DUE,
    ORDER_REFUND_REQUESTED,
    Envelope,
    event_id_for,
    order_id_for,
    rfc3339,
)
from services.common.paging import (
    Page,
    bigint_param,
    choice_param,
    list_limit,
    parse_page,
    text_param,
    unknown_params,
)

MAX_LIST_LIMIT = 100
MAX_INT = 2**31 - 1
MAX_BIGINT = 2**63 - 1


class State(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    CANCELLED = "cancelled"


class CancelReason(StrEnum):
    TIMEOUT = "timeout"
    USER = "user"
    GROUP_FAILED = "group_failed"
    # The merchant cancelled the flash sale while the order was unpaid (seckill.cancelled).
    SALE_CANCELLED = "sale_cancelled"


class InvalidReservation(ValueError):
    """A seckill.reserved event whose data cannot become an order (dead-lettered)."""


@dataclass(frozen=True, slots=True)
class NewOrder:
    id: uuid.UUID
    reservation_id: str
    activity_id: int
    user_id: str
    sku: str
    quantity: int
    unit_price_cents: int
    reserved_at: datetime
    pay_before: datetime
    source: str = "seckill"
    group_id: str | None = None
    group_state: str | None = None

    @property
    def amount_cents(self) -> int:
        return self.unit_price_cents * self.quantity


@dataclass(frozen=True, slots=True)
class Order:
    id: uuid.UUID
    reservation_id: str
    activity_id: int
    user_id: str
    sku: str
    quantity: int
    unit_price_cents: int
    amount_cents: int
    state: str
    cancel_reason: str | None
    reserved_at: datetime
    pay_before: datetime
    created_at: datetime
    paid_at: datetime | None = None
    cancelled_at: datetime | None = None
    source: str = "seckill"
    group_id: str | None = None
    group_state: str | None = None
    # A coupon applied (coupon.locked): amount_cents is then the price less discount_cents.
    discount_cents: int = 0
    coupon_id: str | None = None


def _field(data: dict[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise InvalidReservation(f"{name} must be {kind.__name__}, got {value!r}")
    return value


def _timestamp(data: dict[str, Any], name: str) -> datetime:
    raw = _field(data, name, str)
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidReservation(f"{name} is not a timestamp: {raw!r}") from None
    if moment.tzinfo is None:
        raise InvalidReservation(f"{name} has no time zone")
    return moment


def order_from_reservation(data: dict[str, Any]) -> NewOrder:
    """The order a seckill.reserved event asks for, or InvalidReservation."""
    reservation_id = _field(data, "reservation_id", str)
    quantity = _field(data, "quantity", int)
    price = _field(data, "unit_price_cents", int)
    activity_id = _field(data, "activity_id", int)
    user_id = _field(data, "user_id", str)
    sku = _field(data, "sku", str)
    reserved_at = _timestamp(data, "reserved_at")
    pay_before = _timestamp(data, "pay_before")
    if not reservation_id or len(reservation_id) > 100:
        raise InvalidReservation("reservation_id must be 1 to 100 characters")
    if not user_id or not sku:
        raise InvalidReservation("user_id and sku must not be empty")
    # Bounds of the PostgreSQL columns: refuse here rather than fail the insert.
    if not 0 < quantity <= MAX_INT or not 0 < activity_id <= MAX_BIGINT:
        raise InvalidReservation("quantity and activity_id must be positive and in range")
    if not 0 <= price <= MAX_BIGINT // quantity:
        raise InvalidReservation("unit_price_cents must be >= 0 and the amount fit in bigint")
    if pay_before <= reserved_at:
        raise InvalidReservation("pay_before must be after reserved_at")
    return NewOrder(
        id=order_id_for(reservation_id),
        reservation_id=reservation_id,
        activity_id=activity_id,
        user_id=user_id,
        sku=sku,
        quantity=quantity,
        unit_price_cents=price,
        reserved_at=reserved_at,
        pay_before=pay_before,
    )


class GroupState(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"
    FAILED = "failed"


def group_order_key(group_id: str, user_id: str) -> str:
    """The natural key of a group member's order (stored as its reservation_id): one
    order per member of a group, however often the event is delivered."""
    return f"{group_id}:{user_id}"


def order_from_group_event(data: dict[str, Any]) -> NewOrder:
    """The order a group.opened (leader) or group.joined (member) event asks for: one
    unit at the group price, payable until the group's deadline plus the campaign's
    payment window."""
    group_id = _field(data, "group_id", str)
    user_id = _field(data, "user_id", str)
    campaign_id = _field(data, "campaign_id", int)
    sku = _field(data, "sku", str)
    price = _field(data, "unit_price_cents", int)
    joined_at = _timestamp(data, "joined_at")
    pay_before = _timestamp(data, "pay_before")
    if not group_id or not user_id or not sku:
        raise InvalidReservation("group_id, user_id and sku must not be empty")
    if not 0 < campaign_id <= MAX_BIGINT or not 0 <= price <= MAX_BIGINT:
        raise InvalidReservation("campaign_id and unit_price_cents must be in range")
    if pay_before <= joined_at:
        raise InvalidReservation("pay_before must be after joined_at")
    key = group_order_key(group_id, user_id)
    return NewOrder(
        id=order_id_for(key),
        reservation_id=key,
        activity_id=campaign_id,
        user_id=user_id,
        sku=sku,
        quantity=1,
        unit_price_cents=price,
        reserved_at=joined_at,
        pay_before=pay_before,
        source="groupbuy",
        group_id=group_id,
        group_state=GroupState.OPEN.value,
    )


def order_view(order: Order) -> dict[str, Any]:
    return {
        "id": str(order.id),
        "reservation_id": order.reservation_id,
        "activity_id": order.activity_id,
        "sku": order.sku,
        "quantity": order.quantity,
        "unit_price_cents": order.unit_price_cents,
        "amount_cents": order.amount_cents,
        "state": order.state,
        "cancel_reason": order.cancel_reason,
        "reserved_at": rfc3339(order.reserved_at),
        "pay_before": rfc3339(order.pay_before),
        "created_at": rfc3339(order.created_at),
        "paid_at": rfc3339(order.paid_at) if order.paid_at else None,
        "cancelled_at": rfc3339(order.cancelled_at) if order.cancelled_at else None,
        "source": order.source,
        "group_id": order.group_id,
        "group_state": order.group_state,
        "discount_cents": order.discount_cents,
        "coupon_id": order.coupon_id,
    }


def order_created_event(order: NewOrder) -> Envelope:
    return _order_event(ORDER_CREATED, order, pay_before=rfc3339(order.pay_before))


def parse_list_limit(raw: str | None) -> int:
    return list_limit(raw, 20, MAX_LIST_LIMIT)


def parse_order_id(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


def _order_event(kind: str, order: Order | NewOrder, **data: Any) -> Envelope:
    """An event about an order, keyed by order id; one of each kind per order."""
    return Envelope(
        id=event_id_for(kind, str(order.id)),
        type=kind,
        key=str(order.id),
        data={
            "order_id": str(order.id),
            "reservation_id": order.reservation_id,
            "activity_id": order.activity_id,
            "user_id": order.user_id,
            "sku": order.sku,
            "quantity": order.quantity,
            "amount_cents": order.amount_cents,
            # Group orders say so (source, group_id): consumers that return stock tell the
            # kinds apart by it. Seckill events keep their original shape (no source).
            **(
                {"source": order.source, "group_id": order.group_id}
                if order.group_id is not None
                else {}
            ),
            # An order with a coupon says which, and amount_cents above is the amount due:
            # the coupon service marks the coupon used or releases it by these.
            **(
                {"coupon_id": order.coupon_id, "discount_cents": order.discount_cents}
                if isinstance(order, Order) and order.coupon_id is not None
                else {}
            ),
            **data,
        },
    )


def order_paid_event(order: Order, transaction_id: str, paid_at: datetime) -> Envelope:
    return _order_event(ORDER_PAID, order, transaction_id=transaction_id, paid_at=rfc3339(paid_at))


def order_cancelled_event(order: Order) -> Envelope:
    assert order.cancel_reason is not None and order.cancelled_at is not None
    return _order_event(
        ORDER_CANCELLED,
        order,
        reason=order.cancel_reason,
        cancelled_at=rfc3339(order.cancelled_at),
    )


def payment_due_event(order: Order) -> Envelope:
    return _order_event(ORDER_PAYMENT_DUE, order, pay_before=rfc3339(order.pay_before))


def refund_requested_event(
    order: Order, transaction_id: str, amount_cents: int, reason: str
) -> Envelope:
    event = _order_event(
        ORDER_REFUND_REQUESTED,
        order,
        transaction_id=transaction_id,
        refund_amount_cents=amount_cents,
        reason=reason,
    )
    # One refund per payment, not per order: keyed on the provider's transaction.
    return Envelope(
        id=event_id_for(ORDER_REFUND_REQUESTED, transaction_id),
        type=event.type,
        key=event.key,
        data=event.data,
        at=event.at,
    )


# --- a flash sale cancelled by its merchant -------------------------------------------


class Source(StrEnum):
    SECKILL = "seckill"
    GROUPBUY = "groupbuy"


@dataclass(frozen=True, slots=True)
class SaleCancellation:
    """seckill.cancelled: every unpaid order of the activity is cancelled (sale_cancelled);
    paid ones stay paid (refunds are the merchant's decision)."""

    source: str
    sale_id: int
    cancelled_at: datetime


def sale_cancellation_from_event(data: dict[str, Any]) -> SaleCancellation:
    """The cancellation a seckill.cancelled event announces, or InvalidReservation."""
    activity_id = _field(data, "activity_id", int)
    if not 0 < activity_id <= MAX_BIGINT:
        raise InvalidReservation("activity_id must be positive and in range")
    return SaleCancellation(Source.SECKILL.value, activity_id, _timestamp(data, "cancelled_at"))


# --- the merchant console: search, one order's story, refunds, figures ----------------

SEARCH_PARAMS = ("order_id", "user_id", "source", "sale_id", "state", "limit", "offset")
SALE_PARAMS = ("source", "sale_id")
MAX_USER_ID = 128
MAX_REFUND_ID = 64


@dataclass(frozen=True, slots=True)
class OrderSearch:
    page: Page
    order_id: uuid.UUID | None = None
    user_id: str | None = None
    source: str | None = None
    sale_id: int | None = None
    state: str | None = None


def _sale_id(query: Mapping[str, str], required: bool) -> int | None:
    sale_id = bigint_param(query, "sale_id")
    if sale_id is None and required:
        raise ValidationError("sale_id", "required: the activity or campaign id")
    return sale_id


def parse_order_search(query: Mapping[str, str]) -> OrderSearch:
    """The admin search's filters; every one optional, unknown ones refused."""
    unknown_params(query, SEARCH_PARAMS)
    raw_id = query.get("order_id") or None
    order_id = None if raw_id is None else parse_order_id(raw_id)
    if raw_id is not None and order_id is None:
        raise ValidationError("order_id", "must be an order id (UUID)")
    return OrderSearch(
        page=parse_page(query),
        order_id=order_id,
        user_id=text_param(query, "user_id", MAX_USER_ID),
        source=choice_param(query, "source", [s.value for s in Source]),
        sale_id=_sale_id(query, required=False),
        state=choice_param(query, "state", [s.value for s in State]),
    )


@dataclass(frozen=True, slots=True)
class SaleRef:
    source: str
    sale_id: int


def parse_sale_ref(query: Mapping[str, str]) -> SaleRef:
    """?source=seckill|groupbuy&sale_id=N, both required (figures, live)."""
    unknown_params(query, SALE_PARAMS)
    source = choice_param(query, "source", [s.value for s in Source])
    if source is None:
        raise ValidationError("source", "required: seckill or groupbuy")
    sale_id = _sale_id(query, required=True)
    assert sale_id is not None
    return SaleRef(source, sale_id)


def figures_view(sale: SaleRef, counts: Mapping[str, int], at: datetime) -> dict[str, Any]:
    """A sale's orders by state; `created` counts them all (cancelled ones included)."""
    by_state = {s.value: int(counts.get(s.value, 0)) for s in State}
    return {
        "source": sale.source,
        "sale_id": sale.sale_id,
        "created": sum(by_state.values()),
        **by_state,
        "at": rfc3339(at),
    }


@dataclass(frozen=True, slots=True)
class Payment:
    """A payment notification acted on (orders.payments)."""

    transaction_id: str
    order_id: uuid.UUID
    amount_cents: int
    outcome: str  # applied | refund_requested
    refund_reason: str | None
    received_at: datetime
    refunded_at: datetime | None = None
    refund_id: str | None = None
    refunded_by: str | None = None


class RefundState(StrEnum):
    NONE = "none"
    REQUESTED = "requested"
    REFUNDED = "refunded"


def refund_reason(payment: Payment, order: Order) -> str | None:
    """Why the service asked for this payment's refund (None: it did not). Two cases emit
    order.refund_requested: a payment that could not be applied (the order was cancelled or
    already paid: outcome refund_requested), and the applied payment of a group order
    cancelled because its group failed."""
    if payment.outcome == "refund_requested":
        return payment.refund_reason
    if (
        order.state == State.CANCELLED
        and order.cancel_reason == CancelReason.GROUP_FAILED
        and order.paid_at is not None
    ):
        return CancelReason.GROUP_FAILED.value
    return None


def refund_state(payment: Payment, order: Order) -> RefundState:
    if payment.refunded_at is not None:
        return RefundState.REFUNDED
    return RefundState.NONE if refund_reason(payment, order) is None else RefundState.REQUESTED


def parse_refund_id(body: Mapping[str, Any]) -> str:
    """{"refund_id": "<the provider's refund reference>"}: 1-64 printable characters."""
    unknown = sorted(set(body) - {"refund_id"})
    if unknown:
        raise ValidationError(unknown[0], "unknown field")
    refund_id = body.get("refund_id")
    if (
        not isinstance(refund_id, str)
        or not 0 < len(refund_id) <= MAX_REFUND_ID
        or not refund_id.isprintable()
        or refund_id.strip() != refund_id
    ):
        raise ValidationError(
            "refund_id",
            f"the provider's refund reference: 1 to {MAX_REFUND_ID} printable characters,"
            " no surrounding spaces",
        )
    return refund_id


def must_mark_refund(payment: Payment, order: Order, refund_id: str) -> bool:
    """Whether marking this payment refunded with refund_id changes it: True to mark it,
    False for a repeat of the same marking (idempotent); 409 when it cannot be marked."""
    state = refund_state(payment, order)
    if state is RefundState.REFUNDED:
        if payment.refund_id == refund_id:
            return False
        raise DomainError(
            409,
            "already_refunded",
            f"this payment was marked refunded with refund id {payment.refund_id!r}",
        )
    if state is RefundState.NONE:
        raise DomainError(
            409,
            "refund_not_requested",
            "no refund was requested for this payment: it is applied to a live order",
        )
    return True


def payment_view(payment: Payment, order: Order) -> dict[str, Any]:
    return {
        "transaction_id": payment.transaction_id,
        "order_id": str(payment.order_id),
        "amount_cents": payment.amount_cents,
        "outcome": payment.outcome,
        "received_at": rfc3339(payment.received_at),
        "refund_state": refund_state(payment, order).value,
        "refund_reason": refund_reason(payment, order),
        "refund_id": payment.refund_id,
        "refunded_at": rfc3339(payment.refunded_at) if payment.refunded_at else None,
        "refunded_by": payment.refunded_by,
    }


def order_history(order: Order, payments: list[Payment]) -> list[dict[str, Any]]:
    """What happened to an order, oldest first, from its row and its payments. Entries
    at the same instant keep the order they can happen in (the rank after the time)."""
    entries: list[tuple[datetime, int, dict[str, Any]]] = [
        (order.created_at, 0, {"event": "created"})
    ]
    applied = [p for p in payments if p.outcome == "applied"]
    if order.paid_at is not None:
        paid: dict[str, Any] = {"event": "paid"}
        if applied:
            paid["transaction_id"] = applied[0].transaction_id
        entries.append((order.paid_at, 1, paid))
    if order.cancelled_at is not None:
        entries.append(
            (order.cancelled_at, 2, {"event": "cancelled", "reason": order.cancel_reason})
        )
    for p in payments:
        reason = refund_reason(p, order)
        if reason is not None:
            # A late payment's refund is asked for when it arrives; a failed group's
            # paid order's when the group fails (the cancellation).
            asked_at = p.received_at if p.outcome == "refund_requested" else order.cancelled_at
            assert asked_at is not None
            entries.append(
                (
                    asked_at,
                    3,
                    {
                        "event": "payment_refund_requested",
                        "transaction_id": p.transaction_id,
                        "reason": reason,
                    },
                )
            )
        if p.refunded_at is not None:
            entries.append(
                (
                    p.refunded_at,
                    4,
                    {
                        "event": "refunded",
                        "transaction_id": p.transaction_id,
                        "refund_id": p.refund_id,
                        "by": p.refunded_by,
                    },
                )
            )
    entries.sort(key=lambda e: (e[0], e[1]))
    return [{"at": rfc3339(at), **entry} for at, _, entry in entries]


def admin_order_view(order: Order) -> dict[str, Any]:
    """The shopper's view plus who the order belongs to."""
    return {**order_view(order), "user_id": order.user_id}


def admin_order_detail(order: Order, payments: list[Payment]) -> dict[str, Any]:
    return {
        **admin_order_view(order),
        "history": order_history(order, payments),
        "payments": [payment_view(p, order) for p in payments],
    }
