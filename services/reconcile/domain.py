"""Reconciliation rules: compare a sale's state in Redis with its record in PostgreSQL and
decide what is wrong and what can be repaired safely. A sale is a flash-sale activity
(this module) or a group-buy campaign (groupbuy_domain.py); both report the same way.

Pure: the adapters load the two sides, these functions compare them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum


class Kind(StrEnum):
    # An activity or campaign marked warm in PostgreSQL whose Redis state (settings,
    # stock) is gone: Redis lost data. Nothing else about it is compared; rebuild it
    # (python -m services.reconcile --rebuild-activity / --rebuild-campaign).
    REDIS_STATE_MISSING = "redis_state_missing"
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
    # Group buying (groupbuy_domain.py). A group's event that has no effect in PostgreSQL
    # and is no longer in the outbox: a member without order or record row, or a group
    # whose completion or failure did not reach the record or the orders. Repaired by
    # publishing the group's events again, in order, with their original ids.
    GROUP_EVENT_LOST = "group_event_lost"
    # A cancelled order of a completed group whose unit did not come back to the stock.
    # Repaired with the idempotent unit release.
    GROUP_CANCELLED_NOT_RELEASED = "group_cancelled_not_released"
    # A group order whose group or member Redis does not know (Redis lost data).
    GROUP_ORDER_WITHOUT_MEMBER = "group_order_without_member"
    # A member's unit returned while the member's order is not cancelled.
    GROUP_RELEASED_BUT_ORDER_LIVE = "group_released_but_order_live"
    # remaining + units held by open and completed groups != the campaign's stock.
    GROUP_STOCK_DRIFT = "group_stock_drift"


REPAIRABLE = frozenset(
    {
        Kind.RESERVATION_WITHOUT_ORDER,
        Kind.CANCELLED_NOT_RELEASED,
        Kind.GROUP_EVENT_LOST,
        Kind.GROUP_CANCELLED_NOT_RELEASED,
    }
)

ACTIVITY = "activity"
CAMPAIGN = "campaign"


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


@dataclass(frozen=True, slots=True)
class ActivityOrder:
    """An order of an activity as PostgreSQL holds it."""

    reservation_id: str
    user_id: str
    quantity: int
    state: str  # pending_payment | paid | cancelled
    cancel_reason: str | None
    cancelled_at: datetime | None
    reserved_at: datetime
    pay_before: datetime

    def record(self) -> OrderRecord:
        return OrderRecord(self.reservation_id, self.state, self.cancelled_at)


@dataclass
class SaleReport:
    """What one run found in one sale, what it repaired and what it failed to."""

    sale: str  # ACTIVITY | CAMPAIGN
    sale_id: int
    mismatches: dict[Kind, list[str]] = field(default_factory=lambda: {k: [] for k in Kind})
    repaired: dict[Kind, int] = field(default_factory=dict)
    failed: dict[Kind, int] = field(default_factory=dict)
    # Why the repairs of a kind failed (the last error seen).
    repair_errors: dict[Kind, str] = field(default_factory=dict)
    # Set when the sale could not be compared at all (Redis or PostgreSQL failed).
    error: str | None = None

    def count(self, kind: Kind) -> int:
        return len(self.mismatches[kind])

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.mismatches.values())

    @property
    def failures(self) -> int:
        """Repairs that failed, plus one if the sale could not be compared."""
        return sum(self.failed.values()) + (self.error is not None)

    @property
    def needs_attention(self) -> int:
        """Mismatches no repair exists for."""
        return sum(len(v) for k, v in self.mismatches.items() if k not in REPAIRABLE)


def compare(
    activity_id: int,
    initial_stock: int,
    remaining_stock: int,
    reservations: dict[str, ReservationRecord],
    in_outbox: set[str],
    orders: dict[str, OrderRecord],
    now: datetime,
    grace: timedelta,
) -> SaleReport:
    """Mismatches of one activity. Anything younger than the grace period is in flight,
    not wrong: an event may still be in the outbox, in Kafka or in a consumer's batch."""
    report = SaleReport(ACTIVITY, activity_id)
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


def state_missing(sale: str, sale_id: int) -> SaleReport:
    """The report of a sale whose Redis state is gone: one finding, nothing compared
    (every order would otherwise show up as unknown to Redis)."""
    report = SaleReport(sale, sale_id)
    report.mismatches[Kind.REDIS_STATE_MISSING].append(f"{sale} {sale_id}")
    return report


@dataclass
class RunReport:
    """One reconciliation run over every recent sale."""

    sales: list[SaleReport] = field(default_factory=list)
    # Set when the run could not even list the sales (PostgreSQL unreachable).
    error: str | None = None

    @property
    def failures(self) -> int:
        return sum(s.failures for s in self.sales) + (self.error is not None)

    @property
    def needs_attention(self) -> int:
        return sum(s.needs_attention for s in self.sales)

    def count(self, kind: Kind) -> int:
        return sum(s.count(kind) for s in self.sales)
