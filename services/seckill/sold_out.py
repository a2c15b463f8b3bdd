"""In-process sold-out flags: answer 410 without touching Redis once an activity sold out.

A flag is trusted only for a short time (SOLD_OUT_RECHECK_SECONDS), because stock can come
back (a cancelled order, possibly released by another replica; a merchant adding stock
through another process); then one request asks Redis again. The process that returns or
adds the stock clears its own flag at once.
"""

from __future__ import annotations


class SoldOutFlags:
    def __init__(self, recheck_seconds: float) -> None:
        self._recheck = recheck_seconds
        self._seen: dict[int, float] = {}

    def is_sold_out(self, activity_id: int, now: float) -> bool:
        seen = self._seen.get(activity_id)
        return seen is not None and now - seen < self._recheck

    def mark(self, activity_id: int, now: float) -> None:
        self._seen[activity_id] = now

    def clear(self, activity_id: int) -> None:
        self._seen.pop(activity_id, None)
