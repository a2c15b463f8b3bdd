"""The event envelope shared by every topic (docs/architecture.md, "Events"), serialized
with orjson.

{"id": "<uuid>", "type": "<type>", "v": 1, "at": "<RFC 3339 UTC>", "key": "<partition key>",
 "data": {...}}
"""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

ENVELOPE_VERSION = 1

# Event types (the topic each travels on: docs/architecture.md, "Events").
SECKILL_RESERVED = "seckill.reserved"
SECKILL_RELEASED = "seckill.released"
# A merchant cancelled a flash sale (key "a<activity id>"): its unpaid orders are cancelled.
SECKILL_CANCELLED = "seckill.cancelled"
ORDER_CREATED = "order.created"
ORDER_PAID = "order.paid"
ORDER_CANCELLED = "order.cancelled"
ORDER_PAYMENT_DUE = "order.payment_due"
ORDER_REFUND_REQUESTED = "order.refund_requested"
GROUP_OPENED = "group.opened"
GROUP_JOINED = "group.joined"
GROUP_COMPLETED = "group.completed"
GROUP_FAILED = "group.failed"
USER_REGISTERED = "user.registered"
# Coupons (docs/coupons.md, "Events"), key = user id: one user's coupon events keep their
# order. claimed/granted come from the Redis outbox (claim.lua, grant.lua); the others
# from the coupon service's PostgreSQL outbox.
COUPON_CLAIMED = "coupon.claimed"
COUPON_GRANTED = "coupon.granted"
COUPON_LOCKED = "coupon.locked"
COUPON_USED = "coupon.used"
COUPON_RELEASED = "coupon.released"
COUPON_EXPIRED = "coupon.expired"
COUPON_EXPIRING = "coupon.expiring"
COUPON_REVOKED = "coupon.revoked"

# Deterministic event ids: the same fact re-published (outbox retry, reclaim) keeps its
# id, so consumers deduplicate on it.
_EVENT_NAMESPACE = uuid.UUID("6f1c3c52-9a7e-4c55-9d0e-0b1f6a2f5e11")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class MalformedEvent(ValueError):
    """A message that is not a valid envelope: never retried, dead-lettered."""


def event_id_for(event_type: str, natural_key: str) -> str:
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"{event_type}:{natural_key}"))


_ORDER_NAMESPACE = uuid.UUID("a7d4c1e2-5b3f-4e8a-9c6d-2f1e0b7a8c93")


def order_id_for(reservation_id: str) -> uuid.UUID:
    """The id of the order a reservation (or a group member's seat) becomes. Derived, not
    random: a redelivered reservation maps to the same order, and the seckill service can
    name the order before the order service has created it."""
    return uuid.uuid5(_ORDER_NAMESPACE, reservation_id)


def rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:  # naive: local time, as datetime.astimezone reads it
        moment = moment.astimezone(UTC)
    return rfc3339_ms((moment - _EPOCH) // _MS)


def rfc3339_ms(ms: int) -> str:
    """UTC, millisecond precision, from epoch milliseconds. On the relay's path (three
    per event): the per-second prefix is cached, the rest is integer formatting."""
    seconds, millis = divmod(ms, 1000)
    return f"{_second_prefix(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=4096)
def _second_prefix(seconds: int) -> str:
    t = time.gmtime(seconds)
    # Not strftime's %Y: glibc writes the year 55 as "55", which is no RFC 3339 time.
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    )


def from_epoch_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(frozen=True, slots=True)
class Envelope:
    id: str
    type: str
    key: str
    data: dict[str, Any]
    at: str = field(default_factory=lambda: rfc3339(datetime.now(UTC)))
    v: int = ENVELOPE_VERSION

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "type": self.type,
                "v": self.v,
                "at": self.at,
                "key": self.key,
                "data": self.data,
            }
        )

    @classmethod
    def decode(cls, raw: bytes | None) -> Envelope:
        if raw is None:
            raise MalformedEvent("empty message")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedEvent(f"not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise MalformedEvent("envelope is not an object")
        try:
            env = cls(
                id=body["id"],
                type=body["type"],
                key=body["key"],
                data=body["data"],
                at=body["at"],
                v=body["v"],
            )
        except KeyError as exc:
            raise MalformedEvent(f"envelope misses {exc.args[0]!r}") from exc
        if not all(isinstance(x, str) for x in (env.id, env.type, env.key, env.at)):
            raise MalformedEvent("id, type, key and at must be strings")
        if not isinstance(env.data, dict):
            raise MalformedEvent("data must be an object")
        # type() check: True and 1.0 compare equal to 1 but are not version 1.
        if type(env.v) is not int or env.v != ENVELOPE_VERSION:
            raise MalformedEvent(f"unsupported envelope version {env.v!r}")
        return env
