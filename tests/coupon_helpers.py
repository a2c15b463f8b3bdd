"""Helpers of the coupon lifecycle tests: templates, coupons and order events made the
way the services make them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from services.common.events import (
    ORDER_CANCELLED,
    ORDER_CREATED,
    ORDER_PAID,
    Envelope,
    event_id_for,
    rfc3339,
)
from services.common.kafka import Incoming
from services.common.stream_outbox import warm_sale
from services.common.validation import new_owned_id
from services.coupon.announce import coupon_outbox
from services.coupon.grant_store import GrantStore
from services.coupon.keys import TEMPLATES, template_keys
from services.coupon.lifecycle import OrdersHandler
from services.coupon.lifecycle_metrics import LifecycleMetrics
from services.coupon.lifecycle_repository import LifecycleRepository

TEMPLATE_DEFAULTS: dict[str, Any] = {
    "name": "10 off 100",
    "kind": "amount_off",
    "threshold_cents": 10_000,
    "amount_off_cents": 1_000,
    "percent_off": None,
    "max_discount_cents": None,
    "validity": "relative",
    "valid_from": None,
    "valid_until": None,
    "valid_days": 7,
    "quantity": 100,
    "per_user_limit": 1,
    "claimable": False,
    "claim_starts_at": None,
    "claim_ends_at": None,
    "scope": "any",
    "scope_ids": [],
    "usable_on_flash_sales": True,
    "created_by": "merchant:1",
}


def _ms(moment: datetime | None) -> int:
    return 0 if moment is None else int(moment.timestamp() * 1000)


async def create_template(
    db: asyncpg.Connection, redis: Redis | None = None, **overrides: Any
) -> int:
    """A template row, loaded into Redis as the service's warm-up loads it (meta, stock,
    outbox stream and its relay group) when a Redis client is given."""
    row = {**TEMPLATE_DEFAULTS, **overrides}
    columns = list(row)
    template_id: int = await db.fetchval(
        f"INSERT INTO coupon.templates ({', '.join(columns)}) "
        f"VALUES ({', '.join(f'${i + 1}' for i in range(len(columns)))}) RETURNING id",
        *row.values(),
    )
    if redis is not None:
        await warm_template(redis, template_id, row)
    return template_id


async def warm_template(redis: Redis, template_id: int, row: dict[str, Any]) -> None:
    keys = template_keys(template_id)
    await warm_sale(
        redis,
        meta_key=keys.meta,
        meta={
            "claimable": "1" if row["claimable"] else "0",
            "starts_ms": _ms(row["claim_starts_at"]),
            "ends_ms": _ms(row["claim_ends_at"]),
            "limit": row["per_user_limit"],
            "validity": row["validity"],
            "from_ms": _ms(row["valid_from"]),
            "until_ms": _ms(row["valid_until"]),
            "days": row["valid_days"] or 0,
            "total": row["quantity"],
            "closed": "",
        },
        stock_key=keys.stock,
        stock=row["quantity"],
        outbox_key=keys.outbox,
        registry_key=TEMPLATES,
        sale_id=template_id,
    )


async def issue_coupon(
    db: asyncpg.Connection,
    template_id: int,
    user_id: str,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    state: str = "available",
) -> str:
    """A claimed coupon's row, as the record consumer writes it."""
    now = datetime.now(UTC)
    coupon_id = new_owned_id(template_id)
    await db.execute(
        "INSERT INTO coupon.coupons (id, template_id, user_id, origin, state, valid_from,"
        " valid_until, issued_at) VALUES ($1, $2, $3, 'claim', $4, $5, $6, $7)",
        coupon_id,
        template_id,
        user_id,
        state,
        valid_from or now - timedelta(hours=1),
        valid_until or now + timedelta(days=7),
        now,
    )
    return coupon_id


def order_event(
    kind: str,
    order_id: uuid.UUID,
    user_id: str,
    *,
    amount_cents: int = 20_000,
    source: str = "seckill",
    sale_id: int = 1,
    sku: str = "sku-1",
    coupon_id: str | None = None,
    discount_cents: int | None = None,
) -> Envelope:
    """An order event shaped as the order service writes it: flash-sale orders have no
    `source`; an order with a coupon carries coupon_id, discount_cents and the amount due."""
    data: dict[str, Any] = {
        "order_id": str(order_id),
        "reservation_id": f"{sale_id}-{order_id.hex}",
        "activity_id": sale_id,
        "user_id": user_id,
        "sku": sku,
        "quantity": 1,
        "amount_cents": amount_cents,
    }
    if source != "seckill":
        data |= {"source": source, "group_id": f"{sale_id}-g"}
    if coupon_id is not None:
        data |= {"coupon_id": coupon_id, "discount_cents": discount_cents}
    now = rfc3339(datetime.now(UTC))
    if kind == ORDER_CREATED:
        data["pay_before"] = rfc3339(datetime.now(UTC) + timedelta(minutes=15))
    elif kind == ORDER_PAID:
        data |= {"transaction_id": f"tx-{order_id.hex}", "paid_at": now}
    elif kind == ORDER_CANCELLED:
        data |= {"reason": "user", "cancelled_at": now}
    return Envelope(id=event_id_for(kind, str(order_id)), type=kind, key=str(order_id), data=data)


def incoming(events: Sequence[Envelope]) -> list[Incoming]:
    """Consumed records of these events, for calling a handler directly."""
    from aiokafka import ConsumerRecord

    return [
        Incoming(
            ConsumerRecord(
                topic="orders",
                partition=0,
                offset=i,
                timestamp=0,
                timestamp_type=0,
                key=e.key.encode(),
                value=e.encode(),
                checksum=None,
                serialized_key_size=0,
                serialized_value_size=0,
                headers=(),
            ),
            e,
        )
        for i, e in enumerate(events)
    ]


class Lifecycle:
    """The orders consumer's handler and what it writes through, on a pool."""

    def __init__(self, pool: asyncpg.Pool, redis: Redis, topic_prefix: str = "") -> None:
        self.registry = CollectorRegistry()
        self.metrics = LifecycleMetrics(self.registry)
        self.announcer = coupon_outbox(pool, topic_prefix)
        self.repository = LifecycleRepository(self.announcer)
        self.handler = OrdersHandler(self.repository, GrantStore(redis), self.metrics)

    async def deliver(self, *events: Envelope) -> None:
        await self.handler(incoming(events))

    def count(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


async def outbox_events(db: asyncpg.Connection, kind: str | None = None) -> list[Envelope]:
    """The coupon PostgreSQL outbox's events, oldest first (of one type if given)."""
    rows = await db.fetch("SELECT payload FROM coupon.outbox ORDER BY id")
    events = [Envelope.decode(r["payload"]) for r in rows]
    return [e for e in events if kind is None or e.type == kind]
