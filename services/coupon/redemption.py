"""Redemption: lock a shopper's coupon to their pending order (docs/coupons.md,
"Redemption"), in one PostgreSQL transaction.

Rows are locked in a fixed order, the order's read-model row and then the coupon's: two
orders racing for one coupon queue on the coupon's row and exactly one finds it
available; one order with two coupons at once queues on the order's row and the second
finds it has a coupon. The coupon.locked event is written in the same transaction, so the
order service hears of every lock that happened and of no other.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from services.common.errors import DomainError, NotFound
from services.common.events import Envelope
from services.common.pg_outbox import OutboxWriter
from services.coupon.lifecycle_domain import (
    CouponState,
    Lock,
    OrderState,
    coupon_locked_event,
    coupon_not_available,
    order_has_coupon,
    order_not_pending,
    terms_of,
)
from services.coupon.lifecycle_metrics import LifecycleMetrics
from services.coupon.terms import OrderFacts, applicable

LOCK_ORDER = """
SELECT user_id, source, sale_id, sku, amount_cents, state FROM coupon.orders
WHERE id = $1 FOR UPDATE
"""
LOCK_COUPON = """
SELECT c.template_id, c.user_id, c.state, c.order_id, c.discount_cents, c.valid_from,
       c.valid_until, t.kind, t.threshold_cents, t.amount_off_cents, t.percent_off,
       t.max_discount_cents, t.scope, t.scope_ids, t.usable_on_flash_sales
FROM coupon.coupons c JOIN coupon.templates t ON t.id = c.template_id
WHERE c.id = $1
FOR UPDATE OF c
"""
# Under the order's row lock: no other redemption of this order runs meanwhile, and the
# consumer settles an order's coupon under the same lock.
COUPON_OF_ORDER = "SELECT id FROM coupon.coupons WHERE order_id = $1"
LOCK_TO_ORDER = """
UPDATE coupon.coupons SET state = 'locked', order_id = $2, discount_cents = $3, locked_at = now()
WHERE id = $1 AND state = 'available'
"""


def _now() -> datetime:
    return datetime.now(UTC)


class Redemption:
    def __init__(
        self,
        announcer: OutboxWriter,
        metrics: LifecycleMetrics,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._db = announcer
        self._metrics = metrics
        self._clock = clock

    async def lock(self, order_id: uuid.UUID, coupon_id: str, user_id: str) -> Lock:
        """Lock coupon_id to order_id for user_id; the same lock again answers the same.
        Raises the 404/409 refusals of docs/coupons.md ("Errors")."""
        try:
            async with self._db.transaction() as tx:
                lock, event = await self._decide(tx.conn, order_id, coupon_id, user_id)
                if event is not None:
                    await self._db.announce(tx, [event])
        except DomainError:
            self._metrics.redemptions.labels("refused").inc()
            raise
        if event is not None:
            self._metrics.redemptions.labels("locked").inc()
        return lock

    async def _decide(
        self, conn: asyncpg.Connection, order_id: uuid.UUID, coupon_id: str, user_id: str
    ) -> tuple[Lock, Envelope | None]:
        """The lock, and its coupon.locked event if this call made it (None: it was
        there already)."""
        order = await conn.fetchrow(LOCK_ORDER, order_id)
        if order is None or order["user_id"] != user_id:
            raise NotFound("order")
        coupon = await conn.fetchrow(LOCK_COUPON, coupon_id)
        if coupon is not None and coupon["user_id"] != user_id:
            coupon = None  # someone else's: ids do not leak
        amount = order["amount_cents"]
        if (
            coupon is not None
            and coupon["state"] == CouponState.LOCKED
            and coupon["order_id"] == order_id
        ):
            # The same lock again (a retry whose answer was lost): the same answer.
            return Lock(order_id, coupon_id, amount, coupon["discount_cents"]), None
        if order["state"] != OrderState.PENDING_PAYMENT:
            raise order_not_pending()
        if await conn.fetchval(COUPON_OF_ORDER, order_id) is not None:
            raise order_has_coupon()
        if coupon is None:
            raise NotFound("coupon")
        if coupon["state"] != CouponState.AVAILABLE:
            raise coupon_not_available(coupon["state"])
        facts = OrderFacts(order["source"], order["sale_id"], order["sku"], amount)
        discount = applicable(
            terms_of(coupon), facts, coupon["valid_from"], coupon["valid_until"], self._clock()
        )
        await conn.execute(LOCK_TO_ORDER, coupon_id, order_id, discount)
        event = coupon_locked_event(
            coupon_id, coupon["template_id"], user_id, order_id, amount, discount
        )
        return Lock(order_id, coupon_id, amount, discount), event
