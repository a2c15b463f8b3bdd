""" "Sale starting soon" (预热): a periodic task that queues a reminder for each subscriber
of an activity starting within notify_reminder_lead_seconds. Idempotent per activity and
user (the delivery row's unique key), safe with several replicas (the same transaction
rules as the consumer: consent claimed once, per-user lock)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from services.common.settings import Settings
from services.notify.consumer import enqueue
from services.notify.domain import sale_starting_intent
from services.notify.metrics import NotifyMetrics
from services.notify.repository import NotifyRepository

log = logging.getLogger(__name__)

BATCH = 500


class Reminders:
    def __init__(
        self,
        repo: NotifyRepository,
        settings: Settings,
        metrics: NotifyMetrics,
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self._repo = repo
        self._settings = settings
        self._metrics = metrics
        self._on_queued = on_queued

    async def run_once(self) -> int:
        """Queue the reminders due now; returns how many rows were written."""
        written = 0
        while True:
            lead = self._settings.notify_reminder_lead_seconds
            rows = await self._repo.due_reminders(lead, BATCH)
            if not rows:
                return written
            now = datetime.now(UTC)
            intents = [
                sale_starting_intent(
                    r["activity_id"], r["title"], r["starts_at"], r["user_id"], now
                )
                for r in rows
            ]
            result = await enqueue(
                self._repo, intents, self._settings, self._metrics, self._on_queued
            )
            written += len(intents) - len(result.duplicates)
            if len(rows) < BATCH or not written:
                return written

    async def run(self) -> None:
        while True:
            try:
                queued = await self.run_once()
                if queued:
                    log.info("queued %d sale-starting reminders", queued)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._metrics.dispatch_failures.inc()
                log.warning("reminder round failed: %r", exc)
            await asyncio.sleep(self._settings.notify_reminder_interval_seconds)
