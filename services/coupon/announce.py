"""The coupon service's PostgreSQL outbox (coupon.outbox): events of a coupon's life after
issue (locked, used, released, revoked, expired, expiring) are written in the transaction
that makes them true, and services.common.pg_outbox.PgOutboxRelay publishes them to the
coupons topic. (claimed and granted leave through the Redis outbox streams instead.)"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from services.common.events import Envelope
from services.common.kafka import kafka_reachable, start_producer
from services.common.pg_outbox import OutboxSql, PgOutboxMetrics, PgOutboxRelay, insert_outbox
from services.common.settings import Settings
from services.common.topics import COUPONS

OUTBOX = OutboxSql.for_schema("coupon")


@dataclass(slots=True)
class Tx:
    conn: asyncpg.Connection
    announced: bool = False


class Announcer:
    """Transactions that may write coupon events; after a COMMIT that wrote some,
    on_announced runs (it wakes the relay instead of waiting for its next poll)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        topic_prefix: str = "",
        on_announced: Callable[[], None] = lambda: None,
    ) -> None:
        self.pool = pool
        self._topic = f"{topic_prefix}{COUPONS}"
        self._on_announced = on_announced

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self.pool.acquire() as conn:
            tx = Tx(conn)
            async with conn.transaction():
                yield tx
        if tx.announced:
            self._on_announced()

    async def announce(self, tx: Tx, events: Sequence[Envelope]) -> None:
        """Queue events for the relay, in tx's transaction."""
        if events:
            tx.announced = True
            await insert_outbox(tx.conn, OUTBOX, self._topic, events)


# coupon_pg_outbox_*: the Redis stream relay of claims and grants has coupon_outbox_*.
METRICS_PREFIX = "coupon_pg"


class EventRelay:
    """The relay of coupon.outbox, with a Kafka producer of its own started in its task:
    the service starts, and keeps locking and settling coupons, while Kafka is down (the
    events wait in the table)."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, registry: CollectorRegistry) -> None:
        self._pool = pool
        self._settings = settings
        self._metrics = PgOutboxMetrics(registry, METRICS_PREFIX)
        self._relay: PgOutboxRelay | None = None
        self._producer: AIOKafkaProducer | None = None

    def wake(self) -> None:
        """After a commit that wrote events: publish now (a no-op until the producer is up;
        its first round publishes whatever is there)."""
        if self._relay is not None:
            self._relay.wake()

    async def run(self) -> None:
        producer = await start_producer(self._settings)
        try:
            self._producer = producer
            self._relay = PgOutboxRelay(self._pool, producer, self._settings, self._metrics, OUTBOX)
            await self._relay.run()
        finally:
            self._relay = self._producer = None
            await producer.stop()

    async def check_kafka(self) -> None:
        """Readiness: raises unless the relay's producer is up and a broker answers."""
        if self._producer is None:
            raise RuntimeError("the coupon event relay has not reached Kafka yet")
        await kafka_reachable(self._producer)
