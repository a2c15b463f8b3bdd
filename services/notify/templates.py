"""The provider template id each kind of message is sent with: the one a merchant set in
the console (notify.templates) wins over NOTIFY_TEMPLATE_IDS, and a kind neither names is
sent with its own name.

Every notify process reads the stored ids at most once per NOTIFY_TEMPLATE_CACHE_SECONDS,
so a change reaches every process within that time without a query per message; the
process that served the change forgets its copy at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

import asyncpg

from services.notify.domain import effective_template_ids, provider_template_id
from services.notify.repository import NotifyRepository

log = logging.getLogger(__name__)


class TemplateIds:
    def __init__(self, repo: NotifyRepository, defaults: Mapping[str, str], ttl: float) -> None:
        self._repo = repo
        self.defaults: Mapping[str, str] = dict(defaults)
        self._ttl = ttl
        self._ids: Mapping[str, str] = self.defaults
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self._read_at is not None and time.monotonic() - self._read_at < self._ttl

    async def ids(self) -> Mapping[str, str]:
        if self._fresh():
            return self._ids
        async with self._lock:
            if not self._fresh():
                try:
                    stored = await self._repo.stored_templates()
                    self._ids = effective_template_ids(self.defaults, stored)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    # Keep sending with the ids last read (the defaults before any read):
                    # a message is better sent with the previous id than held back.
                    log.warning("reading the template ids failed, keeping the last: %r", exc)
                self._read_at = time.monotonic()
        return self._ids

    async def provider_id(self, kind: str) -> str:
        return provider_template_id(await self.ids(), kind)

    def forget(self) -> None:
        """A merchant changed an id through this process: read them again at once."""
        self._read_at = None
