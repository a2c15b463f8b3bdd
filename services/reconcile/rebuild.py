"""Rebuild an activity's or a campaign's Redis state from PostgreSQL after Redis lost it
(rebuild_domain.py decides what to write; this module reads and writes).

Order of the writes: the stock, allowances and reservations (or groups) first, then the
sale's settings last, through the services' own warm-up (StockStore.warm_up,
GroupStore.warm_up). The scripts answer not_found while the settings are missing, so no
shopper can reserve against a half-written state, and the warm-up's "set the stock only
if absent" leaves the rebuilt stock alone. Before opening, the record is read again and
the state rewritten if orders arrived meanwhile (an event still in Kafka when Redis was
lost); what arrives after that is reported by the next reconciliation run
(order_without_reservation, group_order_without_member).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from services.groupbuy.keys import campaign_keys
from services.groupbuy.repository import CampaignRepository
from services.groupbuy.store import GroupStore
from services.reconcile.groupbuy_domain import LiveGroup
from services.reconcile.rebuild_domain import (
    ActivityRebuild,
    CampaignRebuild,
    group_hash,
    plan_activity,
    plan_campaign,
)
from services.reconcile.state import (
    activity_orders,
    activity_state,
    campaign_orders,
    campaign_state,
    recorded_groups,
)
from services.seckill.activities import ActivityRepository
from services.seckill.keys import activity_keys
from services.seckill.stock import StockStore

log = logging.getLogger(__name__)

# How often the record is read again before the sale opens, if orders keep arriving.
REREADS = 3
# Hash fields / sorted-set members per command (a large sale is not one huge command).
WRITE_CHUNK = 1000


class RebuildRefused(Exception):
    """The sale's Redis state still exists: rebuilding it would hand its stock out again."""


class UnknownSale(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Rebuilt:
    sale: str
    sale_id: int
    initial_stock: int
    plan: ActivityRebuild | CampaignRebuild

    def describe(self) -> str:
        p = self.plan
        held = self.initial_stock - p.stock + p.oversold
        if isinstance(p, ActivityRebuild):
            detail = (
                f"live orders {p.live_orders}, reservations without an order {p.unordered}; "
                f"cancelled orders {p.released}, recorded as returned"
            )
        else:
            open_groups = sum(g.state == "open" for g in p.groups.values())
            detail = (
                f"groups {len(p.groups)}, of them open {open_groups}; live orders {p.live_orders}"
            )
        text = (
            f"rebuilt {self.sale} {self.sale_id}: stock {self.initial_stock}, held {held} "
            f"({detail}), remaining {p.stock}, shoppers holding units {len(p.users)}"
        )
        if p.oversold:
            text += f"\nWARNING: the orders exceed the stock by {p.oversold} (oversold)"
        return text


async def _refuse_if_present(redis: Redis, name: str, keys: Iterable[str], force: bool) -> None:
    present = [k for k in keys if await redis.exists(k)]
    if not present:
        return
    if not force:
        raise RebuildRefused(
            f"{name} still has its Redis state ({', '.join(present)}): rebuilding it would "
            "offer its stock again. Nothing was changed. If the state is known to be wrong, "
            "stop the sale's traffic and run again with --force."
        )
    log.warning("%s: --force: removing its settings first, then rebuilding", name)


async def rebuild_activity(
    redis: Redis, pool: asyncpg.Pool, activity_id: int, *, force: bool = False
) -> Rebuilt:
    activity = await ActivityRepository(pool).get(activity_id)
    if activity is None:
        raise UnknownSale(f"activity {activity_id} does not exist")
    keys = activity_keys(activity_id)
    await _refuse_if_present(redis, f"activity {activity_id}", (keys.meta, keys.stock), force)
    # Settings gone = the gate closed: reserve.lua answers not_found from here on.
    await redis.delete(keys.meta)
    surviving = (await activity_state(redis, activity_id)).records
    written: ActivityRebuild | None = None
    for _ in range(REREADS):
        plan = plan_activity(activity.stock, await activity_orders(pool, activity_id), surviving)
        if plan == written:
            break
        pipe = redis.pipeline(transaction=True)
        pipe.delete(keys.stock, keys.users, keys.reservations)
        pipe.set(keys.stock, plan.stock)
        _hset_chunks(pipe, keys.users, {u: str(n) for u, n in plan.users.items()})
        _hset_chunks(pipe, keys.reservations, plan.reservations)
        await pipe.execute()
        written = plan
    assert written is not None
    await StockStore(redis, None, 0).warm_up(activity)
    return Rebuilt("activity", activity_id, activity.stock, written)


async def rebuild_campaign(
    redis: Redis, pool: asyncpg.Pool, campaign_id: int, *, force: bool = False
) -> Rebuilt:
    campaign = await CampaignRepository(pool).get(campaign_id)
    if campaign is None:
        raise UnknownSale(f"campaign {campaign_id} does not exist")
    keys = campaign_keys(campaign_id)
    await _refuse_if_present(redis, f"campaign {campaign_id}", (keys.meta, keys.stock), force)
    await redis.delete(keys.meta)  # open.lua answers not_found from here on
    surviving = (await campaign_state(redis, campaign_id)).groups
    written: CampaignRebuild | None = None
    for _ in range(REREADS):
        plan = plan_campaign(
            campaign.stock,
            campaign.group_size,
            campaign.payment_timeout_seconds,
            await recorded_groups(pool, campaign_id),
            list((await campaign_orders(pool, campaign_id)).values()),
            surviving,
        )
        if plan == written:
            break
        pipe = redis.pipeline(transaction=True)
        pipe.delete(keys.stock, keys.users, keys.deadlines)
        pipe.set(keys.stock, plan.stock)
        _hset_chunks(pipe, keys.users, {u: str(n) for u, n in plan.users.items()})
        for group in plan.groups.values():
            _write_group(pipe, campaign_id, group)
        if plan.deadlines:
            pipe.zadd(keys.deadlines, {g: float(ms) for g, ms in plan.deadlines.items()})
        await pipe.execute()
        written = plan
    assert written is not None
    await GroupStore(redis).warm_up(campaign)
    return Rebuilt("campaign", campaign_id, campaign.stock, written)


def _write_group(pipe: Pipeline, campaign_id: int, group: LiveGroup) -> None:
    keys = campaign_keys(campaign_id)
    pipe.delete(keys.group(group.group_id), keys.members(group.group_id))
    fields: dict[Any, Any] = group_hash(group)  # redis-py's key type is wider and invariant
    pipe.hset(keys.group(group.group_id), mapping=fields)
    pipe.zadd(
        keys.members(group.group_id),
        {user: float(position) for position, user in enumerate(group.members, start=1)},
    )


def _hset_chunks(pipe: Pipeline, key: str, mapping: dict[str, str] | dict[str, bytes]) -> None:
    items = list(mapping.items())
    for start in range(0, len(items), WRITE_CHUNK):
        chunk: dict[Any, Any] = dict(items[start : start + WRITE_CHUNK])
        pipe.hset(key, mapping=chunk)
