"""What is left of a sale (a flash sale's stock, a coupon template's quantity) as the
shoppers' pages show it, read from Redis at most once per max_age per sale and process.

When a sale starts every shopper loads its page at once: with one Redis round trip per
page load, the activity page's p95 in `make loadtest`'s spike is ~1.3 s while presses
stay fast. A page shows what is left up to max_age old (plus one Redis call while a
refresh is under way); whether a press or a claim gets a unit is decided by its script
alone, so nothing can be oversold by it.
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
        self._seen: dict[int, tuple[int, float]] = {}  # sale -> (remaining, read at)
        self._refreshing: set[int] = set()

    async def remaining(self, sale_ids: Sequence[int]) -> dict[int, int]:
        now = self._clock()
        out: dict[int, int] = {}
        stale: list[int] = []
        for sale_id in sale_ids:
            hit = self._seen.get(sale_id)
            # While one request refreshes a value, the others show the one it replaces
            # rather than all asking Redis at once.
            if hit is not None and (now - hit[1] < self._max_age or sale_id in self._refreshing):
                out[sale_id] = hit[0]
            else:
                stale.append(sale_id)
        if stale:
            self._refreshing.update(stale)
            try:
                loaded = await self._load(stale)
            finally:
                self._refreshing.difference_update(stale)
            read_at = self._clock()
            for sale_id in stale:
                self._seen[sale_id] = (loaded[sale_id], read_at)
                out[sale_id] = loaded[sale_id]
        return out
