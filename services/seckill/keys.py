"""Redis keys of the seckill service, in one place.

Every key of one activity carries the hash tag {a<id>} so a script's keys live in one
Redis Cluster slot.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.stream_outbox import RELAY_GROUP

__all__ = ["ACTIVITIES", "RELAY_GROUP", "ActivityKeys", "activity_keys", "activity_of_outbox"]

# The set of activity ids the outbox relay watches (not touched by scripts).
ACTIVITIES = "sk:activities"


@dataclass(frozen=True, slots=True)
class ActivityKeys:
    tag: str
    meta: str
    stock: str
    users: str
    reservations: str
    outbox: str
    # Hash: Idempotency-Key record field -> the press's first outcome; expires with the sale.
    idempotency: str
    # Hash: the merchant's board counters, presses and sold_out (display counters, flushed
    # from every API process's memory: services/seckill/board.py).
    board: str

    def rate(self, user_id: str) -> str:
        return f"{self.tag}:rl:{user_id}"


def activity_keys(activity_id: int) -> ActivityKeys:
    tag = f"sk:{{a{activity_id}}}"
    return ActivityKeys(
        tag=tag,
        meta=f"{tag}:meta",
        stock=f"{tag}:stock",
        users=f"{tag}:users",
        reservations=f"{tag}:res",
        outbox=f"{tag}:outbox",
        idempotency=f"{tag}:idem",
        board=f"{tag}:board",
    )


def activity_of_outbox(stream: str) -> int:
    """sk:{a42}:outbox -> 42"""
    return int(stream[len("sk:{a") : stream.index("}")])
