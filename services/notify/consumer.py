"""Consumes orders, groupbuy and seckill.reservations and queues the messages their events
ask for. The batch's rows are written in one transaction (consent claimed, rate limit
applied) before the consumer commits its offsets: a redelivered batch is a no-op.

Consumes `users` too: identity's registrations give each user's openid, which the http
channel addresses; they are recorded (and the user's waiting messages admitted) in one
transaction per batch before the offsets are committed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from services.common.kafka import Incoming, PermanentError
from services.common.settings import Settings
from services.notify.domain import (
    Intent,
    InvalidEvent,
    Recipient,
    intents_for,
    recipient_from,
    recipient_wait,
)
from services.notify.metrics import NotifyMetrics
from services.notify.repository import EnqueueResult, NotifyRepository, RecipientConflict

log = logging.getLogger(__name__)


class QueueingHandler:
    """A consumer's handler that may queue messages; on_queued wakes the dispatcher."""

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


class EventHandler(QueueingHandler):
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
    wait = recipient_wait(
        settings.notify_channel, settings.wechat_appid, settings.notify_recipient_wait_seconds
    )
    result = await repo.enqueue(intents, settings.notify_rate_limit_per_hour, wait)
    for i in result.queued:
        metrics.queued.labels(i.template).inc()
    for i in result.no_consent:
        metrics.no_consent.labels(i.template).inc()
    for i in result.rate_limited:
        metrics.rate_limited.labels(i.template).inc()
    for i in result.waiting:
        metrics.waiting.labels(i.template).inc()
    metrics.duplicates.inc(len(result.duplicates))
    if result.rate_limited:
        log.info("rate limit dropped %d messages", len(result.rate_limited))
    if result.waiting:
        log.info("%d messages wait for their user's openid", len(result.waiting))
    if result.queued:
        on_queued()
    return result


class RecipientHandler(QueueingHandler):
    """user.registered -> notify.recipients, admitting the user's waiting messages."""

    async def __call__(self, batch: Sequence[Incoming]) -> None:
        recipients: list[Recipient] = []
        for item in batch:
            try:
                recipient = recipient_from(item.event)
            except InvalidEvent as exc:
                raise PermanentError(f"{item.event.type} {item.event.id}: {exc}") from exc
            if recipient is not None:
                recipients.append(recipient)
        if not recipients:
            return
        try:
            result = await self._repo.add_recipients(
                recipients, self._settings.wechat_appid, self._settings.notify_rate_limit_per_hour
            )
        except RecipientConflict as exc:
            # The consumer retries the messages one by one and dead-letters this one.
            raise PermanentError(str(exc)) from exc
        count_admitted(self._metrics, result.admitted)
        self._metrics.recipients.inc(len(result.added))
        if any(outcome == "pending" for _, outcome in result.admitted):
            self._on_queued()


def count_admitted(metrics: NotifyMetrics, admitted: Sequence[tuple[str, str]]) -> None:
    """Metrics of waiting messages let go: queued, or dropped by consent or rate limit."""
    for template, outcome in admitted:
        if outcome == "pending":
            metrics.queued.labels(template).inc()
        elif outcome == "no_consent":
            metrics.no_consent.labels(template).inc()
        elif outcome == "rate_limited":
            metrics.rate_limited.labels(template).inc()
