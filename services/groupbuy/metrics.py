"""Prometheus metrics of the groupbuy service, on its own registry. No user, group or
campaign ids as labels: results and completion kinds only."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.common.http import HttpMetrics
from services.common.kafka import ConsumerMetrics
from services.common.stream_outbox import RelayMetrics
from services.groupbuy.state_metrics import GroupStateMetrics


class GroupbuyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http = HttpMetrics(self.registry)
        self.relay = RelayMetrics(self.registry, prefix="groupbuy")
        self.consumer = ConsumerMetrics(self.registry)
        self.states = GroupStateMetrics(self.registry)
        self.opened = Counter(
            "groupbuy_groups_opened_total", "Groups opened.", registry=self.registry
        )
        self.completed = Counter(
            "groupbuy_groups_completed_total",
            "Groups completed: full (the last slot was filled) or virtual (at expiry, "
            "with enough real members).",
            ["how"],
            registry=self.registry,
        )
        self.failed = Counter(
            "groupbuy_groups_failed_total",
            "Groups that expired unfilled and failed.",
            registry=self.registry,
        )
        self.open_refused = Counter(
            "groupbuy_open_refusals_total",
            "Group openings refused, by result (limit_reached, sold_out, ...).",
            ["result"],
            registry=self.registry,
        )
        self.joins = Counter(
            "groupbuy_joins_total",
            "Join attempts by result (joined, already_member, full, expired, ...).",
            ["result"],
            registry=self.registry,
        )
        self.idempotent_replays = Counter(
            "groupbuy_idempotent_replays_total",
            "Opens and joins answered with the recorded first outcome of their "
            "Idempotency-Key, by kind (open, join); not counted as opens or joins.",
            ["kind"],
            registry=self.registry,
        )
        self.time_to_complete = Histogram(
            "groupbuy_time_to_complete_seconds",
            "Time from a group opening to its completion (full or virtual).",
            buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600),
            registry=self.registry,
        )
        self.unit_returns = Counter(
            "groupbuy_unit_returns_total",
            "Cancelled orders of completed groups handled, by result (ok, already_released, ...).",
            ["result"],
            registry=self.registry,
        )
        self.sweeper_failures = Counter(
            "groupbuy_sweeper_failures_total",
            "Sweeper rounds that failed (retried next round).",
            registry=self.registry,
        )
        for how in ("full", "virtual"):
            self.completed.labels(how)
