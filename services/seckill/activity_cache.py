"""Activities as the shoppers' pages read them, cached in this process for a short time.

Browsing at a sale's opening reads one activity thousands of times a second; the cache
spares PostgreSQL that. Activities change while shoppers browse (a merchant's edit, end
or cancel), and another seckill process cannot tell this one, so an entry is trusted for
`ttl` seconds at most (SECKILL_ACTIVITY_CACHE_SECONDS): a change shows on every process's
pages within that time, and at once on the process that made it (forget). Presses never read it:
whether a press is taken is decided by the reserve script on the Redis settings, which
the change itself rewrites.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from services.seckill.domain import Activity

# Entries of past sales are dropped past this many (a bound, not a tuning knob).
MAX_ENTRIES = 10_000


class ActivityCache:
    def __init__(
        self,
        load: Callable[[int], Awaitable[Activity | None]],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl = ttl
        self._clock = clock
        self._seen: dict[int, tuple[Activity, float]] = {}

    async def get(self, activity_id: int) -> Activity | None:
        now = self._clock()
        hit = self._seen.get(activity_id)
        if hit is not None and now - hit[1] < self._ttl:
            return hit[0]
        found = await self._load(activity_id)
        if found is None:
            self._seen.pop(activity_id, None)
            return None
        self.put(found)
        return found

    def put(self, activity: Activity) -> None:
        if len(self._seen) >= MAX_ENTRIES and activity.id not in self._seen:
            self._seen.clear()
        self._seen[activity.id] = (activity, self._clock())

    def forget(self, activity_id: int) -> None:
        self._seen.pop(activity_id, None)
