"""PostgreSQL adapter of the order service: orders and their transactional outbox."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import asyncpg

from services.common.audit import AuditEntry, AuditSql, record_audit
from services.common.errors import DomainError, NotFound
from services.common.events import Envelope
from services.common.pg_outbox import OutboxSql, insert_outbox
from services.common.topics import ORDERS
from services.order.coupons import CouponLock, LockResult, decide_coupon_lock
from services.order.domain import (
    GroupState,
    NewOrder,
    Order,
    OrderSearch,
    Payment,
    RefundState,
    SaleCancellation,
    SaleRef,
    State,
    must_mark_refund,
    order_cancelled_event,
    order_created_event,
    order_paid_event,
    payment_due_event,
    refund_requested_event,
)
from services.order.payments import (
    PaymentNotice,
    PaymentOutcome,
    decide_payment,
)

_ORDER_COLUMNS = (
    "id, reservation_id, activity_id, user_id, sku, quantity, unit_price_cents, amount_cents, "
    "state, cancel_reason, reserved_at, pay_before, created_at, paid_at, cancelled_at, "
    "source, group_id, group_state, discount_cents, coupon_id"
)
_RETURNING = "RETURNING " + ", ".join(f"o.{c.strip()}" for c in _ORDER_COLUMNS.split(","))
# One statement for the whole batch; a redelivered reservation hits the unique
# reservation_id and is skipped, and RETURNING names only the orders really created.
INSERT_ORDERS = """
INSERT INTO orders.orders
    (id, reservation_id, activity_id, user_id, sku, quantity, unit_price_cents, amount_cents,
     reserved_at, pay_before, source, group_id, group_state)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::int[],
                     $7::bigint[], $8::bigint[], $9::timestamptz[], $10::timestamptz[],
                     $11::text[], $12::text[], $13::text[])
ON CONFLICT (reservation_id) DO NOTHING
RETURNING id
"""
SELECT_ORDER = f"SELECT {_ORDER_COLUMNS} FROM orders.orders WHERE id = $1"
SELECT_USER_ORDERS = f"""
SELECT {_ORDER_COLUMNS} FROM orders.orders
WHERE user_id = $1 ORDER BY created_at DESC, id LIMIT $2
"""
LOCK_ORDER = f"SELECT {_ORDER_COLUMNS} FROM orders.orders WHERE id = $1 FOR UPDATE"
SELECT_PAYMENT = "SELECT order_id, outcome FROM orders.payments WHERE transaction_id = $1"
INSERT_PAYMENT = """
INSERT INTO orders.payments (transaction_id, order_id, amount_cents, outcome, refund_reason)
VALUES ($1, $2, $3, $4, $5)
"""
MARK_PAID = f"""
UPDATE orders.orders o SET state = 'paid', paid_at = $2, updated_at = now()
WHERE o.id = $1 AND o.state = 'pending_payment'
{_RETURNING}
"""
CANCEL_BY_USER = f"""
UPDATE orders.orders o
SET state = 'cancelled', cancel_reason = 'user', cancelled_at = now(), updated_at = now()
WHERE o.id = $1 AND o.user_id = $2 AND o.state = 'pending_payment'
  AND o.group_state IS DISTINCT FROM 'open'
{_RETURNING}
"""
# SKIP LOCKED: several replicas sweep in parallel without waiting on each other, and an
# order locked by a payment in progress is left to that payment (exactly one wins).
CANCEL_EXPIRED = f"""
WITH due AS (
    SELECT id FROM orders.orders
    WHERE state = 'pending_payment' AND pay_before <= now()
      -- An open group is settled by the groupbuy sweeper (its deadline comes first).
      AND group_state IS DISTINCT FROM 'open'
    ORDER BY pay_before LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE orders.orders o
SET state = 'cancelled', cancel_reason = 'timeout', cancelled_at = now(), updated_at = now()
FROM due WHERE o.id = due.id
{_RETURNING}
"""
# Remind once, lead seconds before the deadline, and only orders whose payment window was
# longer than the lead (a reminder right after ordering would be noise).
MARK_REMINDED = f"""
WITH due AS (
    SELECT id FROM orders.orders
    WHERE state = 'pending_payment' AND reminder_sent_at IS NULL
      AND pay_before > now() AND pay_before <= now() + make_interval(secs => $2)
      AND reserved_at < pay_before - make_interval(secs => $2)
    ORDER BY pay_before LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE orders.orders o SET reminder_sent_at = now()
FROM due WHERE o.id = due.id
{_RETURNING}
"""
OUTBOX = OutboxSql.for_schema("orders")
# coupon.locked, decided on the row LOCK_ORDER holds: the conditions are repeated so that
# the statement alone can never discount an order that is not waiting for its payment.
APPLY_COUPON = f"""
UPDATE orders.orders o
SET coupon_id = $2, discount_cents = $3, amount_cents = $4, updated_at = now()
WHERE o.id = $1 AND o.state = 'pending_payment' AND o.coupon_id IS NULL
{_RETURNING}
"""
# group.completed: the group's orders are ready to fulfil (once paid).
COMPLETE_GROUP = """
UPDATE orders.orders SET group_state = 'completed', updated_at = now()
WHERE group_id = $1 AND group_state = 'open'
"""
# group.failed: unpaid orders are cancelled; paid ones are cancelled too (the trigger
# allows paid -> cancelled for group_failed only) and their payment refunded.
FAIL_GROUP_ORDERS = f"""
UPDATE orders.orders o
SET state = 'cancelled', cancel_reason = 'group_failed', cancelled_at = now(),
    group_state = 'failed', updated_at = now()
WHERE o.group_id = $1 AND o.state = ANY($2::text[])
{_RETURNING}
"""
FAIL_GROUP_REST = """
UPDATE orders.orders SET group_state = 'failed', updated_at = now()
WHERE group_id = $1 AND group_state IS DISTINCT FROM 'failed'
"""
# seckill.cancelled, in one transaction: the sale recorded (the upsert locks its row, so
# a redelivery racing the first delivery waits for it) and its unpaid orders cancelled.
RECORD_CANCELLED_SALE = """
INSERT INTO orders.cancelled_sales (source, sale_id, cancelled_at) VALUES ($1, $2, $3)
ON CONFLICT (source, sale_id) DO UPDATE SET cancelled_at = orders.cancelled_sales.cancelled_at
"""
CANCEL_SALE_ORDERS = f"""
UPDATE orders.orders o
SET state = 'cancelled', cancel_reason = 'sale_cancelled', cancelled_at = now(),
    updated_at = now()
WHERE o.source = $1 AND o.activity_id = $2 AND o.state = 'pending_payment'
{_RETURNING}
"""
# In the creation transaction: orders of a sale already cancelled are cancelled at once
# (their reservation's event came after the cancellation, from another partition).
CANCEL_NEW_OF_CANCELLED_SALES = f"""
UPDATE orders.orders o
SET state = 'cancelled', cancel_reason = 'sale_cancelled', cancelled_at = now(),
    updated_at = now()
FROM orders.cancelled_sales c
WHERE o.id = ANY($1::uuid[]) AND o.state = 'pending_payment'
  AND c.source = o.source AND c.sale_id = o.activity_id
{_RETURNING}
"""
# The sweeper's net under the two above: a creation and a cancellation committed
# concurrently (READ COMMITTED) do not see each other's rows, and the order stays unpaid.
# Only recently cancelled sales can have such orders (both transactions are short).
CANCEL_PENDING_OF_CANCELLED_SALES = f"""
WITH due AS (
    SELECT o.id FROM orders.cancelled_sales c
    JOIN orders.orders o ON o.source = c.source AND o.activity_id = c.sale_id
    WHERE c.recorded_at > now() - make_interval(secs => $2)
      AND o.state = 'pending_payment'
    LIMIT $1
    FOR UPDATE OF o SKIP LOCKED
)
UPDATE orders.orders o
SET state = 'cancelled', cancel_reason = 'sale_cancelled', cancelled_at = now(),
    updated_at = now()
FROM due WHERE o.id = due.id
{_RETURNING}
"""
APPLIED_PAYMENTS = """
SELECT order_id, transaction_id, amount_cents FROM orders.payments
WHERE order_id = ANY($1::uuid[]) AND outcome = 'applied'
"""


# --- the merchant console ----------------------------------------------------------------
AUDIT = AuditSql.for_schema("orders")
_PAYMENT_COLUMNS = (
    "transaction_id, order_id, amount_cents, outcome, refund_reason, received_at, "
    "refunded_at, refund_id, refunded_by"
)
# Search filters, each a constant with its parameter's place filled in; the values only
# ever travel as parameters.
_SEARCH_FILTERS = {
    "order_id": "id = ${}",
    "user_id": "user_id = ${}",
    "source": "source = ${}",
    "sale_id": "activity_id = ${}",
    "state": "state = ${}",
}
SEARCH_ORDERS = """
SELECT {columns} FROM orders.orders{where}
ORDER BY created_at DESC, id LIMIT ${limit} OFFSET ${offset}
"""
COUNT_ORDERS = "SELECT count(*) FROM orders.orders{where}"
ORDER_PAYMENTS = f"""
SELECT {_PAYMENT_COLUMNS} FROM orders.payments
WHERE order_id = $1 ORDER BY received_at, transaction_id
"""
LOCK_PAYMENT = (
    f"SELECT {_PAYMENT_COLUMNS} FROM orders.payments WHERE transaction_id = $1 FOR UPDATE"
)
MARK_REFUNDED = f"""
UPDATE orders.payments SET refunded_at = now(), refund_id = $2, refunded_by = $3
WHERE transaction_id = $1 AND refunded_at IS NULL
RETURNING {_PAYMENT_COLUMNS}
"""
SALE_COUNTS = """
SELECT state, count(*) AS n FROM orders.orders
WHERE source = $1 AND activity_id = $2 GROUP BY state
"""


def search_sql(search: OrderSearch) -> tuple[str, str, list[object]]:
    """(list query, count query, parameters) of a search: only the filters given."""
    values = {
        "order_id": search.order_id,
        "user_id": search.user_id,
        "source": search.source,
        "sale_id": search.sale_id,
        "state": search.state,
    }
    args: list[object] = []
    conditions = []
    for name, value in values.items():
        if value is not None:
            args.append(value)
            conditions.append(_SEARCH_FILTERS[name].format(len(args)))
    where = " WHERE " + " AND ".join(conditions) if conditions else ""
    listing = SEARCH_ORDERS.format(
        columns=_ORDER_COLUMNS, where=where, limit=len(args) + 1, offset=len(args) + 2
    )
    return listing, COUNT_ORDERS.format(where=where), args


@dataclass
class _Tx:
    conn: asyncpg.Connection
    announced: bool = False


class OrderRepository:
    def __init__(
        self,
        pool: asyncpg.Pool,
        topic_prefix: str = "",
        on_announced: Callable[[], None] = lambda: None,
    ) -> None:
        self._pool = pool
        self._orders_topic = f"{topic_prefix}{ORDERS}"
        # Called after a commit that wrote outbox events (wakes the outbox relay).
        self._on_announced = on_announced

    async def create_orders(self, orders: Sequence[NewOrder]) -> list[NewOrder]:
        """Insert the orders not yet there, with their order.created events, in one
        transaction. Returns the orders created by this call."""
        unique = list({o.reservation_id: o for o in orders}.values())
        columns = list(
            zip(
                *(
                    (
                        o.id,
                        o.reservation_id,
                        o.activity_id,
                        o.user_id,
                        o.sku,
                        o.quantity,
                        o.unit_price_cents,
                        o.amount_cents,
                        o.reserved_at,
                        o.pay_before,
                        o.source,
                        o.group_id,
                        o.group_state,
                    )
                    for o in unique
                ),
                strict=True,
            )
        )
        async with self._transaction() as tx:
            conn = tx.conn
            created_ids = {r["id"] for r in await conn.fetch(INSERT_ORDERS, *map(list, columns))}
            created = [o for o in unique if o.id in created_ids]
            events = [order_created_event(o) for o in created]
            if created:
                rows = await conn.fetch(CANCEL_NEW_OF_CANCELLED_SALES, [o.id for o in created])
                # After its order.created: the same key, so consumers see them in order.
                events += [order_cancelled_event(Order(**dict(r))) for r in rows]
            await self._announce(tx, events)
        return created

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[_Tx]:
        async with self._pool.acquire() as conn:
            tx = _Tx(conn)
            async with conn.transaction():
                yield tx
        if tx.announced:
            self._on_announced()

    async def _announce(self, tx: _Tx, events: list[Envelope]) -> None:
        """Write events to the outbox, in the caller's transaction."""
        if events:
            tx.announced = True
            await insert_outbox(tx.conn, OUTBOX, self._orders_topic, events)

    async def apply_payment(self, notice: PaymentNotice) -> tuple[PaymentOutcome, bool]:
        """Record a payment notification once: (outcome, replayed). The order row is locked
        first, so a payment racing the timeout sweeper or a cancellation has one winner."""
        async with self._transaction() as tx:
            conn = tx.conn
            row = await conn.fetchrow(LOCK_ORDER, notice.order_id)
            if row is None:
                raise NotFound("order")
            order = Order(**dict(row))
            seen = await conn.fetchrow(SELECT_PAYMENT, notice.transaction_id)
            if seen is not None:
                if seen["order_id"] != order.id:
                    raise DomainError(
                        409, "transaction_reused", "this transaction id paid another order"
                    )
                stored = (
                    PaymentOutcome.PAID
                    if seen["outcome"] == "applied"
                    else (PaymentOutcome.REFUND_REQUESTED)
                )
                return stored, True
            decision = decide_payment(order, notice)
            if decision.outcome is PaymentOutcome.PAID:
                paid = Order(**dict(await conn.fetchrow(MARK_PAID, order.id, notice.paid_at)))
                await conn.execute(
                    INSERT_PAYMENT,
                    notice.transaction_id,
                    order.id,
                    notice.amount_cents,
                    "applied",
                    None,
                )
                await self._announce(
                    tx, [order_paid_event(paid, notice.transaction_id, notice.paid_at)]
                )
            else:
                assert decision.refund_reason is not None
                await conn.execute(
                    INSERT_PAYMENT,
                    notice.transaction_id,
                    order.id,
                    notice.amount_cents,
                    "refund_requested",
                    decision.refund_reason.value,
                )
                await self._announce(
                    tx,
                    [
                        refund_requested_event(
                            order,
                            notice.transaction_id,
                            notice.amount_cents,
                            decision.refund_reason.value,
                        )
                    ],
                )
            return decision.outcome, False

    async def apply_coupon_lock(self, lock: CouponLock) -> tuple[LockResult, Order | None]:
        """Apply a coupon.locked to its order, or not (docs/coupons.md, "Redemption"):
        (what it did, the order as it is now). The order row is locked first, like a
        payment's, so a lock and a payment racing for one order have one winner: the
        payment that comes second is checked against the amount the first left."""
        async with self._transaction() as tx:
            conn = tx.conn
            row = await conn.fetchrow(LOCK_ORDER, lock.order_id)
            order = None if row is None else Order(**dict(row))
            result = decide_coupon_lock(order, lock)
            if result is LockResult.APPLIED:
                row = await conn.fetchrow(
                    APPLY_COUPON,
                    lock.order_id,
                    lock.coupon_id,
                    lock.discount_cents,
                    lock.amount_due_cents,
                )
                order = Order(**dict(row))
        return result, order

    async def cancel_by_user(self, order_id: uuid.UUID, user_id: str) -> Order:
        async with self._transaction() as tx:
            conn = tx.conn
            row = await conn.fetchrow(CANCEL_BY_USER, order_id, user_id)
            if row is not None:
                order = Order(**dict(row))
                await self._announce(tx, [order_cancelled_event(order)])
                return order
            current = await conn.fetchrow(SELECT_ORDER, order_id)
        if current is None or current["user_id"] != user_id:
            raise NotFound("order")
        order = Order(**dict(current))
        if order.state == State.CANCELLED:
            return order  # cancelling twice is not an error: the caller's wish holds
        if order.state == State.PENDING_PAYMENT and order.group_state == GroupState.OPEN:
            raise DomainError(
                409, "group_open", "a group order can be cancelled once its group completed"
            )
        raise DomainError(409, "not_cancellable", f"the order is {order.state}")

    async def complete_group(self, group_id: str) -> int:
        """Mark a completed group's orders ready to fulfil; idempotent."""
        status = await self._pool.execute(COMPLETE_GROUP, group_id)
        return int(status.split()[-1])

    async def fail_group(self, group_id: str) -> tuple[list[Order], list[Order]]:
        """Cancel a failed group's orders (reason group_failed), in one transaction with
        their order.cancelled events, and order.refund_requested for the paid ones.
        Idempotent: a redelivered group.failed finds nothing left to cancel.
        Returns (unpaid orders cancelled, paid orders cancelled and refunded)."""
        async with self._transaction() as tx:
            conn = tx.conn
            rows = await conn.fetch(FAIL_GROUP_ORDERS, group_id, ["pending_payment", "paid"])
            # RETURNING shows the new state; paid_at tells which ones had been paid.
            cancelled = [Order(**dict(r)) for r in rows]
            paid = [o for o in cancelled if o.paid_at is not None]
            unpaid = [o for o in cancelled if o.paid_at is None]
            await conn.execute(FAIL_GROUP_REST, group_id)
            events = [order_cancelled_event(o) for o in cancelled]
            if paid:
                payments = await conn.fetch(APPLIED_PAYMENTS, [o.id for o in paid])
                by_order = {p["order_id"]: p for p in payments}
                for order in paid:
                    payment = by_order[order.id]
                    events.append(
                        refund_requested_event(
                            order,
                            payment["transaction_id"],
                            payment["amount_cents"],
                            "group_failed",
                        )
                    )
            await self._announce(tx, events)
        return unpaid, paid

    async def cancel_sale(self, cancellation: SaleCancellation) -> list[Order]:
        """Record a cancelled sale and cancel its unpaid orders (reason sale_cancelled)
        with their order.cancelled events, in one transaction. Paid orders stay paid.
        Idempotent: a redelivery finds nothing left to cancel."""
        async with self._transaction() as tx:
            conn = tx.conn
            await conn.execute(
                RECORD_CANCELLED_SALE,
                cancellation.source,
                cancellation.sale_id,
                cancellation.cancelled_at,
            )
            rows = await conn.fetch(CANCEL_SALE_ORDERS, cancellation.source, cancellation.sale_id)
            orders = [Order(**dict(r)) for r in rows]
            await self._announce(tx, [order_cancelled_event(o) for o in orders])
        return orders

    async def cancel_pending_of_cancelled_sales(
        self, batch: int, window_seconds: float
    ) -> list[Order]:
        """Cancel up to batch unpaid orders of sales cancelled within window_seconds that
        a concurrent creation left unpaid (reason sale_cancelled)."""
        async with self._transaction() as tx:
            conn = tx.conn
            rows = await conn.fetch(CANCEL_PENDING_OF_CANCELLED_SALES, batch, window_seconds)
            orders = [Order(**dict(r)) for r in rows]
            await self._announce(tx, [order_cancelled_event(o) for o in orders])
        return orders

    async def cancel_expired(self, batch: int) -> list[Order]:
        """Cancel up to batch unpaid orders past their deadline (reason timeout)."""
        async with self._transaction() as tx:
            conn = tx.conn
            orders = [Order(**dict(r)) for r in await conn.fetch(CANCEL_EXPIRED, batch)]
            await self._announce(tx, [order_cancelled_event(o) for o in orders])
        return orders

    async def remind_due(self, batch: int, lead_seconds: float) -> list[Order]:
        """Emit order.payment_due once for orders whose deadline is within lead_seconds."""
        async with self._transaction() as tx:
            conn = tx.conn
            orders = [
                Order(**dict(r)) for r in await conn.fetch(MARK_REMINDED, batch, lead_seconds)
            ]
            await self._announce(tx, [payment_due_event(o) for o in orders])
        return orders

    async def get(self, order_id: uuid.UUID) -> Order | None:
        row = await self._pool.fetchrow(SELECT_ORDER, order_id)
        return None if row is None else Order(**dict(row))

    async def list_for_user(self, user_id: str, limit: int) -> list[Order]:
        return [
            Order(**dict(r)) for r in await self._pool.fetch(SELECT_USER_ORDERS, user_id, limit)
        ]

    async def search(self, search: OrderSearch) -> tuple[list[Order], int]:
        """One page of the orders matching the search, newest first, and how many match."""
        listing, counting, args = search_sql(search)
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(listing, *args, search.page.limit, search.page.offset)
            total = await conn.fetchval(counting, *args)
        return [Order(**dict(r)) for r in rows], int(total)

    async def with_payments(self, order_id: uuid.UUID) -> tuple[Order, list[Payment]] | None:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(SELECT_ORDER, order_id)
            if row is None:
                return None
            payments = await conn.fetch(ORDER_PAYMENTS, order_id)
        return Order(**dict(row)), [Payment(**dict(p)) for p in payments]

    async def mark_refunded(
        self, transaction_id: str, refund_id: str, actor: str
    ) -> tuple[Payment, Order]:
        """Mark a payment whose refund was requested as refunded by the provider, with the
        provider's refund reference, and audit it; the same marking again changes nothing.
        404 for an unknown transaction, 409 refund_not_requested / already_refunded."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(LOCK_PAYMENT, transaction_id)
            if row is None:
                raise NotFound("payment")
            payment = Payment(**dict(row))
            order = Order(**dict(await conn.fetchrow(SELECT_ORDER, payment.order_id)))
            if not must_mark_refund(payment, order, refund_id):
                return payment, order
            marked = Payment(
                **dict(await conn.fetchrow(MARK_REFUNDED, transaction_id, refund_id, actor))
            )
            await record_audit(
                conn,
                AUDIT,
                AuditEntry(
                    actor=actor,
                    action="payment.refund",
                    target="payment",
                    target_id=transaction_id,
                    before={"refund_state": RefundState.REQUESTED.value, "refund_id": None},
                    after={"refund_state": RefundState.REFUNDED.value, "refund_id": refund_id},
                ),
            )
        return marked, order

    async def sale_counts(self, sale: SaleRef) -> dict[str, int]:
        rows = await self._pool.fetch(SALE_COUNTS, sale.source, sale.sale_id)
        return {r["state"]: int(r["n"]) for r in rows}

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool
