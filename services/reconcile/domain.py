"""Reconciliation rules: compare an activity's reservations (Redis) with its orders
(PostgreSQL) and decide what is wrong and what can be repaired safely.

Pure: the adapters load the two sides, these functions compare them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum


class Kind(StrEnum):
    # A reservation older than the grace period with no order and no outbox entry left:
    # its event was lost (broker restart, ...). Repaired by publishing it again.
    RESERVATION_WITHOUT_ORDER = "reservation_without_order"
    # An order whose reservation Redis does not know (Redis lost data): reported only.
    ORDER_WITHOUT_RESERVATION = "order_without_reservation"
    # A cancelled order whose stock was not returned after the grace period (its
    # order.cancelled was lost). Repaired by releasing it (idempotent).
    CANCELLED_NOT_RELEASED = "cancelled_not_released"
    # Stock returned for an order that is not cancelled: the item may be sold twice.
    RELEASED_BUT_ORDER_LIVE = "released_but_order_live"
    # remaining + held units != initial stock.
    STOCK_DRIFT = "stock_drift"


@dataclass(frozen=True, slots=True)
class ReservationRecord:
    reservation_id: str
    user_id: str
    quantity: int
    state: str  # reserved | released
    reserved_at: datetime


@dataclass(frozen=True, slots=True)
class OrderRecord:
    reservation_id: str
    state: str  # pending_payment | paid | cancelled
    cancelled_at: datetime | None


@dataclass
class ActivityReport:
    activity_id: int
    mismatches: dict[Kind, list[str]] = field(default_factory=lambda: {k: [] for k in Kind})

    def count(self, kind: Kind) -> int:
        return len(self.mismatches[kind])

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.mismatches.values())


def compare(
    activity_id: int,
    initial_stock: int,
    remaining_stock: int,
    reservations: dict[str, ReservationRecord],
    in_outbox: set[str],
    orders: dict[str, OrderRecord],
    now: datetime,
    grace: timedelta,
) -> ActivityReport:
    """Mismatches of one activity. Anything younger than the grace period is in flight,
    not wrong: an event may still be in the outbox, in Kafka or in a consumer's batch."""
    report = ActivityReport(activity_id)
    settled = now - grace
    for rid, res in reservations.items():
        order = orders.get(rid)
        if order is None:
            if res.state == "reserved" and rid not in in_outbox and res.reserved_at < settled:
                report.mismatches[Kind.RESERVATION_WITHOUT_ORDER].append(rid)
            continue
        if order.state == "cancelled":
            if (
                res.state == "reserved"
                and order.cancelled_at is not None
                and order.cancelled_at < settled
            ):
                report.mismatches[Kind.CANCELLED_NOT_RELEASED].append(rid)
        elif res.state == "released":
            report.mismatches[Kind.RELEASED_BUT_ORDER_LIVE].append(rid)
    for rid in orders:
        if rid not in reservations:
            report.mismatches[Kind.ORDER_WITHOUT_RESERVATION].append(rid)
    held = sum(r.quantity for r in reservations.values() if r.state == "reserved")
    if remaining_stock + held != initial_stock:
        report.mismatches[Kind.STOCK_DRIFT].append(
            f"remaining {remaining_stock} + held {held} != stock {initial_stock}"
        )
    return report


REPAIRABLE = frozenset({Kind.RESERVATION_WITHOUT_ORDER, Kind.CANCELLED_NOT_RELEASED})
