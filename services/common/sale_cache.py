"""Sales (flash-sale activities, group-buy campaigns) as the shoppers' pages read them,
cached in this process for a short time.

Browsing at a sale's opening reads one sale thousands of times a second; the cache spares
PostgreSQL that. Sales change while shoppers browse (a merchant's edit, end or cancel),
and another process cannot tell this one, so an entry is trusted for `ttl` seconds at
most: a change shows on every process's pages within that time, and at once on the
process that made it (forget). Presses, opens and joins never read it: the Redis scripts
decide them, on the Redis settings the change itself rewrites.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar


class Sale(Protocol):
    @property
    def id(self) -> int: ...


S = TypeVar("S", bound=Sale)

# Entries of past sales are dropped past this many (a bound, not a tuning knob).
MAX_ENTRIES = 10_000


class SaleCache(Generic[S]):
    def __init__(
        self,
        load: Callable[[int], Awaitable[S | None]],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl = ttl
        self._clock = clock
        self._seen: dict[int, tuple[S, float]] = {}

    async def get(self, sale_id: int) -> S | None:
        now = self._clock()
        hit = self._seen.get(sale_id)
        if hit is not None and now - hit[1] < self._ttl:
            return hit[0]
        found = await self._load(sale_id)
        if found is None:
            self._seen.pop(sale_id, None)
            return None
        self.put(found)
        return found

    def put(self, sale: S) -> None:
        if len(self._seen) >= MAX_ENTRIES and sale.id not in self._seen:
            self._seen.clear()
        self._seen[sale.id] = (sale, self._clock())

    def forget(self, sale_id: int) -> None:
        self._seen.pop(sale_id, None)
