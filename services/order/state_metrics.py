"""Gauges of the order service read from PostgreSQL on a timer, never per request.

- order_orders{state}: orders per state (pending_payment, paid, cancelled). One
  GROUP BY over the orders table per interval: cost grows with the table, so the
  interval is configurable (METRICS_REFRESH_SECONDS) and the query has a timeout.
- order_outbox_oldest_event_age_seconds: age of the oldest unpublished outbox row
  (the relay's lag), read through the primary key index.
- kafka_dlq_messages{topic}: see services.common.kafka.watch_dlq_sizes.
"""

from __future__ import annotations

import asyncpg
from prometheus_client import CollectorRegistry, Gauge

from services.common.periodic import every

ORDER_STATES = ("pending_payment", "paid", "cancelled")
COUNT_BY_STATE = "SELECT state, count(*) AS n FROM orders.orders GROUP BY state"
OLDEST_OUTBOX_AGE = """
SELECT extract(epoch FROM now() - created_at)::float8
FROM orders.outbox ORDER BY id LIMIT 1
"""
QUERY_TIMEOUT_SECONDS = 5.0


class OrderStateMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.orders = Gauge(
            "order_orders",
            "Orders by state (refreshed periodically from PostgreSQL).",
            ["state"],
            registry=registry,
        )
        self.outbox_age = Gauge(
            "order_outbox_oldest_event_age_seconds",
            "Age of the oldest order outbox event not yet published (0: empty).",
            registry=registry,
        )
        for state in ORDER_STATES:
            self.orders.labels(state)

    async def refresh(self, pool: asyncpg.Pool) -> None:
        rows = await pool.fetch(COUNT_BY_STATE, timeout=QUERY_TIMEOUT_SECONDS)
        counts = {r["state"]: r["n"] for r in rows}
        for state in ORDER_STATES:
            self.orders.labels(state).set(counts.get(state, 0))
        age = await pool.fetchval(OLDEST_OUTBOX_AGE, timeout=QUERY_TIMEOUT_SECONDS)
        self.outbox_age.set(max(0.0, age or 0.0))

    async def run(self, pool: asyncpg.Pool, interval: float) -> None:
        await every(interval, lambda: self.refresh(pool), "order metrics")
