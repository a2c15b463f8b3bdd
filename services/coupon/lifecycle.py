"""Consumer of the orders topic (group coupon-orders): what orders do to coupons.

- order.created: the order into the read model redemption checks against.
- order.paid: a coupon locked to it is used (the payment carried it) or released (it was
  paid for the full amount before the lock reached it); then 下单返券, one grant per
  (order, matching active rule), exactly once.
- order.cancelled: a coupon locked to it is released; if it had been paid (a refund), the
  coupons it granted are revoked unless already used.

Every step is idempotent on the state it changes (the read model's, the coupon's, the
(order, rule) decision in Redis and in coupon.grants), so a redelivered batch, or two
consumers of one partition during a rebalance, change nothing twice. An order's events
share its partition (key = order id) and arrive in order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from services.common.kafka import Incoming, PermanentError
from services.common.validation import new_owned_id
from services.coupon.grant_store import GrantStore
from services.coupon.lifecycle_domain import (
    GrantOutcome,
    InvalidOrderEvent,
    OrderEvent,
    OrderState,
    parse_order_event,
)
from services.coupon.lifecycle_metrics import LifecycleMetrics
from services.coupon.lifecycle_repository import LifecycleRepository

log = logging.getLogger(__name__)

# The orders consumer's group: its own, so that it never rebalances other coupon consumers.
ORDERS_GROUP = "coupon-orders"


class TemplateNotInRedis(RuntimeError):
    """A rule's template is not loaded in Redis (not warmed yet, or Redis lost it): the
    grant cannot be decided now. Retried with the batch, then dead-lettered for an
    operator to replay once the template is warmed; the order's other effects are
    already committed and are not repeated by the replay."""


class OrdersHandler:
    def __init__(
        self, repository: LifecycleRepository, grants: GrantStore, metrics: LifecycleMetrics
    ) -> None:
        self._repository = repository
        self._grants = grants
        self._metrics = metrics

    async def __call__(self, batch: Sequence[Incoming]) -> None:
        orders: list[OrderEvent] = []
        for item in batch:
            try:
                order = parse_order_event(item.event.type, item.event.data)
            except InvalidOrderEvent as exc:
                # For the batch: the consumer splits it and dead-letters this one.
                raise PermanentError(f"{item.event.type} {item.event.id}: {exc}") from exc
            if order is not None:
                orders.append(order)
        # Creation is the first state and changes no existing row: all at once, first.
        await self._repository.record_created(
            [o for o in orders if o.state is OrderState.PENDING_PAYMENT]
        )
        for order in orders:
            if order.state is OrderState.PAID:
                await self._paid(order)
            elif order.state is OrderState.CANCELLED:
                await self._cancelled(order)

    async def _paid(self, order: OrderEvent) -> None:
        settled = await self._repository.settle_paid(order)
        if settled.used:
            self._metrics.redemptions.labels("used").inc()
        if settled.released:
            self._metrics.redemptions.labels("released").inc()
            log.info("order %s paid without its locked coupon: coupon released", order.order_id)
        await self.grant(order)

    async def grant(self, order: OrderEvent) -> None:
        """下单返券 for a paid order: each matching rule decided once (grant.lua in Redis
        first, the gate of the template's quantity, then the record in PostgreSQL)."""
        rules, decided = await self._repository.rules_to_decide(order)
        self._metrics.grants.labels("duplicate").inc(decided)
        for rule in rules:
            decision = await self._grants.grant(
                rule.template_id,
                str(order.order_id),
                rule.id,
                order.user_id,
                new_owned_id(rule.template_id),
            )
            if decision.outcome is GrantOutcome.UNKNOWN:
                raise TemplateNotInRedis(
                    f"template {rule.template_id} of rule {rule.id} is not in Redis"
                )
            await self._repository.record_grant(order, rule, decision)
            self._metrics.grants.labels(
                "duplicate" if decision.duplicate else decision.outcome.value
            ).inc()

    async def _cancelled(self, order: OrderEvent) -> None:
        settled = await self._repository.cancel(order)
        if settled.released:
            self._metrics.redemptions.labels("released").inc()
        self._metrics.redemptions.labels("revoked").inc(settled.revoked)
        self._metrics.refunded_grants_kept.inc(settled.kept)
        if settled.kept:
            log.info(
                "order %s refunded: %d coupon(s) it granted were already used",
                order.order_id,
                settled.kept,
            )
