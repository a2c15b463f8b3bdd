"""PostgreSQL adapter for flash-sale activities (the durable record)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from services.seckill.domain import Activity, NewActivity

_COLUMNS = (
    "id, sku, title, price_cents, stock, starts_at, ends_at, per_user_limit, "
    "payment_timeout_seconds"
)
INSERT_ACTIVITY = f"""
INSERT INTO seckill.activities
    (sku, title, price_cents, stock, starts_at, ends_at, per_user_limit, payment_timeout_seconds)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING {_COLUMNS}
"""
SELECT_ACTIVITY = f"SELECT {_COLUMNS} FROM seckill.activities WHERE id = $1"
SELECT_RECENT = f"""
SELECT {_COLUMNS} FROM seckill.activities
WHERE ends_at > $1 ORDER BY starts_at, id LIMIT $2
"""
SELECT_UNWARMED = f"""
SELECT {_COLUMNS} FROM seckill.activities WHERE warmed_at IS NULL AND ends_at > now()
"""
SELECT_WARMED_LIVE = f"""
SELECT {_COLUMNS} FROM seckill.activities WHERE warmed_at IS NOT NULL AND ends_at > now()
"""
MARK_WARMED = "UPDATE seckill.activities SET warmed_at = now() WHERE id = $1 AND warmed_at IS NULL"


def _activity(row: asyncpg.Record) -> Activity:
    return Activity(**dict(row))


class ActivityRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, new: NewActivity) -> Activity:
        row = await self._pool.fetchrow(
            INSERT_ACTIVITY,
            new.sku,
            new.title,
            new.price_cents,
            new.stock,
            new.starts_at,
            new.ends_at,
            new.per_user_limit,
            new.payment_timeout_seconds,
        )
        return _activity(row)

    async def get(self, activity_id: int) -> Activity | None:
        row = await self._pool.fetchrow(SELECT_ACTIVITY, activity_id)
        return None if row is None else _activity(row)

    async def list_not_ended(self, now: datetime, limit: int) -> list[Activity]:
        return [_activity(r) for r in await self._pool.fetch(SELECT_RECENT, now, limit)]

    async def unwarmed(self) -> list[Activity]:
        return [_activity(r) for r in await self._pool.fetch(SELECT_UNWARMED)]

    async def warmed_live(self) -> list[Activity]:
        return [_activity(r) for r in await self._pool.fetch(SELECT_WARMED_LIVE)]

    async def mark_warmed(self, activity_id: int) -> None:
        await self._pool.execute(MARK_WARMED, activity_id)
