"""Settles groups past their deadline: fails them, or completes them virtually when the
campaign allows it and enough real members joined (expire.lua decides, atomically).

Safe with several replicas and against a last-second join: the script is idempotent on
the group's state and refuses to act before the deadline, where joins stop.
"""

from __future__ import annotations

import asyncio
import logging
import time

from services.common.settings import Settings
from services.groupbuy.metrics import GroupbuyMetrics
from services.groupbuy.store import GroupStore

log = logging.getLogger(__name__)


class GroupSweeper:
    def __init__(self, store: GroupStore, settings: Settings, metrics: GroupbuyMetrics) -> None:
        self._store = store
        self._settings = settings
        self._metrics = metrics

    async def sweep_once(self) -> dict[str, int]:
        """One round over every campaign; counts of groups failed and completed."""
        counts = {"failed": 0, "virtual": 0}
        for campaign_id in await self._store.campaigns():
            await self._sweep(campaign_id, counts)
        if counts["failed"] or counts["virtual"]:
            log.info("sweep: %(failed)d groups failed, %(virtual)d completed virtually", counts)
        return counts

    async def sweep_campaign(self, campaign_id: int) -> dict[str, int]:
        """Every due group of one campaign, batch after batch: a cancelled campaign's
        open groups fail at once rather than at the next round (cancel.lua made them
        all due)."""
        counts = {"failed": 0, "virtual": 0}
        while await self._sweep(campaign_id, counts):
            pass
        return counts

    async def _sweep(self, campaign_id: int, counts: dict[str, int]) -> bool:
        """One batch of one campaign; whether more may be due (a full batch that settled
        something: a group the script finds not due stays in the set)."""
        batch = self._settings.groupbuy_sweep_batch_size
        now_ms = int(time.time() * 1000)
        due = await self._store.due_groups(campaign_id, now_ms, batch)
        before = counts["failed"] + counts["virtual"]
        for group_id in due:
            settled = await self._store.expire_group(campaign_id, group_id)
            if settled.result == "failed":
                counts["failed"] += 1
                self._metrics.failed.inc()
            elif settled.result == "virtual":
                counts["virtual"] += 1
                self._metrics.completed.labels("virtual").inc()
                self._metrics.time_to_complete.observe(
                    max(0.0, now_ms / 1000 - settled.opened_ms / 1000)
                )
        return len(due) == batch and counts["failed"] + counts["virtual"] > before

    async def run(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._metrics.sweeper_failures.inc()
                log.warning("group sweep failed: %r", exc)
            await asyncio.sleep(self._settings.groupbuy_sweep_interval_seconds)
