"""Redis adapter of the seckill service: warm-up, reserve, release, lookups.

Redis is the gate; PostgreSQL is the record. What an acknowledged reservation relies on:
the reserve script's writes (stock, reservation, outbox entry) are one atomic unit, and
survive a Redis restart as far as Redis persistence allows (production: AOF with
appendfsync everysec loses at most about a second; see docs/operations.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from services.common.idempotency import record_field
from services.common.lua import lua_source
from services.common.redis_batch import ScriptBatcher
from services.common.stream_outbox import remaining_stock, warm_sale
from services.seckill.domain import Activity, Closing, Decision, Outcome, Reservation, redis_meta
from services.seckill.keys import ACTIVITIES, activity_keys


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# First element of a reply answered from an Idempotency-Key record (reserve.lua).
REPLAYED = "replayed"


# The Idempotency-Key record field of a press (services/common/idempotency.py).
RESERVE_ACTION = "reserve"


@dataclass(frozen=True, slots=True)
class ScriptAnswer:
    """What an admin script (edit, set_stock, close) answered: its outcome and values."""

    outcome: str
    values: tuple[str, ...]


def _answer(reply: list[Any]) -> ScriptAnswer:
    return ScriptAnswer(_text(reply[0]), tuple(_text(v) for v in reply[1:]))


@dataclass(frozen=True, slots=True)
class LiveCounts:
    """An activity's figures as Redis holds them, read in one transaction."""

    total: int | None  # None: its settings do not hold the total (warmed before they did)
    remaining: int
    reservations: int
    presses: int
    sold_out_answers: int


class StockStore:
    def __init__(
        self,
        redis: Redis,
        batcher: ScriptBatcher | None,
        rate_limit_per_second: int,
        idempotency_key_retention_seconds: int = 0,
    ) -> None:
        """batcher: coalesces reservations (the hot path); None calls scripts directly.
        idempotency_key_retention_seconds: how long after the sale ends a press's
        Idempotency-Key record is kept (only reserve uses it)."""
        self._redis = redis
        self._batcher = batcher
        self._rate = rate_limit_per_second
        self._keep_ms = idempotency_key_retention_seconds * 1000
        self._reserve = redis.register_script(lua_source("services.seckill", "reserve.lua"))
        self._release = redis.register_script(lua_source("services.seckill", "release.lua"))
        self._edit = redis.register_script(lua_source("services.seckill", "edit.lua"))
        self._set_stock = redis.register_script(lua_source("services.common", "set_total.lua"))
        self._close = redis.register_script(lua_source("services.seckill", "close.lua"))

    async def warm_up(self, activity: Activity) -> None:
        """Load an activity into Redis; idempotent (see warm_sale)."""
        keys = activity_keys(activity.id)
        await warm_sale(
            self._redis,
            meta_key=keys.meta,
            meta=redis_meta(activity),
            stock_key=keys.stock,
            stock=activity.stock,
            outbox_key=keys.outbox,
            registry_key=ACTIVITIES,
            sale_id=activity.id,
        )

    async def is_warm(self, activity_id: int) -> bool:
        return bool(await self._redis.exists(activity_keys(activity_id).meta))

    async def reserve(
        self,
        activity_id: int,
        user_id: str,
        quantity: int,
        reservation_id: str,
        idempotency_key: str | None = None,
    ) -> Decision:
        """One press. With an idempotency key, a retry of a press already decided is
        answered with that press's outcome (and reservation id) and changes nothing."""
        keys = activity_keys(activity_id)
        shared = (
            keys.meta,
            keys.stock,
            keys.users,
            keys.reservations,
            keys.outbox,
            keys.idempotency,
        )
        own_keys = [keys.rate(user_id)]
        own_args: list[str | int] = [user_id, quantity, reservation_id]
        if idempotency_key is not None:
            own_args.append(record_field(RESERVE_ACTION, idempotency_key, user_id))
        # The count of arguments per press is in the head, so presses with a key are
        # merged apart from those without, which pass three arguments and pay nothing for
        # keys. Both share the round trip.
        head = (self._rate, self._keep_ms, len(own_args))
        if self._batcher is None:
            replies = await self._reserve(keys=[*shared, *own_keys], args=[*head, *own_args])
            reply = replies[0]
        else:
            # Merged with the other presses on this activity in the same round trip.
            reply = await self._batcher.call_merged(self._reserve, shared, head, own_keys, own_args)
        if _text(reply[0]) == REPLAYED:
            outcome = Outcome(_text(reply[1]))
            if outcome is not Outcome.RESERVED:
                return Decision(outcome, None, replayed=True)
            first = Reservation(_text(reply[3]), activity_id, int(reply[4]), int(reply[2]))
            return Decision(outcome, first, replayed=True)
        outcome = Outcome(_text(reply[0]))
        if outcome is not Outcome.RESERVED:
            return Decision(outcome, None)
        return Decision(outcome, Reservation(reservation_id, activity_id, quantity, int(reply[2])))

    async def release(self, activity_id: int, reservation_id: str, reason: str) -> str:
        """Return a reservation's stock; 'ok', 'already_released' or 'unknown'."""
        keys = activity_keys(activity_id)
        reply = await self._release(
            keys=[keys.stock, keys.users, keys.reservations, keys.outbox],
            args=[reservation_id, reason],
        )
        return _text(reply[0])

    async def edit(self, activity: Activity) -> ScriptAnswer:
        """Write an upcoming activity's edited settings and stock (edit.lua)."""
        keys = activity_keys(activity.id)
        meta = redis_meta(activity)
        fields = ("starts_ms", "ends_ms", "limit", "pay_ms", "price", "total")
        reply = await self._edit(keys=[keys.meta, keys.stock], args=[meta[f] for f in fields])
        return _answer(reply)

    async def set_stock(self, activity_id: int, wanted: int, recorded: int) -> ScriptAnswer:
        """Set the total stock (services/common/lua/set_total.lua); `recorded` is
        PostgreSQL's total, used only when the settings do not hold one yet."""
        keys = activity_keys(activity_id)
        reply = await self._set_stock(keys=[keys.meta, keys.stock], args=[wanted, recorded])
        return _answer(reply)

    async def close(self, activity_id: int, closing: Closing) -> ScriptAnswer:
        """End or cancel the sale now (close.lua)."""
        keys = activity_keys(activity_id)
        reply = await self._close(keys=[keys.meta, keys.outbox], args=[closing.value])
        return _answer(reply)

    async def live_counts(self, activity_id: int) -> LiveCounts:
        keys = activity_keys(activity_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hget(keys.meta, "total")
        pipe.get(keys.stock)
        pipe.hlen(keys.reservations)
        pipe.hmget(keys.board, "presses", "sold_out")
        total, remaining, reservations, (presses, sold_out) = await pipe.execute()
        return LiveCounts(
            total=None if total is None else int(total),
            remaining=int(remaining or 0),
            reservations=int(reservations),
            presses=int(presses or 0),
            sold_out_answers=int(sold_out or 0),
        )

    async def remaining(self, activity_ids: list[int]) -> dict[int, int]:
        stocks = [activity_keys(a).stock for a in activity_ids]
        values = await remaining_stock(self._redis, stocks)
        return dict(zip(activity_ids, values, strict=True))

    async def reservation(self, activity_id: int, reservation_id: str) -> dict[str, Any] | None:
        raw = await self._redis.hget(activity_keys(activity_id).reservations, reservation_id)
        return None if raw is None else dict(orjson.loads(raw))

    async def probe(self) -> None:
        """Readiness: run the real script path (catches a lost script cache), touching
        nothing: activity 0 never exists, so the script answers not_found."""
        keys = activity_keys(0)
        replies = await self._reserve(
            keys=[
                keys.meta,
                keys.stock,
                keys.users,
                keys.reservations,
                keys.outbox,
                keys.idempotency,
                keys.rate("probe"),
            ],
            args=[0, 0, 3, "probe", 1, "0-probe"],
        )
        if _text(replies[0][0]) != Outcome.NOT_FOUND:
            raise RuntimeError(f"unexpected probe answer {replies!r}")
