"""Gauges of the seckill service read from Redis and PostgreSQL on a timer, never per request.

- seckill_activity_stock_remaining{activity}: stock left per live activity. Labelled by
  activity id, which is bounded by the activities not yet ended (a handful at a time).
- seckill_outbox_oldest_entry_age_seconds: age of the oldest outbox entry not yet
  published (the relay's lag); 0 when the outbox is empty. Entries are deleted once
  Kafka acknowledged them, so the first entry of a stream is its oldest unpublished one.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Gauge
from redis.asyncio import Redis

from services.common.periodic import every
from services.seckill.activities import ActivityRepository
from services.seckill.keys import ACTIVITIES, activity_keys
from services.seckill.stock import StockStore


class LiveMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.stock_remaining = Gauge(
            "seckill_activity_stock_remaining",
            "Stock left in Redis per activity not yet ended (refreshed periodically).",
            ["activity"],
            registry=registry,
        )
        self.stock_initial = Gauge(
            "seckill_activity_stock_initial",
            "Initial stock per activity not yet ended.",
            ["activity"],
            registry=registry,
        )
        self.outbox_age = Gauge(
            "seckill_outbox_oldest_entry_age_seconds",
            "Age of the oldest outbox entry not yet published to Kafka (0: empty).",
            registry=registry,
        )
        self._shown: set[str] = set()

    async def refresh(
        self, redis: Redis, activities: ActivityRepository, stock: StockStore
    ) -> None:
        live = await activities.warmed_live()
        remaining = await stock.remaining([a.id for a in live])
        shown = set()
        for activity in live:
            label = str(activity.id)
            shown.add(label)
            self.stock_remaining.labels(label).set(remaining[activity.id])
            self.stock_initial.labels(label).set(activity.stock)
        for gone in self._shown - shown:  # ended activities leave the gauge
            self.stock_remaining.remove(gone)
            self.stock_initial.remove(gone)
        self._shown = shown

        ids = sorted(int(a) for a in await redis.smembers(ACTIVITIES))
        pipe = redis.pipeline(transaction=False)
        for activity_id in ids:
            pipe.xrange(activity_keys(activity_id).outbox, count=1)
        firsts = await pipe.execute() if ids else []
        oldest_ms = min((int(e[0][0].split(b"-", 1)[0]) for e in firsts if e), default=None)
        age = 0.0 if oldest_ms is None else max(0.0, time.time() - oldest_ms / 1000)
        self.outbox_age.set(age)

    async def run(
        self,
        redis: Redis,
        activities: ActivityRepository,
        stock: StockStore,
        interval: float,
    ) -> None:
        await every(interval, lambda: self.refresh(redis, activities, stock), "live metrics")
