"""Keeps the WeChat platform access_token fresh in Redis for every service that sends.

One keeper runs in each identity replica; a Redis lock (SET NX PX) lets one of them fetch
at a time, and whoever holds it looks again before fetching, so a token another replica
just stored is not replaced (each forced fetch invalidates the previous token). Readers
(notify) report a refused token (services/common/wechat_token.py); the keeper then fetches
a new one at its next check, within wechat_token_check_seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis

from services.common.lua import lua_source
from services.common.settings import Settings
from services.common.wechat_token import (
    AccessToken,
    reported_invalid,
    token_keys,
)
from services.identity.domain import ProviderUnavailable, plan_token_fetch, token_from_answer
from services.identity.metrics import IdentityMetrics
from services.identity.provider import WeChatApi

log = logging.getLogger(__name__)


class AccessTokenKeeper:
    def __init__(
        self, redis: Redis, api: WeChatApi, settings: Settings, metrics: IdentityMetrics
    ) -> None:
        self._redis = redis
        self._api = api
        self._settings = settings
        self._metrics = metrics
        self._keys = token_keys(settings.wechat_appid)
        self._release = redis.register_script(lua_source("services.identity", "release_lock.lua"))
        # Longer than a fetch may take, so the lock outlives its holder's call.
        self._lock_ms = int((settings.wechat_timeout_seconds + 5) * 1000)

    async def run(self) -> None:
        while True:
            try:
                await self.check_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("access_token check failed: %r", exc)
            await asyncio.sleep(self._settings.wechat_token_check_seconds)

    async def check_once(self) -> bool:
        """Fetch if the token is missing, expiring or reported invalid; True if fetched."""
        current = await self._current()
        invalid = await reported_invalid(self._redis, self._settings.wechat_appid)
        if plan_token_fetch(current, invalid, time.time(), self._ahead) is None:
            return False
        holder = self._settings.instance_id
        if not await self._redis.set(self._keys.lock, holder, nx=True, px=self._lock_ms):
            return False
        try:
            return await self._fetch_if_still_needed()
        finally:
            await self._release(keys=[self._keys.lock], args=[holder])

    @property
    def _ahead(self) -> float:
        return self._settings.wechat_token_refresh_ahead_seconds

    async def _current(self) -> AccessToken | None:
        current = AccessToken.decode(await self._redis.get(self._keys.token))
        left = current.seconds_left() if current else -1.0
        self._metrics.token_seconds_left.set(max(left, -1.0))
        return current

    async def _fetch_if_still_needed(self) -> bool:
        # Under the lock: another replica may have fetched since we looked.
        current = await self._current()
        invalid = await reported_invalid(self._redis, self._settings.wechat_appid)
        now = time.time()
        plan = plan_token_fetch(current, invalid, now, self._ahead)
        if plan is None:
            return False
        try:
            fresh = token_from_answer(await self._api.stable_token(plan.force), time.time())
        except ProviderUnavailable as exc:
            self._metrics.token_fetches.labels("error", plan.reason).inc()
            log.warning("access_token fetch (%s) failed: %s", plan.reason, exc.detail)
            return False
        ttl_ms = max(1, int(fresh.seconds_left() * 1000))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._keys.token, fresh.encode(), px=ttl_ms)
            pipe.delete(self._keys.invalid)
            await pipe.execute()
        self._metrics.token_fetches.labels("ok", plan.reason).inc()
        self._metrics.token_seconds_left.set(fresh.seconds_left())
        log.info("access_token fetched (%s), valid for %.0f s", plan.reason, fresh.seconds_left())
        return True
