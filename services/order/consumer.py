"""Consumes seckill.reservations and turns each reservation into exactly one order; a
seckill.cancelled there cancels the sale's unpaid orders. Consumes groupbuy (an order per
member) and coupons (a coupon locked to an order discounts it)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.common.events import (
    COUPON_LOCKED,
    GROUP_COMPLETED,
    GROUP_FAILED,
    GROUP_JOINED,
    GROUP_OPENED,
    SECKILL_CANCELLED,
    SECKILL_RELEASED,
    SECKILL_RESERVED,
)
from services.common.kafka import Incoming, PermanentError
from services.order.coupons import CouponLock, InvalidCouponLock, LockResult, coupon_lock_from_event
from services.order.domain import (
    InvalidReservation,
    NewOrder,
    SaleCancellation,
    order_from_group_event,
    order_from_reservation,
    sale_cancellation_from_event,
)
from services.order.repository import OrderRepository

log = logging.getLogger(__name__)


class OrderCreationMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.created = Counter(
            "order_orders_created_total", "Orders created from reservations.", registry=registry
        )
        self.duplicates = Counter(
            "order_reservation_duplicates_total",
            "Redelivered reservations that already had their order (no-ops).",
            registry=registry,
        )
        self.latency = Histogram(
            "order_reservation_to_order_seconds",
            "Time from the reservation in Redis to its order committed in PostgreSQL.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.groups_settled = Counter(
            "order_group_settlements_total",
            "group.completed / group.failed events applied to orders, by result.",
            ["result"],
            registry=registry,
        )
        self.sale_cancelled = Counter(
            "order_sale_cancelled_orders_total",
            "Unpaid orders cancelled because the merchant cancelled their sale.",
            registry=registry,
        )
        self.group_refunds = Counter(
            "order_group_failed_refunds_total",
            "Paid orders of failed groups cancelled and refunded.",
            registry=registry,
        )


class ReservationHandler:
    def __init__(self, orders: OrderRepository, metrics: OrderCreationMetrics) -> None:
        self._orders = orders
        self._metrics = metrics

    async def __call__(self, batch: Sequence[Incoming]) -> None:
        wanted: list[NewOrder] = []
        cancelled: list[SaleCancellation] = []
        for item in batch:
            try:
                if item.event.type == SECKILL_RESERVED:
                    wanted.append(order_from_reservation(item.event.data))
                elif item.event.type == SECKILL_CANCELLED:
                    cancelled.append(sale_cancellation_from_event(item.event.data))
                elif item.event.type != SECKILL_RELEASED:
                    log.warning("ignoring unknown event type %s", item.event.type)
            except InvalidReservation as exc:
                # Raised for the batch: the consumer splits it and dead-letters this one.
                raise PermanentError(str(exc)) from exc
        # Either order is right: a cancellation cancels the orders already there, and the
        # creation of a cancelled sale's order cancels it at once.
        for cancellation in cancelled:
            orders = await self._orders.cancel_sale(cancellation)
            self._metrics.sale_cancelled.inc(len(orders))
            log.info(
                "%s sale %d cancelled: %d unpaid orders cancelled",
                cancellation.source,
                cancellation.sale_id,
                len(orders),
            )
        if not wanted:
            return
        created = await self._orders.create_orders(wanted)
        self._metrics.created.inc(len(created))
        self._metrics.duplicates.inc(len(wanted) - len(created))
        now = time.time()
        for order in created:
            self._metrics.latency.observe(max(0.0, now - order.reserved_at.timestamp()))


class GroupEventHandler:
    """Consumes the groupbuy topic: one order per group member (leader on group.opened,
    member on group.joined), idempotent on (group id, user id); group.completed marks the
    group's orders ready to fulfil; group.failed cancels them (reason group_failed) and
    refunds the paid ones. A group's events share a partition (key = group id), so a
    member's order is always created before its group settles."""

    def __init__(self, orders: OrderRepository, metrics: OrderCreationMetrics) -> None:
        self._orders = orders
        self._metrics = metrics

    async def __call__(self, batch: Sequence[Incoming]) -> None:
        wanted: list[NewOrder] = []
        settle: list[tuple[str, str]] = []
        for item in batch:
            kind, data = item.event.type, item.event.data
            if kind in (GROUP_OPENED, GROUP_JOINED):
                try:
                    wanted.append(order_from_group_event(data))
                except InvalidReservation as exc:
                    raise PermanentError(str(exc)) from exc
            elif kind in (GROUP_COMPLETED, GROUP_FAILED):
                group_id = data.get("group_id")
                if not isinstance(group_id, str) or not group_id:
                    raise PermanentError(f"{kind} without a group id: {item.event.id}")
                settle.append((kind, group_id))
            else:
                log.warning("ignoring unknown event type %s", kind)
        if wanted:
            created = await self._orders.create_orders(wanted)
            self._metrics.created.inc(len(created))
            self._metrics.duplicates.inc(len(wanted) - len(created))
        # After the creations: a group settled in this batch has all its orders by now.
        for kind, group_id in settle:
            if kind == GROUP_COMPLETED:
                await self._orders.complete_group(group_id)
                self._metrics.groups_settled.labels("completed").inc()
            else:
                _, refunded = await self._orders.fail_group(group_id)
                self._metrics.groups_settled.labels("failed").inc()
                self._metrics.group_refunds.inc(len(refunded))


class CouponLockMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.locks = Counter(
            "order_coupon_locks_total",
            "coupon.locked events by what they did to their order (applied, duplicate, "
            "order_not_pending, order_has_coupon, mismatch, unknown_order).",
            ["result"],
            registry=registry,
        )
        for result in LockResult:
            self.locks.labels(result.value)


# Outcomes that mean the coupon service and the order service disagree about an order
# (alert FlashsaleCouponLocksRefused): the error log says which coupon and order.
_DISAGREEMENTS = frozenset({LockResult.MISMATCH, LockResult.UNKNOWN_ORDER})


class CouponLockHandler:
    """Consumes the coupons topic: coupon.locked discounts its order, if the order still
    waits for its payment and has no coupon (services/order/coupons.py decides); every
    other coupon event is someone else's business. A well-formed lock that does not apply
    is a counted no-op, never a dead letter: for a late one (order paid or cancelled
    meanwhile) the coupon service releases the coupon on hearing that order.paid /
    order.cancelled carried no coupon_id. An unknown order is counted and logged as an error, not
    dead-lettered: the coupon service locks only orders it read order.created for, which
    this service emits after committing them, so no retry or replay can ever find the
    order; what needs repair is the coupon service's record, and the metric (alert
    FlashsaleCouponLocksRefused) and the log are what point an operator to it."""

    def __init__(self, orders: OrderRepository, metrics: CouponLockMetrics) -> None:
        self._orders = orders
        self._metrics = metrics

    async def __call__(self, batch: Sequence[Incoming]) -> None:
        locks: list[tuple[str, CouponLock]] = []
        for item in batch:
            if item.event.type != COUPON_LOCKED:
                continue
            try:
                locks.append((item.event.id, coupon_lock_from_event(item.event.data)))
            except InvalidCouponLock as exc:
                # Before any lock of the batch is applied: the consumer splits the batch
                # and dead-letters this one alone.
                raise PermanentError(f"{COUPON_LOCKED} {item.event.id}: {exc}") from exc
        # One short transaction per lock (one order row each): locks are one per shopper's
        # redemption, not a burst, and a crash between two is a redelivery, i.e. DUPLICATE.
        for event_id, lock in locks:
            result, order = await self._orders.apply_coupon_lock(lock)
            self._metrics.locks.labels(result.value).inc()
            if result in _DISAGREEMENTS:
                log.error(
                    "%s %s not applied (%s): coupon %s, order %s, user %s, %d - %d = %d; order: %s",
                    COUPON_LOCKED,
                    event_id,
                    result.value,
                    lock.coupon_id,
                    lock.order_id,
                    lock.user_id,
                    lock.amount_cents,
                    lock.discount_cents,
                    lock.amount_due_cents,
                    "none" if order is None else f"{order.state}, {order.amount_cents} cents",
                )
            elif result is not LockResult.APPLIED:
                log.info("%s %s not applied: %s", COUPON_LOCKED, event_id, result.value)
