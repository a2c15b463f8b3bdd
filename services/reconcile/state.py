"""Reads an activity's two sides for reconciliation: its state in Redis (the keys of
services/seckill/keys.py) and its record in PostgreSQL (the seckill and orders schemas).
An operator's tool that stands across the services on purpose; it writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from redis.asyncio import Redis

from services.common.events import from_epoch_ms
from services.reconcile.domain import ActivityOrder, ReservationRecord
from services.seckill.keys import activity_keys

RECENT_ACTIVITIES = """
SELECT id, stock FROM seckill.activities
WHERE warmed_at IS NOT NULL AND ends_at > now() - make_interval(secs => $1)
ORDER BY id
"""
ACTIVITY_ORDERS = """
SELECT reservation_id, user_id, quantity, state, cancel_reason, cancelled_at, reserved_at,
       pay_before
FROM orders.orders
WHERE activity_id = $1 AND source = 'seckill'
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def recent_activities(pool: asyncpg.Pool, lookback_seconds: int) -> list[tuple[int, int]]:
    """(activity id, stock) of the activities to reconcile: warmed into Redis, not ended
    longer ago than the lookback."""
    return [(r["id"], r["stock"]) for r in await pool.fetch(RECENT_ACTIVITIES, lookback_seconds)]


# --- seckill --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActivityState:
    """An activity in Redis, read in one transaction (one consistent snapshot)."""

    present: bool  # its settings and stock exist
    remaining: int
    records: dict[str, dict[str, Any]]  # reservation id -> decoded record
    in_outbox: set[str]  # reservation ids with an unpublished outbox entry
    price: str
    sku: str

    def reservations(self) -> dict[str, ReservationRecord]:
        return {
            rid: ReservationRecord(
                rid, r["user"], int(r["qty"]), r["state"], from_epoch_ms(int(r["at"]))
            )
            for rid, r in self.records.items()
        }


async def activity_state(redis: Redis, activity_id: int) -> ActivityState:
    keys = activity_keys(activity_id)
    pipe = redis.pipeline(transaction=True)
    pipe.hmget(keys.meta, "price", "sku")
    pipe.get(keys.stock)
    pipe.hgetall(keys.reservations)
    pipe.xrange(keys.outbox)
    (price, sku), stock, raw, entries = await pipe.execute()
    return ActivityState(
        present=price is not None and stock is not None,
        remaining=int(stock or 0),
        records={_text(k): orjson.loads(v) for k, v in raw.items()},
        in_outbox={_text(f[b"rid"]) for _, f in entries if f and b"rid" in f},
        price=_text(price or b""),
        sku=_text(sku or b""),
    )


async def activity_orders(pool: asyncpg.Pool, activity_id: int) -> list[ActivityOrder]:
    return [
        ActivityOrder(
            reservation_id=r["reservation_id"],
            user_id=r["user_id"],
            quantity=r["quantity"],
            state=r["state"],
            cancel_reason=r["cancel_reason"],
            cancelled_at=r["cancelled_at"],
            reserved_at=r["reserved_at"],
            pay_before=r["pay_before"],
        )
        for r in await pool.fetch(ACTIVITY_ORDERS, activity_id)
    ]
