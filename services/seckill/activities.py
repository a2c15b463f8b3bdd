"""PostgreSQL adapter for flash-sale activities (the durable record) and their audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from services.common.audit import AuditEntry, AuditSql, audit_trail, record_audit
from services.seckill.domain import Activity, NewActivity, created_view

AUDIT = AuditSql.for_schema("seckill")
AUDIT_TARGET = "activity"

_COLUMNS = (
    "id, sku, title, price_cents, stock, starts_at, ends_at, per_user_limit, "
    "payment_timeout_seconds, ended_early_at, cancelled_at, created_at, warmed_at"
)
INSERT_ACTIVITY = f"""
INSERT INTO seckill.activities
    (sku, title, price_cents, stock, starts_at, ends_at, per_user_limit, payment_timeout_seconds)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING {_COLUMNS}
"""
SELECT_ACTIVITY = f"SELECT {_COLUMNS} FROM seckill.activities WHERE id = $1"
LOCK_ACTIVITY = f"SELECT {_COLUMNS} FROM seckill.activities WHERE id = $1 FOR UPDATE"
# The shoppers' list: not ended (early or on time), not cancelled.
SELECT_RECENT = f"""
SELECT {_COLUMNS} FROM seckill.activities
WHERE ends_at > $1 AND ended_early_at IS NULL AND cancelled_at IS NULL
ORDER BY starts_at, id LIMIT $2
"""
SELECT_UNWARMED = f"""
SELECT {_COLUMNS} FROM seckill.activities WHERE warmed_at IS NULL AND ends_at > now()
"""
SELECT_WARMED_LIVE = f"""
SELECT {_COLUMNS} FROM seckill.activities WHERE warmed_at IS NOT NULL AND ends_at > now()
"""
MARK_WARMED = "UPDATE seckill.activities SET warmed_at = now() WHERE id = $1 AND warmed_at IS NULL"

# domain.sale_state in SQL, so the admin list filters and counts in the database; $2 is
# the caller's clock, the one sale_state is given for the rows' own state.
_STATE = """CASE
    WHEN cancelled_at IS NOT NULL THEN 'cancelled'
    WHEN ended_early_at IS NOT NULL OR ends_at <= $2 THEN 'ended'
    WHEN starts_at > $2 THEN 'upcoming'
    ELSE 'live' END"""
ADMIN_LIST = f"""
SELECT {_COLUMNS} FROM seckill.activities
WHERE $1::text IS NULL OR {_STATE} = $1
ORDER BY starts_at DESC, id DESC LIMIT $3 OFFSET $4
"""
ADMIN_COUNT = f"SELECT count(*) FROM seckill.activities WHERE $1::text IS NULL OR {_STATE} = $1"

UPDATE_EDITED = """
UPDATE seckill.activities
SET title = $2, price_cents = $3, stock = $4, starts_at = $5, ends_at = $6,
    per_user_limit = $7, payment_timeout_seconds = $8, updated_at = now()
WHERE id = $1
"""
UPDATE_STOCK = "UPDATE seckill.activities SET stock = $2, updated_at = now() WHERE id = $1"
MARK_ENDED_EARLY = """
UPDATE seckill.activities SET ended_early_at = $2, updated_at = now() WHERE id = $1
"""
MARK_CANCELLED = "UPDATE seckill.activities SET cancelled_at = $2, updated_at = now() WHERE id = $1"


def _activity(row: asyncpg.Record) -> Activity:
    return Activity(**dict(row))


class LockedActivity:
    """One activity's row, locked FOR UPDATE inside an open transaction: the admin
    changes serialize on it, and what they write (the row, its audit entry) commits or
    rolls back as one."""

    def __init__(self, conn: asyncpg.Connection, activity: Activity) -> None:
        self._conn = conn
        self.activity = activity

    async def save_edit(self, edited: Activity) -> None:
        await self._conn.execute(
            UPDATE_EDITED,
            edited.id,
            edited.title,
            edited.price_cents,
            edited.stock,
            edited.starts_at,
            edited.ends_at,
            edited.per_user_limit,
            edited.payment_timeout_seconds,
        )

    async def save_stock(self, stock: int) -> None:
        await self._conn.execute(UPDATE_STOCK, self.activity.id, stock)

    async def mark_ended_early(self, at: datetime) -> None:
        await self._conn.execute(MARK_ENDED_EARLY, self.activity.id, at)

    async def mark_cancelled(self, at: datetime) -> None:
        await self._conn.execute(MARK_CANCELLED, self.activity.id, at)

    async def audit(
        self,
        actor: str,
        action: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
    ) -> None:
        entry = AuditEntry(actor, action, AUDIT_TARGET, str(self.activity.id), before, after)
        await record_audit(self._conn, AUDIT, entry)


class ActivityRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, new: NewActivity, actor: str) -> Activity:
        """Insert the activity and its activity.create audit entry, in one transaction."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
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
            activity = _activity(row)
            await LockedActivity(conn, activity).audit(
                actor, "activity.create", None, created_view(activity)
            )
        return activity

    @asynccontextmanager
    async def locked(self, activity_id: int) -> AsyncIterator[LockedActivity | None]:
        """The activity's row locked until the block ends: COMMIT when it ends normally,
        ROLLBACK when it raises. None: no such activity."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(LOCK_ACTIVITY, activity_id)
            yield None if row is None else LockedActivity(conn, _activity(row))

    async def get(self, activity_id: int) -> Activity | None:
        row = await self._pool.fetchrow(SELECT_ACTIVITY, activity_id)
        return None if row is None else _activity(row)

    async def list_not_ended(self, now: datetime, limit: int) -> list[Activity]:
        return [_activity(r) for r in await self._pool.fetch(SELECT_RECENT, now, limit)]

    async def admin_list(
        self, state: str | None, now: datetime, limit: int, offset: int
    ) -> tuple[list[Activity], int]:
        """A page of activities in `state` (None: all), newest start first, and how many
        there are in all."""
        rows = await self._pool.fetch(ADMIN_LIST, state, now, limit, offset)
        total = await self._pool.fetchval(ADMIN_COUNT, state, now)
        return [_activity(r) for r in rows], int(total)

    async def audit_trail(self, activity_id: int) -> list[dict[str, Any]]:
        return await audit_trail(self._pool, AUDIT, AUDIT_TARGET, str(activity_id))

    async def unwarmed(self) -> list[Activity]:
        return [_activity(r) for r in await self._pool.fetch(SELECT_UNWARMED)]

    async def warmed_live(self) -> list[Activity]:
        return [_activity(r) for r in await self._pool.fetch(SELECT_WARMED_LIVE)]

    async def mark_warmed(self, activity_id: int) -> None:
        await self._pool.execute(MARK_WARMED, activity_id)
