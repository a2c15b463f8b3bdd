"""Redis keys of the groupbuy service, in one place.

Every key of a campaign AND of its groups carries the campaign's hash tag {c<id>}
(gb:{c7}:stock, gb:{c7}:g:<group id>:members, ...). Opening a group takes the group's N
units from the campaign stock and creates the group in one script, so the two must
share a Redis Cluster slot; see docs/groupbuy.md, "Redis layout and Redis Cluster".
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.stream_outbox import RELAY_GROUP

__all__ = ["CAMPAIGNS", "RELAY_GROUP", "CampaignKeys", "campaign_keys", "campaign_of_outbox"]

# Campaign ids whose outbox the relay publishes and whose deadlines the sweeper watches.
CAMPAIGNS = "gb:campaigns"


@dataclass(frozen=True, slots=True)
class CampaignKeys:
    tag: str
    # hash: window, size, prices, limits (written at warm-up, rewritten by an edit while
    # upcoming), `total` (the stock total Redis has applied: restock.lua) and `closed`
    # ('', 'ended', 'cancelled': end.lua, cancel.lua)
    meta: str
    stock: str  # units not yet taken by a group
    users: str  # hash: user -> groups the user takes part in (open or completed)
    outbox: str  # stream of group.* events
    deadlines: str  # sorted set: open group id -> deadline (ms)
    # hash: Idempotency-Key record field -> first outcome of an open or join; expires
    # after the campaign's last group could close (docs/idempotency.md)
    idempotency: str

    def group(self, group_id: str) -> str:
        """Hash: state, leader, size, n (members), opened, deadline, completed, how."""
        return f"{self.tag}:g:{group_id}"

    def members(self, group_id: str) -> str:
        """Sorted set: member user id -> position (1 is the leader)."""
        return f"{self.tag}:g:{group_id}:members"


def campaign_keys(campaign_id: int) -> CampaignKeys:
    tag = f"gb:{{c{campaign_id}}}"
    return CampaignKeys(
        tag=tag,
        meta=f"{tag}:meta",
        stock=f"{tag}:stock",
        users=f"{tag}:users",
        outbox=f"{tag}:outbox",
        deadlines=f"{tag}:deadlines",
        idempotency=f"{tag}:idem",
    )


def campaign_of_outbox(stream: str) -> int:
    """gb:{c42}:outbox -> 42"""
    return int(stream[len("gb:{c") : stream.index("}")])
