"""Redis adapter of the coupon service: warm-up, claims (coalesced), the admin scripts,
what is left.

Redis is the gate of every quantity; PostgreSQL is the record (templates on create,
coupons from the coupons topic). The claim script writes its outbox entry in the same
atomic step as the coupon it takes, so an acknowledged claim cannot be lost by a crash of
the service; it relies on Redis persistence as seckill does (docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from services.common.idempotency import record_field
from services.common.lua import lua_source
from services.common.redis_batch import ScriptBatcher
from services.common.stream_outbox import remaining_stock, sale_totals, warm_sale
from services.coupon.domain import (
    ClaimDecision,
    Claimed,
    Outcome,
    Template,
    redis_meta,
)
from services.coupon.keys import TEMPLATES, template_keys


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# First element of a reply answered from an Idempotency-Key record (claim.lua).
REPLAYED = "replayed"
# The action part of a claim's Idempotency-Key record field.
CLAIM_ACTION = "claim"
# Meta fields an edit does not write: the quantity goes its own way, closed is end.lua's.
_NOT_EDITED = frozenset({"total", "closed"})


@dataclass(frozen=True, slots=True)
class ScriptAnswer:
    """What an admin script (edit, set_total, end) answered: its outcome and values."""

    outcome: str
    values: tuple[str, ...]


def _answer(reply: list[Any]) -> ScriptAnswer:
    return ScriptAnswer(_text(reply[0]), tuple(_text(v) for v in reply[1:]))


class CouponStore:
    def __init__(
        self,
        redis: Redis,
        batcher: ScriptBatcher | None,
        rate_limit_per_second: int,
        idempotency_key_retention_seconds: int = 0,
    ) -> None:
        """batcher: coalesces claims (a rush's hot path); None calls the script directly.
        idempotency_key_retention_seconds: how long after the claim window ends a claim's
        Idempotency-Key record is kept."""
        self._redis = redis
        self._batcher = batcher
        self._rate = rate_limit_per_second
        self._keep_ms = idempotency_key_retention_seconds * 1000
        # register_script: reloads itself after NOSCRIPT (Redis restart or failover).
        self._claim = redis.register_script(lua_source("services.coupon", "claim.lua"))
        self._edit = redis.register_script(lua_source("services.coupon", "edit.lua"))
        self._end = redis.register_script(lua_source("services.coupon", "end.lua"))
        self._set_total = redis.register_script(lua_source("services.common", "set_total.lua"))

    async def warm_up(self, template: Template) -> None:
        """Load a template into Redis; idempotent (see warm_sale): warming again never
        hands out its quantity twice."""
        keys = template_keys(template.id)
        await warm_sale(
            self._redis,
            meta_key=keys.meta,
            meta=redis_meta(template),
            stock_key=keys.stock,
            stock=template.quantity,
            outbox_key=keys.outbox,
            registry_key=TEMPLATES,
            sale_id=template.id,
        )

    async def is_warm(self, template_id: int) -> bool:
        return bool(await self._redis.exists(template_keys(template_id).meta))

    async def claim(
        self,
        template_id: int,
        user_id: str,
        coupon_id: str,
        idempotency_key: str | None = None,
    ) -> ClaimDecision:
        """One claim. With an idempotency key, a retry of a claim already decided is
        answered with that claim's outcome (and coupon) and changes nothing."""
        keys = template_keys(template_id)
        shared = (keys.meta, keys.stock, keys.users, keys.outbox, keys.idempotency)
        own_keys = [keys.rate(user_id)]
        own_args: list[str | int] = [user_id, coupon_id]
        if idempotency_key is not None:
            own_args.append(record_field(CLAIM_ACTION, idempotency_key, user_id))
        # The count of arguments per claim is in the head, so claims with a key are
        # merged apart from those without; both share the round trip.
        head = (self._rate, self._keep_ms, len(own_args))
        if self._batcher is None:
            replies = await self._claim(keys=[*shared, *own_keys], args=[*head, *own_args])
            reply = replies[0]
        else:
            reply = await self._batcher.call_merged(self._claim, shared, head, own_keys, own_args)
        if _text(reply[0]) == REPLAYED:
            outcome = Outcome(_text(reply[1]))
            if outcome is not Outcome.CLAIMED:
                return ClaimDecision(outcome, None, replayed=True)
            first = Claimed(_text(reply[4]), template_id, int(reply[2]), int(reply[3]))
            return ClaimDecision(outcome, first, replayed=True)
        outcome = Outcome(_text(reply[0]))
        if outcome is not Outcome.CLAIMED:
            return ClaimDecision(outcome, None)
        return ClaimDecision(outcome, Claimed(coupon_id, template_id, int(reply[1]), int(reply[2])))

    async def edit(self, edited: Template, apply_total: int, recorded_total: int) -> ScriptAnswer:
        """Rewrite a template's terms while nothing is issued and its claims have not
        opened (edit.lua); apply_total: the quantity to set now (never above what
        PostgreSQL has committed); recorded_total: PostgreSQL's before the edit."""
        keys = template_keys(edited.id)
        pairs: list[str | int] = []
        for name, value in redis_meta(edited).items():
            if name not in _NOT_EDITED:
                pairs += [name, value]
        reply = await self._edit(
            keys=[keys.meta, keys.stock], args=[apply_total, recorded_total, *pairs]
        )
        return _answer(reply)

    async def set_quantity(self, template_id: int, wanted: int, recorded: int) -> ScriptAnswer:
        """Set the quantity, never below what was issued (set_total.lua); `recorded` is
        PostgreSQL's quantity, used only when the settings do not hold one."""
        keys = template_keys(template_id)
        reply = await self._set_total(keys=[keys.meta, keys.stock], args=[wanted, recorded])
        return _answer(reply)

    async def end(self, template_id: int) -> ScriptAnswer:
        """No claim and no grant from now (end.lua)."""
        reply = await self._end(keys=[template_keys(template_id).meta], args=[])
        return _answer(reply)

    async def quantity_figures(self, template_id: int) -> tuple[int | None, int | None]:
        """(total, remaining) as Redis has them; None where Redis has nothing."""
        keys = template_keys(template_id)
        return await sale_totals(self._redis, keys.meta, keys.stock)

    async def remaining(self, template_ids: Sequence[int]) -> dict[int, int]:
        """What is left of several templates in one round trip (0 where Redis has none)."""
        stocks = [template_keys(t).stock for t in template_ids]
        values = await remaining_stock(self._redis, stocks)
        return dict(zip(template_ids, values, strict=True))

    async def probe(self) -> None:
        """Readiness: run the real claim script (catches a lost script cache), touching
        nothing: template 0 never exists, so the script answers not_found."""
        keys = template_keys(0)
        replies = await self._claim(
            keys=[keys.meta, keys.stock, keys.users, keys.outbox, keys.idempotency, keys.rate("p")],
            args=[0, 0, 2, "probe", f"0-{'0' * 32}"],
        )
        if _text(replies[0][0]) != Outcome.NOT_FOUND:
            raise RuntimeError(f"unexpected probe answer {replies!r}")
