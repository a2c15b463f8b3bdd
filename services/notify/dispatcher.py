"""Sends queued messages through the channel, with retries, and dead-letters the ones
given up on.

Delivery guarantee. A row is leased ('sending', locked_until) before its request leaves
and its outcome is recorded after the provider answered; only the lease holder (same
attempts count) can record it. Up to notify_dispatch_concurrency sends are in flight, each
bounded by the send timeout, so a provider hanging for one user holds one slot for at
most the timeout while the others keep going. A dispatcher that dies mid-send leaves the
row leased; once the lease ran out another (or the restarted) dispatcher sends it again.
That resend is the one place a user can get a message twice: only if the provider had
accepted the first request and we died before recording it (a window of one database
round trip per message); the WeChat API has no idempotency key to close it. Counted by
notify_resumed_sends_total; see docs/operations.md.

Recipients. A message goes to its user's openid; the http channel never gets our user
id. Messages of users not registered yet wait ('waiting', holding no consent); the
registration admits them (consumer.RecipientHandler) and run_waiting() gives up on those
still waiting after NOTIFY_RECIPIENT_WAIT_SECONDS (dead, reason recipient_unknown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from services.common.kafka import publish_all
from services.common.settings import Settings
from services.common.topics import NOTIFY_DLQ
from services.notify.channels import Channel, OutgoingMessage, SendResult
from services.notify.consumer import count_admitted
from services.notify.domain import (
    SendOutcome,
    backoff_seconds,
    dead_letter_event,
    next_step,
    recipient_unknown_reason,
    touser_for,
)
from services.notify.metrics import NotifyMetrics
from services.notify.repository import Delivery, NotifyRepository
from services.notify.templates import TemplateIds

log = logging.getLogger(__name__)

DLQ_BATCH = 100
WAITING_BATCH = 500


class Dispatcher:
    def __init__(
        self,
        repo: NotifyRepository,
        channel: Channel,
        settings: Settings,
        metrics: NotifyMetrics,
        producer: AIOKafkaProducer,
        templates: TemplateIds,
    ) -> None:
        self._repo = repo
        self._channel = channel
        self._settings = settings
        self._metrics = metrics
        self._producer = producer
        self._templates = templates
        self._wake = asyncio.Event()
        self._dlq_wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        if settings.notify_sending_lease_seconds <= channel.longest_send_seconds:
            # A lease running out under a live send would let another dispatcher send the
            # message again while the first is still waiting for its answer.
            raise ValueError(
                "NOTIFY_SENDING_LEASE_SECONDS must exceed the longest send "
                f"({channel.longest_send_seconds} s: the send timeout, and with a shared "
                "access_token twice that plus NOTIFY_TOKEN_WAIT_SECONDS)"
            )

    def wake(self) -> None:
        """New rows were queued: look now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Claim due rows while slots are free; each send is its own task."""
        concurrency = max(1, self._settings.notify_dispatch_concurrency)
        poll = self._settings.notify_dispatch_poll_seconds
        failures = 0
        try:
            while True:
                self._wake.clear()
                free = concurrency - len(self._in_flight)
                claimed: list[Delivery] = []
                if free > 0:
                    try:
                        claimed = await self._repo.claim_due(
                            free,
                            self._settings.notify_sending_lease_seconds,
                            self._settings.wechat_appid,
                        )
                        failures = 0
                    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                        failures += 1
                        self._metrics.dispatch_failures.inc()
                        log.warning("claiming deliveries failed: %r", exc)
                        await asyncio.sleep(min(5.0, 0.1 * 2**failures))
                        continue
                for delivery in claimed:
                    task = asyncio.create_task(self._deliver(delivery), name="notify-send")
                    self._in_flight.add(task)
                    task.add_done_callback(self._done)
                if len(claimed) == free and free > 0:
                    continue  # maybe more due: claim again right away
                await self._wait(poll)
        finally:
            # In-flight sends get their timeout to finish and record their outcome; a
            # send cut off here stays leased and is resent after the lease.
            if self._in_flight:
                await asyncio.wait(self._in_flight, timeout=self._channel.longest_send_seconds + 2)
                for task in self._in_flight:
                    task.cancel()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wake.set()  # a slot is free
        if not task.cancelled() and task.exception() is not None:
            log.error("send task failed: %r", task.exception())

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _deliver(self, d: Delivery) -> None:
        if d.resumed:
            self._metrics.resumed.inc()
            log.warning(
                "resending a message whose previous send was cut off",
                extra={"delivery": d.id, "attempt": d.attempts},
            )
        touser = touser_for(d.user_id, d.openid, self._channel.name)
        if touser is None:
            # Queued while the openid was known, unknown now (the appid setting changed):
            # never sent to our id; retried, then dead-lettered like any failure.
            reason = recipient_unknown_reason(d.user_id, self._settings.wechat_appid)
            await self._record(d, SendResult(SendOutcome.RETRYABLE, reason))
            return
        message = OutgoingMessage(
            touser=touser,
            template_id=await self._templates.provider_id(d.template),
            page=d.page,
            data=d.data,
        )
        try:
            async with asyncio.timeout(self._channel.longest_send_seconds):
                result = await self._channel.send(message)
        except TimeoutError:
            result = SendResult(SendOutcome.RETRYABLE, "timeout")
        await self._record(d, result)

    async def _record(self, d: Delivery, result: SendResult) -> None:
        channel = self._channel.name
        self._metrics.messages.labels(d.template, channel, result.outcome.value).inc()
        # Recording is retried while the database is away: the send happened (or not)
        # and the row must say so; giving up would resend it after the lease.
        for attempt in range(1, 6):
            try:
                await self._record_once(d, result, channel)
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("recording a send outcome failed (%d): %r", attempt, exc)
                await asyncio.sleep(0.2 * 2**attempt)

    async def _record_once(self, d: Delivery, result: SendResult, channel: str) -> None:
        if result.outcome is SendOutcome.SENT:
            if await self._repo.mark_sent(d, channel):
                self._metrics.latency.labels(d.template).observe(
                    max(0.0, time.time() - d.event_at.timestamp())
                )
            return
        step = next_step(result.outcome, d.attempts, self._settings.notify_max_attempts)
        if step == "refused":
            await self._repo.mark_refused(d, result.detail, channel)
            log.info("user refused template %s: consent revoked", d.template)
        elif step == "dead":
            if await self._repo.mark_dead(d, result.detail, channel):
                self._metrics.messages.labels(d.template, channel, "dead").inc()
                self._dlq_wake.set()
        else:
            delay = backoff_seconds(
                d.attempts,
                self._settings.notify_backoff_base_seconds,
                self._settings.notify_backoff_max_seconds,
            )
            if await self._repo.mark_retry(d, delay, result.detail, channel):
                self._metrics.retries.labels(d.template).inc()

    async def settle_waiting(self) -> int:
        """One round over messages waiting for a recipient: admit those whose user is
        known by now, give up on those past their deadline. Returns rows changed."""
        appid = self._settings.wechat_appid
        admitted = await self._repo.admit_known_waiting(
            appid, self._settings.notify_rate_limit_per_hour, WAITING_BATCH
        )
        count_admitted(self._metrics, admitted)
        if any(outcome == "pending" for _, outcome in admitted):
            self.wake()
        dead = await self._repo.give_up_waiting(
            WAITING_BATCH, lambda user: recipient_unknown_reason(user, appid)
        )
        # Not in notify_messages_total: nothing was sent, and the provider's failure rate
        # (what alerts read there) must not rise for registrations that did not come.
        for row in dead:
            self._metrics.recipient_unknown.labels(row["template"]).inc()
        if dead:
            log.warning("%d messages given up: no openid known for their users", len(dead))
            self._dlq_wake.set()
        return len(admitted) + len(dead)

    async def run_waiting(self) -> None:
        """settle_waiting() every few polls; the deadline is kept to within one round."""
        while True:
            try:
                if await self.settle_waiting() >= WAITING_BATCH:
                    continue
            except Exception as exc:
                self._metrics.dispatch_failures.inc()
                log.warning("settling waiting messages failed: %r", exc)
            await asyncio.sleep(self._settings.notify_dispatch_poll_seconds * 4)

    async def run_dlq_publisher(self) -> None:
        """Publishes dead rows to notify.dlq (key user id) and marks them published after
        the broker acknowledged; rows a crash left unpublished are found on the next round."""
        topic = self._settings.topic(NOTIFY_DLQ)

        async def publish(rows: list[asyncpg.Record]) -> None:
            events = [
                dead_letter_event(
                    r["event_id"],
                    r["event_type"],
                    r["user_id"],
                    r["template"],
                    r["attempts"],
                    r["last_error"] or "",
                    _json(r["data"]),
                    r["finished_at"] or datetime.now(UTC),
                )
                for r in rows
            ]
            await publish_all(self._producer, topic, events)

        while True:
            self._dlq_wake.clear()
            try:
                n = await self._repo.publish_dead(DLQ_BATCH, publish)
                self._metrics.dead_lettered.inc(n)
                if n == DLQ_BATCH:
                    continue
            except Exception as exc:
                self._metrics.dispatch_failures.inc()
                log.warning("publishing dead letters failed: %r", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.notify_dispatch_poll_seconds * 4):
                    await self._dlq_wake.wait()


def _json(raw: object) -> dict[str, object]:
    value = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    return value if isinstance(value, dict) else {}
