"""Prometheus metrics of the coupon service, on its own registry. No user or coupon ids as
labels: results, and template ids of live templates only (a handful at a time)."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.common.http import HttpMetrics
from services.common.kafka import ConsumerMetrics
from services.common.periodic import every
from services.common.stream_outbox import RelayMetrics
from services.coupon.domain import CLAIM_RESULTS
from services.coupon.repository import TemplateRepository
from services.coupon.store import CouponStore


class RemainingGauge:
    """coupon_remaining{template}: what is left per live template, read from Redis on a
    timer (METRICS_REFRESH_SECONDS), never per request; ended templates leave it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.remaining = Gauge(
            "coupon_remaining",
            "Coupons left in Redis per live template (refreshed periodically).",
            ["template"],
            registry=registry,
        )
        self._shown: set[str] = set()

    async def refresh(self, templates: TemplateRepository, store: CouponStore) -> None:
        live = await templates.live_warmed(datetime.now(UTC))
        left = await store.remaining([t.id for t in live])
        shown = set()
        for template in live:
            label = str(template.id)
            shown.add(label)
            self.remaining.labels(label).set(left[template.id])
        for gone in self._shown - shown:
            self.remaining.remove(gone)
        self._shown = shown

    async def run(self, templates: TemplateRepository, store: CouponStore, interval: float) -> None:
        await every(interval, lambda: self.refresh(templates, store), "coupon remaining")


class CouponMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http = HttpMetrics(self.registry)
        self.relay = RelayMetrics(self.registry, prefix="coupon")
        self.consumer = ConsumerMetrics(self.registry)
        self.remaining = RemainingGauge(self.registry)
        self.claims = Counter(
            "coupon_claims_total",
            "Claims by result (claimed, exhausted, limit_reached, claim_ended, ...).",
            ["result"],
            registry=self.registry,
        )
        self.idempotent_replays = Counter(
            "coupon_idempotent_replays_total",
            "Claims answered with the recorded first outcome of their Idempotency-Key; "
            "not counted as claims.",
            registry=self.registry,
        )
        self.recorded = Counter(
            "coupon_coupons_recorded_total",
            "Coupons recorded in PostgreSQL from the coupons topic (redeliveries excluded).",
            registry=self.registry,
        )
        for result in CLAIM_RESULTS:
            self.claims.labels(result)
