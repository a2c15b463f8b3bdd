"""Publishes the order service's PostgreSQL outbox to Kafka, at least once.

Rows are locked with FOR UPDATE SKIP LOCKED, so several replicas share the work without
publishing the same row concurrently; a row is deleted only in the transaction that
saw Kafka acknowledge it. A crash in between re-publishes it (same event id).
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry, Counter, Gauge

from services.common.settings import Settings
from services.order.repository import COUNT_OUTBOX, DELETE_OUTBOX, LOCK_OUTBOX_BATCH

log = logging.getLogger(__name__)


class PgOutboxMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            "order_outbox_published_total",
            "Outbox events published to Kafka.",
            registry=registry,
        )
        self.failures = Counter(
            "order_outbox_publish_failures_total",
            "Outbox rounds that failed (Kafka or PostgreSQL unavailable); rows are retried.",
            registry=registry,
        )
        self.backlog = Gauge(
            "order_outbox_backlog", "Outbox events not yet published.", registry=registry
        )


class PgOutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        settings: Settings,
        metrics: PgOutboxMetrics,
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._settings = settings
        self._metrics = metrics
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Called after a commit that wrote outbox rows: publish now, not at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                published = await self.publish_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self._metrics.failures.inc()
                log.warning("order outbox round failed (%d in a row): %r", failures, exc)
                await asyncio.sleep(min(5.0, 0.1 * 2 ** min(failures, 6)))
                continue
            if published < self._settings.order_outbox_batch_size:
                self._metrics.backlog.set(await self._pool.fetchval(COUNT_OUTBOX))
                self._wake.clear()
                try:
                    async with asyncio.timeout(self._settings.order_outbox_poll_seconds):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    async def publish_once(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(LOCK_OUTBOX_BATCH, self._settings.order_outbox_batch_size)
            if not rows:
                return 0
            pending = [
                await self._producer.send(r["topic"], value=r["payload"], key=r["key"].encode())
                for r in rows
            ]
            await asyncio.gather(*pending)
            await conn.execute(DELETE_OUTBOX, [r["id"] for r in rows])
        self._metrics.published.inc(len(rows))
        return len(rows)
