"""Remaining stock as the activity pages show it, read from Redis at most once per
max_age per activity and process.

When a sale starts every shopper loads its page at once: with one Redis round trip per
page load, the activity page's p95 in `make loadtest`'s spike is ~1.3 s while presses
stay fast. A page shows stock up to max_age old (plus one Redis call while a refresh is
under way); whether a press gets stock is decided by the reserve
script alone, so nothing can be oversold by it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

Load = Callable[[list[int]], Awaitable[dict[int, int]]]


class StockView:
    def __init__(
        self, load: Load, max_age_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._load = load
        self._max_age = max_age_seconds
        self._clock = clock
        self._seen: dict[int, tuple[int, float]] = {}  # activity -> (remaining, read at)
        self._refreshing: set[int] = set()

    async def remaining(self, activity_ids: Sequence[int]) -> dict[int, int]:
        now = self._clock()
        out: dict[int, int] = {}
        stale: list[int] = []
        for activity_id in activity_ids:
            hit = self._seen.get(activity_id)
            # While one request refreshes a value, the others show the one it replaces
            # rather than all asking Redis at once.
            if hit is not None and (
                now - hit[1] < self._max_age or activity_id in self._refreshing
            ):
                out[activity_id] = hit[0]
            else:
                stale.append(activity_id)
        if stale:
            self._refreshing.update(stale)
            try:
                loaded = await self._load(stale)
            finally:
                self._refreshing.difference_update(stale)
            read_at = self._clock()
            for activity_id in stale:
                self._seen[activity_id] = (loaded[activity_id], read_at)
                out[activity_id] = loaded[activity_id]
        return out
