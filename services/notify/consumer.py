"""Consumes orders, groupbuy and seckill.reservations and queues the messages their events
ask for. The batch's rows are written in one transaction (consent claimed, rate limit
applied) before the consumer commits its offsets: a redelivered batch is a no-op."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from services.common.kafka import Incoming, PermanentError
from services.common.settings import Settings
from services.notify.domain import Intent, InvalidEvent, intents_for
from services.notify.metrics import NotifyMetrics
from services.notify.repository import EnqueueResult, NotifyRepository

log = logging.getLogger(__name__)


class EventHandler:
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

    async def __call__(self, batch: Sequence[Incoming]) -> None:
        intents: list[Intent] = []
        for item in batch:
            try:
                intents.extend(intents_for(item.event))
            except InvalidEvent as exc:
                # Raised for the batch: the consumer splits it and dead-letters this one.
                raise PermanentError(f"{item.event.type} {item.event.id}: {exc}") from exc
        if intents:
            await enqueue(self._repo, intents, self._settings, self._metrics, self._on_queued)


async def enqueue(
    repo: NotifyRepository,
    intents: Sequence[Intent],
    settings: Settings,
    metrics: NotifyMetrics,
    on_queued: Callable[[], None],
) -> EnqueueResult:
    result = await repo.enqueue(intents, settings.notify_rate_limit_per_hour)
    for i in result.queued:
        metrics.queued.labels(i.template).inc()
    for i in result.no_consent:
        metrics.no_consent.labels(i.template).inc()
    for i in result.rate_limited:
        metrics.rate_limited.labels(i.template).inc()
    metrics.duplicates.inc(len(result.duplicates))
    if result.rate_limited:
        log.info("rate limit dropped %d messages", len(result.rate_limited))
    if result.queued:
        on_queued()
    return result
