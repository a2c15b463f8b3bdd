"""Cancels unpaid orders past their deadline and sends payment reminders, periodically;
and cancels unpaid orders of cancelled sales that a concurrent creation left behind.

Safe with several replicas: each round locks its rows with FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CollectorRegistry, Counter

from services.common.settings import Settings
from services.order.repository import OrderRepository

log = logging.getLogger(__name__)

# A creation that raced a sale's cancellation ran concurrently with it: looking back this
# far after the cancellation was recorded covers any such transaction many times over.
CANCELLED_SALE_SWEEP_WINDOW_SECONDS = 3600.0


class SweeperMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.expired = Counter(
            "order_expired_total", "Unpaid orders cancelled at their deadline.", registry=registry
        )
        self.reminders = Counter(
            "order_payment_reminders_total",
            "order.payment_due reminders emitted.",
            registry=registry,
        )
        self.sale_cancelled = Counter(
            "order_sale_cancelled_swept_total",
            "Unpaid orders of cancelled sales that a creation racing the cancellation left "
            "unpaid, cancelled by the sweeper.",
            registry=registry,
        )
        self.failures = Counter(
            "order_sweeper_failures_total", "Sweeper rounds that failed.", registry=registry
        )


class Sweeper:
    def __init__(
        self, orders: OrderRepository, settings: Settings, metrics: SweeperMetrics
    ) -> None:
        self._orders = orders
        self._settings = settings
        self._metrics = metrics

    async def sweep_once(self) -> tuple[int, int]:
        """One round: (orders cancelled, reminders sent), draining full batches."""
        batch = self._settings.sweep_batch_size
        cancelled = reminded = 0
        while True:
            done = await self._orders.cancel_expired(batch)
            cancelled += len(done)
            if len(done) < batch:
                break
        while True:
            swept = await self._orders.cancel_pending_of_cancelled_sales(
                batch, CANCELLED_SALE_SWEEP_WINDOW_SECONDS
            )
            # Not counted as expired: their sale was cancelled, their deadline may be far.
            self._metrics.sale_cancelled.inc(len(swept))
            if swept:
                log.warning("sweep: %d unpaid orders of cancelled sales cancelled", len(swept))
            if len(swept) < batch:
                break
        while True:
            due = await self._orders.remind_due(batch, self._settings.payment_reminder_lead_seconds)
            reminded += len(due)
            if len(due) < batch:
                break
        if cancelled or reminded:
            self._metrics.expired.inc(cancelled)
            self._metrics.reminders.inc(reminded)
            log.info("sweep: %d orders expired, %d reminders", cancelled, reminded)
        return cancelled, reminded

    async def run(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._metrics.failures.inc()
                log.warning("sweep failed: %r", exc)
            await asyncio.sleep(self._settings.sweep_interval_seconds)
