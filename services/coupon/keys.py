"""Redis keys of the coupon service, in one place.

Every key of one template carries the hash tag {t<id>} (cp:{t7}:stock, ...) so that the
claim and grant scripts' keys live in one Redis Cluster slot, like a flash sale's.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.stream_outbox import RELAY_GROUP

__all__ = ["RELAY_GROUP", "TEMPLATES", "TemplateKeys", "template_keys", "template_of_outbox"]

# Template ids whose outbox stream the relay publishes (added once the stream's group exists).
TEMPLATES = "cp:templates"


@dataclass(frozen=True, slots=True)
class TemplateKeys:
    tag: str
    # hash, written at warm-up (and by admin scripts): claimable ('1'/'0'), starts_ms and
    # ends_ms (the claim window, epoch ms; '0' when not claimable), limit (claims per
    # user), validity ('fixed' with from_ms and until_ms, or 'relative' with days), total
    # (the quantity Redis has applied) and closed ('' or 'ended': ended by a merchant)
    meta: str
    stock: str  # coupons not yet issued (claims and grants both take from it)
    users: str  # hash: user -> coupons claimed (the per-user limit; grants do not count)
    # stream of coupon.claimed / coupon.granted entries, fields: type, cid (coupon id),
    # user, from, until, at (epoch ms) and, for grants, order and rule
    outbox: str
    # hash: Idempotency-Key record field -> the claim's first outcome (docs/idempotency.md)
    idempotency: str
    # hash: "<order id>:<rule id>" -> the grant's outcome (a coupon id, or "exhausted"),
    # so a redelivered order.paid grants nothing twice
    grants: str

    def rate(self, user_id: str) -> str:
        return f"{self.tag}:rl:{user_id}"


def template_keys(template_id: int) -> TemplateKeys:
    tag = f"cp:{{t{template_id}}}"
    return TemplateKeys(
        tag=tag,
        meta=f"{tag}:meta",
        stock=f"{tag}:stock",
        users=f"{tag}:users",
        outbox=f"{tag}:outbox",
        idempotency=f"{tag}:idem",
        grants=f"{tag}:grants",
    )


def template_of_outbox(stream: str) -> int:
    """cp:{t42}:outbox -> 42"""
    return int(stream[len("cp:{t") : stream.index("}")])
