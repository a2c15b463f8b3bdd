"""Redis adapter of the groupbuy service: warm-up, open, join, expire, unit release.

Redis is the gate; PostgreSQL is the record (campaigns on create, groups and members from
the groupbuy topic). Every script writes its outbox entry in the same atomic step as the
change it announces, so an acknowledged open or join cannot be lost by a crash of the
service; it relies on Redis persistence as seckill does (docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, cast

from redis.asyncio import Redis

from services.common.idempotency import record_field
from services.common.lua import lua_source
from services.common.stream_outbox import remaining_stock, sale_totals, warm_sale
from services.groupbuy.domain import (
    AdminResult,
    Campaign,
    NewCampaign,
    Outcome,
    campaign_of_group,
    gate_closed,
    gate_ends_at,
)
from services.groupbuy.keys import CAMPAIGNS, campaign_keys


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# First element of a reply answered from an Idempotency-Key record (open.lua, join.lua).
REPLAYED = "replayed"
# The action part of an open's record field; a join's is the group id.
OPEN_ACTION = "open"


@dataclass(frozen=True, slots=True)
class Opened:
    group_id: str
    deadline_ms: int


@dataclass(frozen=True, slots=True)
class Joined:
    position: int
    size: int
    completed: bool
    # Set when this join completed the group: when the group opened.
    opened_ms: int | None


class OpenDecision(NamedTuple):
    """replayed: the answer is the recorded first outcome of the Idempotency-Key."""

    outcome: Outcome
    opened: Opened | None
    replayed: bool = False


class JoinDecision(NamedTuple):
    """replayed: the answer is the recorded first outcome of the Idempotency-Key."""

    outcome: Outcome
    joined: Joined | None
    replayed: bool = False


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _settings(campaign: Campaign | NewCampaign, ends_at: datetime) -> dict[str, str | int]:
    """The meta fields the scripts read, but `total` and `closed`."""
    return {
        "starts_ms": _ms(campaign.starts_at),
        "ends_ms": _ms(ends_at),
        "size": campaign.group_size,
        "window_ms": campaign.group_window_seconds * 1000,
        "limit": campaign.per_user_limit,
        "price": campaign.group_price_cents,
        "sku": campaign.sku,
        "pay_ms": campaign.payment_timeout_seconds * 1000,
        "virtual": int(campaign.virtual_completion),
        "min_real": campaign.min_real_members,
    }


class Restocked(NamedTuple):
    """restock.lua's answer; remaining is None unless result is OK."""

    result: AdminResult
    reserved: int = 0
    remaining: int | None = None


class Closing(NamedTuple):
    """end.lua's or cancel.lua's answer: at_ms, when it ended or was cancelled (None if
    refused or, for a repeated cancel, unknown); open_groups, the groups made due."""

    result: AdminResult
    at_ms: int | None = None
    open_groups: int = 0


@dataclass(frozen=True, slots=True)
class Settled:
    """What expire.lua did: 'failed', 'virtual', or a no-op ('not_due', 'settled', ...)."""

    result: str
    members: int = 0
    opened_ms: int = 0
    returned: int = 0


class GroupStore:
    def __init__(self, redis: Redis, idempotency_key_retention_seconds: int = 0) -> None:
        """idempotency_key_retention_seconds: how long after the campaign's last group
        could close an Idempotency-Key record of an open or join is kept."""
        self._redis = redis
        self._keep_ms = idempotency_key_retention_seconds * 1000
        # register_script: reloads itself after NOSCRIPT (Redis restart or failover).
        self._open = redis.register_script(lua_source("services.groupbuy", "open.lua"))
        self._join = redis.register_script(lua_source("services.groupbuy", "join.lua"))
        self._expire = redis.register_script(lua_source("services.groupbuy", "expire.lua"))
        self._release = redis.register_script(lua_source("services.groupbuy", "release_unit.lua"))
        self._edit = redis.register_script(lua_source("services.groupbuy", "edit.lua"))
        self._restock = redis.register_script(lua_source("services.groupbuy", "restock.lua"))
        self._end = redis.register_script(lua_source("services.groupbuy", "end.lua"))
        self._cancel = redis.register_script(lua_source("services.groupbuy", "cancel.lua"))

    async def warm_up(self, campaign: Campaign) -> None:
        """Load a campaign into Redis; idempotent (see warm_sale). The sweeper, like the
        relay, only watches campaigns registered there. An ended or cancelled campaign
        is loaded closed (a rebuild after Redis lost it must not reopen it)."""
        keys = campaign_keys(campaign.id)
        await warm_sale(
            self._redis,
            meta_key=keys.meta,
            meta={
                **_settings(campaign, gate_ends_at(campaign)),
                "total": campaign.stock,
                "closed": gate_closed(campaign),
            },
            stock_key=keys.stock,
            stock=campaign.stock,
            outbox_key=keys.outbox,
            registry_key=CAMPAIGNS,
            sale_id=campaign.id,
        )

    async def is_warm(self, campaign_id: int) -> bool:
        return bool(await self._redis.exists(campaign_keys(campaign_id).meta))

    async def open_group(
        self, campaign_id: int, user_id: str, group_id: str, idempotency_key: str | None = None
    ) -> OpenDecision:
        """With an idempotency key, a retry of an open already decided is answered with
        that open's outcome (and group id) and changes nothing."""
        keys = campaign_keys(campaign_id)
        field = (
            "" if idempotency_key is None else record_field(OPEN_ACTION, idempotency_key, user_id)
        )
        reply = await self._open(
            keys=[
                keys.meta,
                keys.stock,
                keys.users,
                keys.outbox,
                keys.deadlines,
                keys.group(group_id),
                keys.members(group_id),
                keys.idempotency,
            ],
            args=[user_id, group_id, field, self._keep_ms],
        )
        replayed = _text(reply[0]) == REPLAYED
        if replayed:
            reply = reply[1:]
        outcome = Outcome(_text(reply[0]))
        if outcome is not Outcome.OPENED:
            return OpenDecision(outcome, None, replayed)
        # A replay answers the group the first open made, not the id this attempt drew.
        opened_id = _text(reply[2]) if replayed else group_id
        return OpenDecision(outcome, Opened(opened_id, int(reply[1])), replayed)

    async def join_group(
        self, group_id: str, user_id: str, idempotency_key: str | None = None
    ) -> JoinDecision:
        """With an idempotency key, a retry of a join already decided is answered with
        that join's outcome (and position) and changes nothing."""
        campaign_id = campaign_of_group(group_id)
        if campaign_id is None:
            return JoinDecision(Outcome.NOT_FOUND, None)
        keys = campaign_keys(campaign_id)
        field = "" if idempotency_key is None else record_field(group_id, idempotency_key, user_id)
        reply = await self._join(
            keys=[
                keys.meta,
                keys.users,
                keys.outbox,
                keys.deadlines,
                keys.group(group_id),
                keys.members(group_id),
                keys.idempotency,
            ],
            args=[user_id, group_id, field, self._keep_ms],
        )
        replayed = _text(reply[0]) == REPLAYED
        if replayed:
            reply = reply[1:]
        outcome = Outcome(_text(reply[0]))
        if outcome not in (Outcome.JOINED, Outcome.COMPLETED):
            return JoinDecision(outcome, None, replayed)
        completed = outcome is Outcome.COMPLETED
        joined = Joined(
            position=int(reply[1]),
            size=int(reply[2]),
            completed=completed,
            # A replay reports the first join; when the group opened is for its metrics.
            opened_ms=int(reply[3]) if completed and not replayed else None,
        )
        return JoinDecision(outcome, joined, replayed)

    async def expire_group(self, campaign_id: int, group_id: str) -> Settled:
        """Fail, or complete virtually, a group past its deadline; a no-op otherwise."""
        keys = campaign_keys(campaign_id)
        reply = await self._expire(
            keys=[
                keys.meta,
                keys.stock,
                keys.users,
                keys.outbox,
                keys.deadlines,
                keys.group(group_id),
                keys.members(group_id),
            ],
            args=[group_id],
        )
        result = _text(reply[0])
        if result in ("failed", "virtual"):
            return Settled(result, int(reply[1]), int(reply[2]), int(reply[3]))
        return Settled(result)

    async def release_unit(self, group_id: str, user_id: str) -> str:
        """Return one member's unit of a completed group; idempotent per member."""
        campaign_id = campaign_of_group(group_id)
        if campaign_id is None:
            return "unknown"
        keys = campaign_keys(campaign_id)
        reply = await self._release(
            keys=[keys.stock, keys.users, keys.group(group_id), keys.members(group_id)],
            args=[user_id],
        )
        return _text(reply[0])

    async def edit(
        self, campaign_id: int, edited: NewCampaign, apply_total: int, recorded_total: int
    ) -> AdminResult:
        """Rewrite an upcoming campaign's settings (edit.lua); apply_total: the stock total
        to set now (never above what PostgreSQL has committed); recorded_total: the total
        PostgreSQL had before the edit."""
        keys = campaign_keys(campaign_id)
        pairs: list[str | int] = []
        for name, value in _settings(edited, edited.ends_at).items():
            pairs += [name, value]
        reply = await self._edit(
            keys=[keys.meta, keys.stock], args=[apply_total, recorded_total, *pairs]
        )
        return AdminResult(_text(reply[0]))

    async def restock(self, campaign_id: int, total: int, recorded_total: int) -> Restocked:
        """Set the stock total, never below the units groups hold (restock.lua)."""
        keys = campaign_keys(campaign_id)
        reply = await self._restock(keys=[keys.meta, keys.stock], args=[total, recorded_total])
        result = AdminResult(_text(reply[0]))
        if result is AdminResult.OK:
            return Restocked(result, int(reply[2]), int(reply[1]))
        if result is AdminResult.BELOW_RESERVED:
            return Restocked(result, int(reply[1]))
        return Restocked(result)

    async def end(self, campaign_id: int) -> Closing:
        """Stop new groups now (end.lua)."""
        reply = await self._end(keys=[campaign_keys(campaign_id).meta], args=[])
        result = AdminResult(_text(reply[0]))
        at = int(reply[1]) if result in (AdminResult.OK, AdminResult.ALREADY) else None
        return Closing(result, at)

    async def cancel(self, campaign_id: int) -> Closing:
        """Stop new groups and joins now and make every open group due (cancel.lua)."""
        keys = campaign_keys(campaign_id)
        reply = await self._cancel(keys=[keys.meta, keys.deadlines], args=[])
        result = AdminResult(_text(reply[0]))
        if result is AdminResult.OK:
            return Closing(result, int(reply[1]), int(reply[2]))
        if result is AdminResult.ALREADY:
            return Closing(result, None, int(reply[1]))
        return Closing(result)

    async def stock_figures(self, campaign_id: int) -> tuple[int | None, int | None]:
        """(total, remaining) as Redis has them; None where Redis has nothing."""
        keys = campaign_keys(campaign_id)
        return await sale_totals(self._redis, keys.meta, keys.stock)

    async def remaining_of(self, campaign_ids: Sequence[int]) -> dict[int, int]:
        """The remaining stock of several campaigns in one round trip (the admin list)."""
        stocks = [campaign_keys(c).stock for c in campaign_ids]
        values = await remaining_stock(self._redis, stocks)
        return dict(zip(campaign_ids, values, strict=True))

    async def due_groups(self, campaign_id: int, now_ms: int, limit: int) -> list[str]:
        # redis-py gives ZRANGEBYSCORE one return type for both withscores values; without
        # scores the reply is members only.
        raw = cast(
            list[bytes | str],
            await self._redis.zrangebyscore(
                campaign_keys(campaign_id).deadlines, "-inf", now_ms, start=0, num=limit
            ),
        )
        return [_text(g) for g in raw]

    async def campaigns(self) -> list[int]:
        return sorted(int(c) for c in await self._redis.smembers(CAMPAIGNS))

    async def remaining(self, campaign_id: int) -> int:
        value = await self._redis.get(campaign_keys(campaign_id).stock)
        return int(value) if value is not None else 0

    async def group(self, group_id: str) -> tuple[dict[str, str], list[str]] | None:
        """The group's state hash and members in joining order, or None if unknown."""
        campaign_id = campaign_of_group(group_id)
        if campaign_id is None:
            return None
        keys = campaign_keys(campaign_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hgetall(keys.group(group_id))
        pipe.zrange(keys.members(group_id), 0, -1)
        state, members = await pipe.execute()
        if not state:
            return None
        return (
            {_text(k): _text(v) for k, v in state.items()},
            [_text(m) for m in members],
        )

    async def probe(self) -> None:
        """Readiness: run the real script path (catches a lost script cache), touching
        nothing: group 0-<zeros> never exists, so join answers not_found."""
        outcome = (await self.join_group(f"1-{'0' * 32}", "probe")).outcome
        if outcome is not Outcome.NOT_FOUND:
            raise RuntimeError(f"unexpected probe answer {outcome}")
