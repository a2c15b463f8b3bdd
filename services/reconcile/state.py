"""Reads a sale's two sides for reconciliation and rebuilds: its state in Redis (the keys
of services/seckill/keys.py and services/groupbuy/keys.py) and its record in PostgreSQL
(the seckill, groupbuy and orders schemas). An operator's tool that stands across the
services on purpose; it writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from redis.asyncio import Redis

from services.common.events import from_epoch_ms
from services.groupbuy.keys import campaign_keys
from services.order.domain import group_order_key
from services.reconcile.domain import ActivityOrder, ReservationRecord
from services.reconcile.groupbuy_domain import CampaignMeta, GroupOrder, LiveGroup
from services.reconcile.rebuild_domain import RecordedGroup
from services.seckill.keys import activity_keys

RECENT_ACTIVITIES = """
SELECT id, stock FROM seckill.activities
WHERE warmed_at IS NOT NULL AND ends_at > now() - make_interval(secs => $1)
ORDER BY id
"""
RECENT_CAMPAIGNS = """
SELECT id, stock FROM groupbuy.campaigns
WHERE warmed_at IS NOT NULL AND ends_at > now() - make_interval(secs => $1)
ORDER BY id
"""
ACTIVITY_ORDERS = """
SELECT reservation_id, user_id, quantity, state, cancel_reason, cancelled_at, reserved_at,
       pay_before
FROM orders.orders
WHERE activity_id = $1 AND source = 'seckill'
"""
CAMPAIGN_GROUPS = """
SELECT id, leader_id, size, state, completion, opened_at, deadline, settled_at
FROM groupbuy.groups WHERE campaign_id = $1
"""
GROUP_MEMBERS = """
SELECT group_id, user_id FROM groupbuy.members
WHERE group_id = ANY($1::text[]) ORDER BY group_id, position
"""
CAMPAIGN_ORDERS = """
SELECT group_id, user_id, state, cancel_reason, cancelled_at, group_state, reserved_at,
       pay_before
FROM orders.orders
WHERE activity_id = $1 AND source = 'groupbuy'
"""
# Groups read per Redis transaction.
GROUP_READ_CHUNK = 500


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def recent_sales(
    pool: asyncpg.Pool, lookback_seconds: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(activity id, stock) and (campaign id, stock) of the sales to reconcile: warmed
    into Redis, not ended longer ago than the lookback."""
    activities = await pool.fetch(RECENT_ACTIVITIES, lookback_seconds)
    campaigns = await pool.fetch(RECENT_CAMPAIGNS, lookback_seconds)
    return [(r["id"], r["stock"]) for r in activities], [(r["id"], r["stock"]) for r in campaigns]


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


# --- groupbuy -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CampaignState:
    """A campaign in Redis. Its groups are found with SCAN (Redis keeps no list of a
    campaign's settled groups): one pass over the keyspace per campaign and run."""

    meta: CampaignMeta | None  # None: the campaign's settings are gone
    remaining: int | None  # None: the stock key is gone
    groups: dict[str, LiveGroup]
    in_outbox: set[str]  # group ids with unpublished outbox entries
    # False if the stock changed while the groups were read: stock and groups are then
    # not one snapshot, and comparing them would show drift that is not there.
    consistent: bool


async def campaign_state(redis: Redis, campaign_id: int) -> CampaignState:
    keys = campaign_keys(campaign_id)
    prefix = f"{keys.tag}:g:"
    before = await redis.get(keys.stock)
    gids = sorted(
        {
            key[len(prefix) :]
            async for raw in redis.scan_iter(match=f"{prefix}*", count=1000)
            if not (key := _text(raw)).endswith(":members")
        }
    )
    groups: dict[str, LiveGroup] = {}
    for start in range(0, len(gids), GROUP_READ_CHUNK):
        chunk = gids[start : start + GROUP_READ_CHUNK]
        pipe = redis.pipeline(transaction=True)
        for gid in chunk:
            pipe.hgetall(keys.group(gid))
            pipe.zrange(keys.members(gid), 0, -1)
        replies = await pipe.execute()
        for i, gid in enumerate(chunk):
            fields, members = replies[2 * i], replies[2 * i + 1]
            if fields:
                groups[gid] = LiveGroup.from_redis(
                    gid,
                    {_text(k): _text(v) for k, v in fields.items()},
                    [_text(m) for m in members],
                )
    pipe = redis.pipeline(transaction=True)
    pipe.hmget(keys.meta, "price", "sku", "pay_ms")
    pipe.get(keys.stock)
    pipe.xrange(keys.outbox)
    (price, sku, pay_ms), after, entries = await pipe.execute()
    meta = (
        CampaignMeta(int(price), _text(sku), int(pay_ms))
        if price is not None and sku is not None and pay_ms is not None
        else None
    )
    return CampaignState(
        meta=meta,
        remaining=None if after is None else int(after),
        groups=groups,
        in_outbox={_text(f[b"gid"]) for _, f in entries if f and b"gid" in f},
        consistent=before == after,
    )


async def campaign_orders(pool: asyncpg.Pool, campaign_id: int) -> dict[str, GroupOrder]:
    """The members' orders, by group_order_key."""
    return {
        group_order_key(r["group_id"], r["user_id"]): GroupOrder(
            group_id=r["group_id"],
            user_id=r["user_id"],
            state=r["state"],
            cancel_reason=r["cancel_reason"],
            cancelled_at=r["cancelled_at"],
            group_state=r["group_state"],
            reserved_at=r["reserved_at"],
            pay_before=r["pay_before"],
        )
        for r in await pool.fetch(CAMPAIGN_ORDERS, campaign_id)
    }


async def recorded_groups(pool: asyncpg.Pool, campaign_id: int) -> list[RecordedGroup]:
    rows = await pool.fetch(CAMPAIGN_GROUPS, campaign_id)
    members = await group_members(pool, [r["id"] for r in rows])
    return [
        RecordedGroup(
            group_id=r["id"],
            leader=r["leader_id"],
            size=r["size"],
            state=r["state"],
            completion=r["completion"],
            opened_at=r["opened_at"],
            deadline=r["deadline"],
            settled_at=r["settled_at"],
            members=tuple(members.get(r["id"], ())),
        )
        for r in rows
    ]


async def group_states(pool: asyncpg.Pool, campaign_id: int) -> dict[str, str]:
    return {r["id"]: r["state"] for r in await pool.fetch(CAMPAIGN_GROUPS, campaign_id)}


async def group_members(pool: asyncpg.Pool, group_ids: list[str]) -> dict[str, list[str]]:
    """Member rows of these groups, in position order."""
    out: dict[str, list[str]] = {}
    for r in await pool.fetch(GROUP_MEMBERS, group_ids):
        out.setdefault(r["group_id"], []).append(r["user_id"])
    return out
