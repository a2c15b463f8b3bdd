"""PostgreSQL adapter of the groupbuy service: campaigns and their admin audit log, and
the record of groups and members built from the groupbuy topic (idempotent upserts)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, TypedDict

import asyncpg

from services.common.audit import AuditEntry, AuditSql, audit_trail, record_audit
from services.common.events import (
    GROUP_COMPLETED,
    GROUP_FAILED,
    GROUP_JOINED,
    GROUP_OPENED,
    Envelope,
)
from services.common.paging import Page
from services.groupbuy.domain import Campaign, GroupCounts, NewCampaign, created_values

AUDIT = AuditSql.for_schema("groupbuy")
CAMPAIGN_TARGET = "campaign"

_COLUMNS = (
    "id, sku, title, group_price_cents, single_price_cents, group_size, stock, starts_at, "
    "ends_at, group_window_seconds, per_user_limit, virtual_completion, min_real_members, "
    "payment_timeout_seconds, ended_early_at, cancelled_at, created_at, warmed_at"
)
INSERT_CAMPAIGN = f"""
INSERT INTO groupbuy.campaigns
    (sku, title, group_price_cents, single_price_cents, group_size, stock, starts_at, ends_at,
     group_window_seconds, per_user_limit, virtual_completion, min_real_members,
     payment_timeout_seconds)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
RETURNING {_COLUMNS}
"""
SELECT_CAMPAIGN = f"SELECT {_COLUMNS} FROM groupbuy.campaigns WHERE id = $1"
SELECT_UNWARMED = f"""
SELECT {_COLUMNS} FROM groupbuy.campaigns WHERE warmed_at IS NULL AND ends_at > now()
"""
MARK_WARMED = "UPDATE groupbuy.campaigns SET warmed_at = now() WHERE id = $1 AND warmed_at IS NULL"
# domain.admin_state in SQL, at the moment $1, so a filtered list agrees with the views.
_STATE = """CASE WHEN cancelled_at IS NOT NULL THEN 'cancelled'
    WHEN ended_early_at IS NOT NULL OR ends_at <= $1 THEN 'ended'
    WHEN starts_at > $1 THEN 'upcoming' ELSE 'live' END"""
LIST_CAMPAIGNS = f"""
SELECT {_COLUMNS} FROM groupbuy.campaigns WHERE $2::text IS NULL OR {_STATE} = $2
ORDER BY starts_at DESC, id DESC LIMIT $3 OFFSET $4
"""
COUNT_CAMPAIGNS = f"SELECT count(*) FROM groupbuy.campaigns WHERE $2::text IS NULL OR {_STATE} = $2"
# Every admin change of one campaign holds this lock from its first read to its last
# Redis step, which may come after the COMMIT (a stock raise): changes of one campaign
# reach Redis in the order PostgreSQL committed them, across processes.
LOCK_CAMPAIGN = "SELECT pg_advisory_lock(hashtextextended('groupbuy.campaign', $1))"
UNLOCK_CAMPAIGN = "SELECT pg_advisory_unlock(hashtextextended('groupbuy.campaign', $1))"
SELECT_CAMPAIGN_FOR_UPDATE = f"SELECT {_COLUMNS} FROM groupbuy.campaigns WHERE id = $1 FOR UPDATE"
UPDATE_CAMPAIGN = f"""
UPDATE groupbuy.campaigns SET title = $2, group_price_cents = $3, single_price_cents = $4,
    starts_at = $5, ends_at = $6, stock = $7, group_window_seconds = $8, per_user_limit = $9,
    payment_timeout_seconds = $10, updated_at = now()
WHERE id = $1 RETURNING {_COLUMNS}
"""
SET_STOCK = f"""
UPDATE groupbuy.campaigns SET stock = $2, updated_at = now() WHERE id = $1
RETURNING {_COLUMNS}
"""
SET_ENDED_EARLY = f"""
UPDATE groupbuy.campaigns SET ended_early_at = $2, updated_at = now()
WHERE id = $1 AND ended_early_at IS NULL RETURNING {_COLUMNS}
"""
SET_CANCELLED = f"""
UPDATE groupbuy.campaigns SET cancelled_at = $2, updated_at = now()
WHERE id = $1 AND cancelled_at IS NULL RETURNING {_COLUMNS}
"""
# The record the groupbuy consumer builds: it follows the gate by the relay's lag.
GROUP_COUNTS = """
SELECT count(*) FILTER (WHERE state = 'open') AS open,
       count(*) FILTER (WHERE state = 'completed') AS completed,
       count(*) FILTER (WHERE state = 'failed') AS failed,
       (SELECT count(*) FROM groupbuy.members m JOIN groupbuy.groups mg ON mg.id = m.group_id
        WHERE mg.campaign_id = $1) AS members
FROM groupbuy.groups WHERE campaign_id = $1
"""
UPSERT_GROUP = """
INSERT INTO groupbuy.groups (id, campaign_id, leader_id, size, opened_at, deadline)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (id) DO NOTHING
"""
UPSERT_MEMBER = """
INSERT INTO groupbuy.members (group_id, user_id, position, joined_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (group_id, user_id) DO NOTHING
"""
# Settles only an open group: a redelivered completion or failure changes nothing.
SETTLE_GROUP = """
UPDATE groupbuy.groups SET state = $2, completion = $3, settled_at = $4
WHERE id = $1 AND state = 'open'
"""
SELECT_GROUP = """
SELECT id, leader_id, size, state, completion, opened_at, deadline
FROM groupbuy.groups WHERE id = $1
"""
SELECT_MEMBERS = "SELECT user_id FROM groupbuy.members WHERE group_id = $1 ORDER BY position"


def _ts(raw: str) -> datetime:
    return datetime.fromisoformat(raw.replace("Z", "+00:00"))


def _campaign(row: asyncpg.Record) -> Campaign:
    return Campaign(**dict(row))


class CampaignChange:
    """One admin change of one campaign: its row locked (FOR UPDATE) inside the
    transaction the caller opened on `conn`, the audit entry written in it."""

    def __init__(self, conn: asyncpg.Connection, campaign_id: int) -> None:
        self.conn = conn
        self._id = campaign_id

    async def campaign(self) -> Campaign | None:
        row = await self.conn.fetchrow(SELECT_CAMPAIGN_FOR_UPDATE, self._id)
        return None if row is None else _campaign(row)

    async def edit(self, edited: NewCampaign) -> Campaign:
        row = await self.conn.fetchrow(
            UPDATE_CAMPAIGN,
            self._id,
            edited.title,
            edited.group_price_cents,
            edited.single_price_cents,
            edited.starts_at,
            edited.ends_at,
            edited.stock,
            edited.group_window_seconds,
            edited.per_user_limit,
            edited.payment_timeout_seconds,
        )
        return _campaign(row)

    async def set_stock(self, total: int) -> Campaign:
        return _campaign(await self.conn.fetchrow(SET_STOCK, self._id, total))

    async def set_ended_early(self, at: datetime) -> Campaign | None:
        row = await self.conn.fetchrow(SET_ENDED_EARLY, self._id, at)
        return None if row is None else _campaign(row)

    async def set_cancelled(self, at: datetime) -> Campaign | None:
        row = await self.conn.fetchrow(SET_CANCELLED, self._id, at)
        return None if row is None else _campaign(row)

    async def audit(
        self, actor: str, action: str, before: dict[str, Any] | None, after: dict[str, Any]
    ) -> None:
        entry = AuditEntry(actor, action, CAMPAIGN_TARGET, str(self._id), before, after)
        await record_audit(self.conn, AUDIT, entry)


class CampaignRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, new: NewCampaign, actor: str) -> Campaign:
        """Insert the campaign and its campaign.create audit entry in one transaction."""
        async with self._pool.acquire() as conn, conn.transaction():
            campaign = await self._insert(conn, new)
            await CampaignChange(conn, campaign.id).audit(
                actor, "campaign.create", None, created_values(new, campaign.id)
            )
        return campaign

    @staticmethod
    async def _insert(conn: asyncpg.Connection, new: NewCampaign) -> Campaign:
        row = await conn.fetchrow(
            INSERT_CAMPAIGN,
            new.sku,
            new.title,
            new.group_price_cents,
            new.single_price_cents,
            new.group_size,
            new.stock,
            new.starts_at,
            new.ends_at,
            new.group_window_seconds,
            new.per_user_limit,
            new.virtual_completion,
            new.min_real_members,
            new.payment_timeout_seconds,
        )
        return _campaign(row)

    async def get(self, campaign_id: int) -> Campaign | None:
        row = await self._pool.fetchrow(SELECT_CAMPAIGN, campaign_id)
        return None if row is None else _campaign(row)

    async def unwarmed(self) -> list[Campaign]:
        return [_campaign(r) for r in await self._pool.fetch(SELECT_UNWARMED)]

    async def page(
        self, state: str | None, page: Page, now: datetime
    ) -> tuple[list[Campaign], int]:
        """Newest start first, optionally only those in `state` at `now`; and how many."""
        rows = await self._pool.fetch(LIST_CAMPAIGNS, now, state, page.limit, page.offset)
        total = await self._pool.fetchval(COUNT_CAMPAIGNS, now, state)
        return [_campaign(r) for r in rows], int(total)

    @contextlib.asynccontextmanager
    async def locked(self, campaign_id: int) -> AsyncIterator[asyncpg.Connection]:
        """A connection holding the campaign's admin lock (see LOCK_CAMPAIGN). A
        connection that breaks releases it with its session."""
        async with self._pool.acquire() as conn:
            await conn.execute(LOCK_CAMPAIGN, campaign_id)
            try:
                yield conn
            finally:
                if not conn.is_closed():
                    await conn.execute(UNLOCK_CAMPAIGN, campaign_id)

    async def group_counts(self, campaign_id: int) -> GroupCounts:
        row = await self._pool.fetchrow(GROUP_COUNTS, campaign_id)
        return GroupCounts(row["open"], row["completed"], row["failed"], row["members"])

    async def audit_trail(self, campaign_id: int) -> list[dict[str, Any]]:
        return await audit_trail(self._pool, AUDIT, CAMPAIGN_TARGET, str(campaign_id))

    async def mark_warmed(self, campaign_id: int) -> None:
        await self._pool.execute(MARK_WARMED, campaign_id)

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")


class GroupRow(TypedDict):
    """A groupbuy.groups row as SELECT_GROUP reads it."""

    id: str
    leader_id: str
    size: int
    state: str
    completion: str | None
    opened_at: datetime
    deadline: datetime


class GroupRecord:
    """Groups and memberships in PostgreSQL, from the groupbuy events (at least once)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def apply(self, events: Sequence[Envelope]) -> None:
        """Record a batch in one transaction, in topic order. Every statement is an
        upsert or a guarded update, so a redelivered batch changes nothing."""
        async with self._pool.acquire() as conn, conn.transaction():
            for event in events:
                await self._apply_one(conn, event)

    @staticmethod
    async def _apply_one(conn: asyncpg.Connection, event: Envelope) -> None:
        d = event.data
        gid = d["group_id"]
        if event.type == GROUP_OPENED:
            await conn.execute(
                UPSERT_GROUP,
                gid,
                d["campaign_id"],
                d["user_id"],
                d["group_size"],
                _ts(d["opened_at"]),
                _ts(d["deadline"]),
            )
        if event.type in (GROUP_OPENED, GROUP_JOINED):
            await conn.execute(UPSERT_MEMBER, gid, d["user_id"], d["position"], _ts(d["joined_at"]))
        elif event.type == GROUP_COMPLETED:
            await conn.execute(SETTLE_GROUP, gid, "completed", d["how"], _ts(d["completed_at"]))
        elif event.type == GROUP_FAILED:
            await conn.execute(SETTLE_GROUP, gid, "failed", None, _ts(d["failed_at"]))

    async def get(self, group_id: str) -> tuple[GroupRow, list[str]] | None:
        row = await self._pool.fetchrow(SELECT_GROUP, group_id)
        if row is None:
            return None
        members = [r["user_id"] for r in await self._pool.fetch(SELECT_MEMBERS, group_id)]
        group = GroupRow(
            id=row["id"],
            leader_id=row["leader_id"],
            size=row["size"],
            state=row["state"],
            completion=row["completion"],
            opened_at=row["opened_at"],
            deadline=row["deadline"],
        )
        return group, members
