"""groupbuy_groups{state}: groups per state (open, completed, failed), read from
PostgreSQL on a timer (METRICS_REFRESH_SECONDS), never per request. PostgreSQL is the
record: the consumer of the groupbuy topic writes it, so the gauge lags the Redis gate
by the pipeline's delay."""

from __future__ import annotations

import asyncpg
from prometheus_client import CollectorRegistry, Gauge

from services.common.periodic import every

GROUP_STATES = ("open", "completed", "failed")
COUNT_BY_STATE = "SELECT state, count(*) AS n FROM groupbuy.groups GROUP BY state"
QUERY_TIMEOUT_SECONDS = 5.0


class GroupStateMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.groups = Gauge(
            "groupbuy_groups",
            "Groups by state (refreshed periodically from PostgreSQL).",
            ["state"],
            registry=registry,
        )
        for state in GROUP_STATES:
            self.groups.labels(state)

    async def refresh(self, pool: asyncpg.Pool) -> None:
        rows = await pool.fetch(COUNT_BY_STATE, timeout=QUERY_TIMEOUT_SECONDS)
        counts = {r["state"]: r["n"] for r in rows}
        for state in GROUP_STATES:
            self.groups.labels(state).set(counts.get(state, 0))

    async def run(self, pool: asyncpg.Pool, interval: float) -> None:
        await every(interval, lambda: self.refresh(pool), "group metrics")
