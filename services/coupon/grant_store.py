"""Redis adapter of 下单返券: grant.lua takes one coupon of a template for one
(paid order, rule), at most once (docs/coupons.md, "Events": coupon.granted)."""

from __future__ import annotations

from typing import cast

from redis.asyncio import Redis

from services.common.lua import lua_source
from services.coupon.keys import template_keys
from services.coupon.lifecycle_domain import GrantDecision, GrantOutcome


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class GrantStore:
    def __init__(self, redis: Redis) -> None:
        # register_script: reloads itself after NOSCRIPT (Redis restart or failover).
        self._grant = redis.register_script(lua_source("services.coupon", "grant.lua"))

    async def grant(
        self, template_id: int, order_id: str, rule_id: int, user_id: str, coupon_id: str
    ) -> GrantDecision:
        """Grant coupon_id (new_owned_id(template_id)) to user_id for (order_id, rule_id),
        or answer the pair's first outcome. Safe to repeat."""
        keys = template_keys(template_id)
        reply = cast(
            list[bytes],
            await self._grant(
                keys=[keys.meta, keys.stock, keys.outbox, keys.grants],
                args=[order_id, rule_id, user_id, coupon_id],
            ),
        )
        kind = _text(reply[0])
        if kind == "granted":
            return GrantDecision(
                GrantOutcome.GRANTED,
                _text(reply[1]),
                from_ms=int(reply[2]),
                until_ms=int(reply[3]),
                at_ms=int(reply[4]),
            )
        if kind == "duplicate":
            first = _text(reply[1])
            if first == GrantOutcome.EXHAUSTED.value:
                return GrantDecision(GrantOutcome.EXHAUSTED, None, duplicate=True)
            return GrantDecision(GrantOutcome.GRANTED, first, duplicate=True)
        return GrantDecision(GrantOutcome(kind), None)

    async def probe(self) -> None:
        """Readiness: run the real grant script (catches a lost script cache), touching
        nothing: template 0 never exists, so the script answers unknown."""
        decision = await self.grant(0, "probe", 0, "probe", f"0-{'0' * 32}")
        if decision.outcome is not GrantOutcome.UNKNOWN:
            raise RuntimeError(f"unexpected grant probe answer {decision!r}")
