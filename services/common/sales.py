"""What a flash-sale activity and a group-buy campaign share: a window, a stock, and the
status a shopper sees. Pure rules, no I/O."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    UPCOMING = "upcoming"
    LIVE = "live"
    SOLD_OUT = "sold_out"
    ENDED = "ended"


def sale_status(
    starts_at: datetime, ends_at: datetime, remaining: int, now: datetime, smallest_sale: int = 1
) -> Status:
    """smallest_sale: the fewest units one purchase takes (a group-buy group takes N)."""
    if now >= ends_at:
        return Status.ENDED
    if now < starts_at:
        return Status.UPCOMING
    return Status.SOLD_OUT if remaining < smallest_sale else Status.LIVE


def warm_up_pending(view: dict[str, Any]) -> dict[str, Any]:
    """The created sale's view when Redis did not take its stock yet (answered 202): it is
    recorded and is warmed in the background as soon as Redis answers; creating it again
    would make a second sale."""
    return {
        **view,
        "warm_up": "pending",
        "message": "created; its stock is loaded into Redis as soon as Redis answers "
        "(do not create it again)",
    }
