"""Metrics of the notify service. Labels are bounded: template (a fixed list), channel,
result, state. Never user, event or order ids."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.periodic import every
from services.notify.domain import DELIVERY_STATES
from services.notify.repository import NotifyRepository


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "notify_messages_total",
            "Send attempts by template, channel and result (sent, retryable, refused, "
            "permanent, dead).",
            ["template", "channel", "result"],
            registry=registry,
        )
        self.queued = Counter(
            "notify_queued_total",
            "Messages queued for delivery (consent claimed, under the rate limit).",
            ["template"],
            registry=registry,
        )
        self.retries = Counter(
            "notify_retries_total",
            "Failed sends scheduled for another attempt.",
            ["template"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "notify_rate_limited_total",
            "Messages dropped by the per-user rate limit.",
            ["template"],
            registry=registry,
        )
        self.no_consent = Counter(
            "notify_no_consent_total",
            "Messages not sent because the user had no active consent.",
            ["template"],
            registry=registry,
        )
        self.duplicates = Counter(
            "notify_duplicates_total",
            "Redelivered events whose messages were already queued (no-ops).",
            registry=registry,
        )
        self.resumed = Counter(
            "notify_resumed_sends_total",
            "Sends re-tried after their dispatcher died mid-send (lease expired): the one "
            "case where the provider may see a message twice.",
            registry=registry,
        )
        self.dead_lettered = Counter(
            "notify_dead_lettered_total",
            "Messages given up on and published to notify.dlq.",
            registry=registry,
        )
        self.waiting = Counter(
            "notify_waiting_for_recipient_total",
            "Messages that had to wait for their user's openid (registration not seen yet); "
            'notify_deliveries{state="waiting"} is how many wait now.',
            ["template"],
            registry=registry,
        )
        self.recipient_unknown = Counter(
            "notify_recipient_unknown_total",
            "Messages given up on (dead-lettered) because no openid was known for their "
            "user within NOTIFY_RECIPIENT_WAIT_SECONDS.",
            ["template"],
            registry=registry,
        )
        self.recipients = Counter(
            "notify_recipients_registered_total",
            "Users' openids recorded from user.registered events (redeliveries not counted).",
            registry=registry,
        )
        self.token_reasks = Counter(
            "notify_token_reasks_total",
            "Sends refused for the access_token after which notify asked for a new one, by "
            "result (renewed: a new token came and the message was sent again; "
            "no_new_token: none came within NOTIFY_TOKEN_WAIT_SECONDS).",
            ["result"],
            registry=registry,
        )
        self.latency = Histogram(
            "notify_delivery_latency_seconds",
            "Time from the event to the provider's acceptance of its message.",
            ["template"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
            registry=registry,
        )
        self.deliveries = Gauge(
            "notify_deliveries",
            "Delivery rows by state (refreshed periodically from PostgreSQL).",
            ["state"],
            registry=registry,
        )
        self.dispatch_failures = Counter(
            "notify_dispatcher_failures_total",
            "Dispatcher, DLQ publisher or reminder rounds that failed (database or broker "
            "down); retried.",
            registry=registry,
        )
        for state in DELIVERY_STATES:
            self.deliveries.labels(state)
        for result in ("renewed", "no_new_token"):
            self.token_reasks.labels(result)

    async def refresh(self, repo: NotifyRepository) -> None:
        counts = await repo.count_by_state()
        for state in DELIVERY_STATES:
            self.deliveries.labels(state).set(counts.get(state, 0))

    async def run_gauges(self, repo: NotifyRepository, interval: float) -> None:
        await every(interval, lambda: self.refresh(repo), "notify metrics")
