"""What a flash-sale activity and a group-buy campaign share: a window, a stock, and the
status a shopper sees. Pure rules, no I/O."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum


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
