"""PostgreSQL adapter of the groupbuy service: campaigns, and the record of groups and
members built from the groupbuy topic (idempotent upserts)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from services.common.events import (
    GROUP_COMPLETED,
    GROUP_FAILED,
    GROUP_JOINED,
    GROUP_OPENED,
    Envelope,
)
from services.groupbuy.domain import Campaign, NewCampaign

_COLUMNS = (
    "id, sku, title, group_price_cents, single_price_cents, group_size, stock, starts_at, "
    "ends_at, group_window_seconds, per_user_limit, virtual_completion, min_real_members, "
    "payment_timeout_seconds"
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


class CampaignRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, new: NewCampaign) -> Campaign:
        row = await self._pool.fetchrow(
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
        return Campaign(**dict(row))

    async def get(self, campaign_id: int) -> Campaign | None:
        row = await self._pool.fetchrow(SELECT_CAMPAIGN, campaign_id)
        return None if row is None else Campaign(**dict(row))

    async def unwarmed(self) -> list[Campaign]:
        return [Campaign(**dict(r)) for r in await self._pool.fetch(SELECT_UNWARMED)]

    async def mark_warmed(self, campaign_id: int) -> None:
        await self._pool.execute(MARK_WARMED, campaign_id)

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")


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

    async def get(self, group_id: str) -> tuple[dict[str, Any], list[str]] | None:
        row = await self._pool.fetchrow(SELECT_GROUP, group_id)
        if row is None:
            return None
        members = [r["user_id"] for r in await self._pool.fetch(SELECT_MEMBERS, group_id)]
        return dict(row), members
