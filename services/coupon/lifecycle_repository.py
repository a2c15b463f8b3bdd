"""PostgreSQL adapter of a coupon's life after issue: the read model of orders
(coupon.orders), the settlement of a locked coupon when its order is paid or cancelled,
下单返券 grants (coupon.grants), and revocation when a granting order is refunded.

Row locks are always taken in the same order, the order's read-model row first and then
coupons, as the redemption does: the two never wait on each other in a cycle.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from services.common.events import from_epoch_ms
from services.common.pg_outbox import OutboxTx, OutboxWriter
from services.coupon.lifecycle_domain import (
    CouponState,
    GrantDecision,
    GrantOutcome,
    OrderEvent,
    OrderState,
    coupon_released_event,
    coupon_revoked_event,
    coupon_used_event,
    trigger_of,
)

# order.created: the first state, so a row already there (a redelivery, or a later event
# of the order that got here first) is kept as it is.
INSERT_CREATED = """
INSERT INTO coupon.orders (id, user_id, source, sale_id, sku, amount_cents, pay_before, state)
SELECT t.*, 'pending_payment'
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[],
            $7::timestamptz[]) AS t
ON CONFLICT (id) DO NOTHING
"""
LOCK_ORDER_STATE = "SELECT state FROM coupon.orders WHERE id = $1 FOR UPDATE"
# paid and cancelled only move an order forward (pending -> paid -> cancelled, the last
# one a refund); a late redelivery of paid never revives a cancelled order.
UPSERT_SETTLED = """
INSERT INTO coupon.orders (id, user_id, source, sale_id, sku, amount_cents, state)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (id) DO UPDATE SET
    state = CASE WHEN coupon.orders.state = 'cancelled' THEN coupon.orders.state
                 ELSE EXCLUDED.state END,
    updated_at = now()
"""
LOCKED_COUPON = """
SELECT id, user_id, discount_cents FROM coupon.coupons
WHERE order_id = $1 AND state = 'locked'
FOR UPDATE
"""
MARK_USED = """
UPDATE coupon.coupons SET state = 'used', used_at = now()
WHERE id = $1 AND state = 'locked'
"""
# Back to its holder, or expired if its validity ended while it was locked (the expiry
# sweeper skips locked coupons: the order decided their fate).
RELEASE = """
UPDATE coupon.coupons
SET state = CASE WHEN valid_until > now() THEN 'available' ELSE 'expired' END,
    expired_at = CASE WHEN valid_until > now() THEN expired_at ELSE now() END,
    order_id = NULL, discount_cents = NULL, released_at = now()
WHERE id = $1 AND state = 'locked'
RETURNING state
"""
# A grant Redis decided whose coupon row is not recorded yet (this consumer died between
# grant.lua and its commit, and the record consumer has not seen coupon.granted yet):
# recorded here, revoked, so that the later coupon.granted inserts nothing (same id). Its
# validity is the template's (a relative one counted from the grant's record: the exact
# one travels in the event, and a revoked coupon is never used).
RECORD_REVOKED_MISSING = """
INSERT INTO coupon.coupons
    (id, template_id, user_id, origin, grant_order_id, grant_rule_id, state,
     valid_from, valid_until, issued_at, revoked_at)
SELECT g.coupon_id, r.template_id, g.user_id, 'grant', g.order_id, g.rule_id, 'revoked',
       coalesce(t.valid_from, g.decided_at),
       coalesce(t.valid_until, g.decided_at + make_interval(days => t.valid_days)),
       g.decided_at, now()
FROM coupon.grants g
JOIN coupon.grant_rules r ON r.id = g.rule_id
JOIN coupon.templates t ON t.id = r.template_id
WHERE g.order_id = $1 AND g.outcome = 'granted' AND g.revoked_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM coupon.coupons c WHERE c.id = g.coupon_id)
ON CONFLICT DO NOTHING
RETURNING id, user_id
"""
REVOKE_GRANTED = """
UPDATE coupon.coupons c SET state = 'revoked', revoked_at = now()
FROM coupon.grants g
WHERE g.order_id = $1 AND g.outcome = 'granted' AND g.revoked_at IS NULL
  AND c.id = g.coupon_id AND c.state = 'available'
RETURNING c.id, c.user_id
"""
MARK_GRANTS_REVOKED = """
UPDATE coupon.grants SET revoked_at = now()
WHERE order_id = $1 AND coupon_id = ANY($2::text[]) AND revoked_at IS NULL
"""
# Granted coupons of a refunded order that were already spent (or are locked to another
# order that may yet be paid): they stay, and are counted.
KEPT_GRANTED = """
SELECT count(*) FROM coupon.grants g JOIN coupon.coupons c ON c.id = g.coupon_id
WHERE g.order_id = $1 AND g.outcome = 'granted' AND g.revoked_at IS NULL
  AND c.state IN ('used', 'locked')
"""
MATCHING_RULES = """
SELECT id, template_id FROM coupon.grant_rules
WHERE active AND (trigger = 'any' OR (trigger = $1 AND sale_id = $2))
ORDER BY id
"""
DECIDED_RULES = "SELECT rule_id FROM coupon.grants WHERE order_id = $1"
INSERT_GRANT = """
INSERT INTO coupon.grants (order_id, rule_id, user_id, outcome, coupon_id)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT DO NOTHING
"""
# The same row the record consumer makes of the coupon.granted event (whichever comes
# first wins; both are idempotent on the coupon id and on (order, rule)).
INSERT_GRANTED_COUPON = """
INSERT INTO coupon.coupons
    (id, template_id, user_id, origin, grant_order_id, grant_rule_id,
     valid_from, valid_until, issued_at)
VALUES ($1, $2, $3, 'grant', $4, $5, $6, $7, $8)
ON CONFLICT DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class Settled:
    """What an order.paid or order.cancelled did to the order's coupons. first: this
    event moved the read model to its state (a redelivery finds it there already)."""

    first: bool
    used: bool = False
    released: bool = False
    revoked: int = 0
    kept: int = 0


@dataclass(frozen=True, slots=True)
class Rule:
    id: int
    template_id: int


def _stored(order: OrderEvent) -> bool:
    # coupon.orders keeps orders a coupon could discount: a free order (a 0-cent flash
    # sale) has nothing to take off and the column refuses it.
    return order.amount_cents > 0


class LifecycleRepository:
    def __init__(self, announcer: OutboxWriter) -> None:
        self._db = announcer
        self._pool = announcer.pool

    async def record_created(self, orders: Sequence[OrderEvent]) -> None:
        """Pending orders into the read model, in one statement."""
        rows = [o for o in orders if _stored(o)]
        if not rows:
            return
        await self._pool.execute(
            INSERT_CREATED,
            [o.order_id for o in rows],
            [o.user_id for o in rows],
            [o.source for o in rows],
            [o.sale_id for o in rows],
            [o.sku for o in rows],
            [o.amount_cents for o in rows],
            [o.pay_before for o in rows],
        )

    async def settle_paid(self, order: OrderEvent) -> Settled:
        """order.paid: its locked coupon is used if the payment carried it, else released
        (the lock reached the order after it was paid for the full amount)."""
        async with self._db.transaction() as tx:
            first = await self._move(tx, order)
            row = await tx.conn.fetchrow(LOCKED_COUPON, order.order_id)
            if row is None:
                return Settled(first)
            if row["id"] == order.coupon_id:
                await tx.conn.execute(MARK_USED, row["id"])
                await self._db.announce(
                    tx,
                    [
                        coupon_used_event(
                            row["id"], row["user_id"], order.order_id, row["discount_cents"]
                        )
                    ],
                )
                return Settled(first, used=True)
            await self._release(tx, row["id"], row["user_id"], order.order_id)
            return Settled(first, released=True)

    async def cancel(self, order: OrderEvent) -> Settled:
        """order.cancelled: its locked coupon back to its holder; if it had been paid (a
        refund), the coupons it granted are revoked unless already spent."""
        async with self._db.transaction() as tx:
            first = await self._move(tx, order)
            row = await tx.conn.fetchrow(LOCKED_COUPON, order.order_id)
            released = row is not None
            if row is not None:
                await self._release(tx, row["id"], row["user_id"], order.order_id)
            revoked = await tx.conn.fetch(RECORD_REVOKED_MISSING, order.order_id)
            revoked += await tx.conn.fetch(REVOKE_GRANTED, order.order_id)
            if revoked:
                ids = [r["id"] for r in revoked]
                await tx.conn.execute(MARK_GRANTS_REVOKED, order.order_id, ids)
                await self._db.announce(
                    tx,
                    [coupon_revoked_event(r["id"], r["user_id"], order.order_id) for r in revoked],
                )
            # Counted once, by the event that cancelled the order.
            kept = await tx.conn.fetchval(KEPT_GRANTED, order.order_id) if first else 0
            return Settled(first, released=released, revoked=len(revoked), kept=kept)

    async def _move(self, tx: OutboxTx, order: OrderEvent) -> bool:
        """The read model to the event's state; whether it was not there yet."""
        if not _stored(order):
            return True
        before: str | None = await tx.conn.fetchval(LOCK_ORDER_STATE, order.order_id)
        await tx.conn.execute(
            UPSERT_SETTLED,
            order.order_id,
            order.user_id,
            order.source,
            order.sale_id,
            order.sku,
            order.amount_cents,
            order.state.value,
        )
        return before != order.state and before != OrderState.CANCELLED

    async def _release(
        self, tx: OutboxTx, coupon_id: str, user_id: str, order_id: uuid.UUID
    ) -> None:
        state = await tx.conn.fetchval(RELEASE, coupon_id)
        await self._db.announce(
            tx, [coupon_released_event(coupon_id, user_id, order_id, CouponState(state))]
        )

    # --- 下单返券 ---------------------------------------------------------------------

    async def rules_to_decide(self, order: OrderEvent) -> tuple[list[Rule], int]:
        """The active rules matching a paid order that are not decided for it yet, and how
        many matching ones are (a redelivered order.paid)."""
        async with self._pool.acquire() as conn:
            rules = await conn.fetch(MATCHING_RULES, trigger_of(order.source).value, order.sale_id)
            if not rules:
                return [], 0
            decided = {r["rule_id"] for r in await conn.fetch(DECIDED_RULES, order.order_id)}
        todo = [Rule(r["id"], r["template_id"]) for r in rules if r["id"] not in decided]
        return todo, len(rules) - len(todo)

    async def record_grant(self, order: OrderEvent, rule: Rule, decision: GrantDecision) -> None:
        """The decision for (order, rule), and the coupon it granted, in one transaction.
        A duplicate decision (Redis had it: this consumer died before its commit) records
        the grant only: its validity travels in the coupon.granted event to the record."""
        granted = decision.outcome is GrantOutcome.GRANTED
        async with self._db.transaction() as tx:
            await tx.conn.execute(
                INSERT_GRANT,
                order.order_id,
                rule.id,
                order.user_id,
                decision.outcome.value,
                decision.coupon_id if granted else None,
            )
            if granted and decision.at_ms is not None:
                assert decision.from_ms is not None and decision.until_ms is not None
                await tx.conn.execute(
                    INSERT_GRANTED_COUPON,
                    decision.coupon_id,
                    rule.template_id,
                    order.user_id,
                    order.order_id,
                    rule.id,
                    from_epoch_ms(decision.from_ms),
                    from_epoch_ms(decision.until_ms),
                    from_epoch_ms(decision.at_ms),
                )
