"""Order rules: an order from a reservation event, the events it emits, its views.

Pure functions and dataclasses: no I/O, so tests call them directly.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.common.errors import ValidationError
from services.common.events import (
    ORDER_CANCELLED,
    ORDER_CREATED,
    ORDER_PAID,
    ORDER_PAYMENT_DUE,
    ORDER_REFUND_REQUESTED,
    Envelope,
    event_id_for,
    rfc3339,
)

_ORDER_NAMESPACE = uuid.UUID("a7d4c1e2-5b3f-4e8a-9c6d-2f1e0b7a8c93")
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


def order_id_for(reservation_id: str) -> uuid.UUID:
    # Derived, not random: a redelivered reservation maps to the same order id.
    return uuid.uuid5(_ORDER_NAMESPACE, reservation_id)


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
    }


def order_created_event(order: NewOrder) -> Envelope:
    return _order_event(ORDER_CREATED, order, pay_before=rfc3339(order.pay_before))


def parse_list_limit(raw: str | None) -> int:
    if raw is None:
        return 20
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_LIST_LIMIT:
        raise ValidationError("limit", f"must be an integer between 1 and {MAX_LIST_LIMIT}")
    return int(raw)


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
