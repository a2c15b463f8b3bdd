"""Per-address limit on shopper logins (a fixed window in Redis, one script call).

The gateway limits every address too; this one holds behind any gateway and across
replicas. When Redis does not answer, logins go through unthrottled (counted): refusing
every shopper's login because a counter is unreachable would be worse than a window
without the in-service limit.
"""

from __future__ import annotations

import logging
import math

from redis.asyncio import Redis

from services.common.errors import DomainError
from services.common.lua import lua_source
from services.common.resources import REDIS_UNANSWERED
from services.identity.domain import trusted_networks, within
from services.identity.keys import login_window
from services.identity.metrics import IdentityMetrics

log = logging.getLogger(__name__)
WINDOW_MS = 60_000


class LoginThrottle:
    def __init__(
        self, redis: Redis, per_minute: int, exempt_cidrs: str, metrics: IdentityMetrics
    ) -> None:
        self._script = redis.register_script(lua_source("services.identity", "fixed_window.lua"))
        self._limit = per_minute
        # The gateway's exempt addresses (loopback by default: a local load test logs in
        # thousands of shoppers from one address) are exempt here too.
        self._exempt = trusted_networks(exempt_cidrs)
        self._metrics = metrics

    async def check(self, client_ip: str) -> None:
        """Count one login from client_ip; 429 with Retry-After past the limit."""
        if self._limit <= 0 or within(client_ip, self._exempt):
            return
        try:
            hits, ttl_ms = await self._script(keys=[login_window(client_ip)], args=[WINDOW_MS])
        except REDIS_UNANSWERED as exc:
            self._metrics.throttle_skipped.inc()
            log.warning("login throttle skipped, Redis unavailable: %r", exc)
            return
        if int(hits) > self._limit:
            retry = max(1, math.ceil(int(ttl_ms) / 1000))
            raise DomainError(
                429,
                "rate_limited",
                f"too many logins from this address: retry in {retry} s",
                {"Retry-After": str(retry)},
            )
