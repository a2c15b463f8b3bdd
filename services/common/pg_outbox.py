"""Publishes a service's PostgreSQL outbox (the table <schema>.outbox) to Kafka, at least once.

A service writes its events into <schema>.outbox in the transaction that makes them true
(insert_outbox), and one relay per process publishes them.

Rows are locked with FOR UPDATE SKIP LOCKED, so several replicas share the work without
publishing the same row concurrently; a row is deleted only in the transaction that
saw Kafka acknowledge it. A crash in between re-publishes it (same event id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry, Counter, Gauge

from services.common.events import Envelope
from services.common.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutboxSql:
    """The statements on one service's outbox table (the schema is a code constant)."""

    insert: str
    lock_batch: str
    delete: str
    count: str

    @classmethod
    def for_schema(cls, schema: str) -> OutboxSql:
        if not schema.isidentifier():
            raise ValueError(f"not a schema name: {schema!r}")
        table = f"{schema}.outbox"
        return cls(
            insert=f"""
INSERT INTO {table} (topic, key, payload)
SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[])
""",
            lock_batch=f"""
SELECT id, topic, key, payload FROM {table} ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
""",
            delete=f"DELETE FROM {table} WHERE id = ANY($1::bigint[])",
            count=f"SELECT count(*) FROM {table}",
        )


async def insert_outbox(
    conn: asyncpg.Connection, sql: OutboxSql, topic: str, events: Sequence[Envelope]
) -> None:
    """Queue events for the relay, inside the caller's transaction."""
    if events:
        await conn.execute(
            sql.insert, [topic] * len(events), [e.key for e in events], [e.encode() for e in events]
        )


@dataclass(slots=True)
class OutboxTx:
    """A transaction of an OutboxWriter: its connection, and whether it queued events."""

    conn: asyncpg.Connection
    announced: bool = False


class OutboxWriter:
    """Transactions that may queue events in one service's outbox, for one topic. After a
    COMMIT that queued some, on_announced runs (PgOutboxRelay.wake: publish now rather
    than at the relay's next poll)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        sql: OutboxSql,
        topic: str,
        on_announced: Callable[[], None] = lambda: None,
    ) -> None:
        self.pool = pool
        self._sql = sql
        self._topic = topic
        self._on_announced = on_announced

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[OutboxTx]:
        async with self.pool.acquire() as conn:
            tx = OutboxTx(conn)
            async with conn.transaction():
                yield tx
        if tx.announced:
            self._on_announced()

    async def announce(self, tx: OutboxTx, events: Sequence[Envelope]) -> None:
        """Queue events for the relay, in tx's transaction."""
        if events:
            tx.announced = True
            await insert_outbox(tx.conn, self._sql, self._topic, events)


class PgOutboxMetrics:
    """<service>_outbox_published_total, ..._publish_failures_total, ..._backlog."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.published = Counter(
            f"{service}_outbox_published_total",
            "Outbox events published to Kafka.",
            registry=registry,
        )
        self.failures = Counter(
            f"{service}_outbox_publish_failures_total",
            "Outbox rounds that failed (Kafka or PostgreSQL unavailable); rows are retried.",
            registry=registry,
        )
        self.backlog = Gauge(
            f"{service}_outbox_backlog", "Outbox events not yet published.", registry=registry
        )


class PgOutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        settings: Settings,
        metrics: PgOutboxMetrics,
        sql: OutboxSql,
    ) -> None:
        self._sql = sql
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
                log.warning("outbox round failed (%d in a row): %r", failures, exc)
                await asyncio.sleep(min(5.0, 0.1 * 2 ** min(failures, 6)))
                continue
            if published < self._settings.order_outbox_batch_size:
                self._metrics.backlog.set(await self._pool.fetchval(self._sql.count))
                self._wake.clear()
                try:
                    async with asyncio.timeout(self._settings.order_outbox_poll_seconds):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    async def publish_once(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(self._sql.lock_batch, self._settings.order_outbox_batch_size)
            if not rows:
                return 0
            pending = [
                await self._producer.send(r["topic"], value=r["payload"], key=r["key"].encode())
                for r in rows
            ]
            await asyncio.gather(*pending)
            await conn.execute(self._sql.delete, [r["id"] for r in rows])
        self._metrics.published.inc(len(rows))
        return len(rows)
