"""Redis adapter of the groupbuy service: warm-up, open, join, expire, unit release.

Redis is the gate; PostgreSQL is the record (campaigns on create, groups and members from
the groupbuy topic). Every script writes its outbox entry in the same atomic step as the
change it announces, so an acknowledged open or join cannot be lost by a crash of the
service; it relies on Redis persistence as seckill does (docs/operations.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from redis.asyncio import Redis

from services.common.idempotency import record_field
from services.common.lua import lua_source
from services.common.stream_outbox import warm_sale
from services.groupbuy.domain import Campaign, Outcome, campaign_of_group
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

    async def warm_up(self, campaign: Campaign) -> None:
        """Load a campaign into Redis; idempotent (see warm_sale). The sweeper, like the
        relay, only watches campaigns registered there."""
        keys = campaign_keys(campaign.id)
        await warm_sale(
            self._redis,
            meta_key=keys.meta,
            meta={
                "starts_ms": int(campaign.starts_at.timestamp() * 1000),
                "ends_ms": int(campaign.ends_at.timestamp() * 1000),
                "size": campaign.group_size,
                "window_ms": campaign.group_window_seconds * 1000,
                "limit": campaign.per_user_limit,
                "price": campaign.group_price_cents,
                "sku": campaign.sku,
                "pay_ms": campaign.payment_timeout_seconds * 1000,
                "virtual": int(campaign.virtual_completion),
                "min_real": campaign.min_real_members,
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

    async def due_groups(self, campaign_id: int, now_ms: int, limit: int) -> list[str]:
        raw = await self._redis.zrangebyscore(
            campaign_keys(campaign_id).deadlines, "-inf", now_ms, start=0, num=limit
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
