"""Metrics of a coupon's life after issue: grants, redemptions, expiry. Every known label
exists at 0 from the start, so a rate() over them is defined before the first event."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from services.common.pg_outbox import PgOutboxMetrics

GRANT_RESULTS = ("granted", "exhausted", "duplicate")
REDEMPTION_RESULTS = ("locked", "used", "released", "revoked", "refused")


class LifecycleMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        # coupon_pg_outbox_*: the relay of coupon.outbox (the Redis stream relay of
        # claims and grants has coupon_outbox_*).
        self.outbox = PgOutboxMetrics(registry, "coupon_pg")
        self.grants = Counter(
            "coupon_grants_total",
            "下单返券 decisions per (paid order, rule): granted, exhausted (none left, "
            "ended, or past its validity: recorded, not retried), duplicate (decided "
            "before: a redelivered order.paid).",
            ["result"],
            registry=registry,
        )
        self.redemptions = Counter(
            "coupon_redemptions_total",
            "Coupons locked to orders, used by their payment, released (order cancelled, "
            "or paid without the discount), revoked (granting order refunded), and "
            "redemptions refused.",
            ["result"],
            registry=registry,
        )
        self.refunded_grants_kept = Counter(
            "coupon_refunded_grants_kept_total",
            "Coupons granted by an order that was refunded, not revoked because they were "
            "already used (or locked to another order).",
            registry=registry,
        )
        self.expired = Counter(
            "coupon_expired_total",
            "Available coupons the sweeper expired at the end of their validity.",
            registry=registry,
        )
        self.expiring_notices = Counter(
            "coupon_expiring_notices_total",
            "'Coupon expiring' announcements (coupon.expiring), one per coupon.",
            registry=registry,
        )
        self.sweeper_failures = Counter(
            "coupon_sweeper_failures_total",
            "Expiry sweeper rounds that failed (PostgreSQL unavailable); retried next round.",
            registry=registry,
        )
        for result in GRANT_RESULTS:
            self.grants.labels(result)
        for result in REDEMPTION_RESULTS:
            self.redemptions.labels(result)
