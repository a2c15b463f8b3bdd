"""The coupon service's PostgreSQL outbox (coupon.outbox): events of a coupon's life after
issue (locked, used, released, revoked, expired, expiring) are written in the transaction
that makes them true, and services.common.pg_outbox.PgOutboxRelay publishes them to the
coupons topic. (claimed and granted leave through the Redis outbox streams instead.)"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
from aiokafka import AIOKafkaProducer

from services.common.kafka import kafka_reachable, start_producer
from services.common.pg_outbox import OutboxSql, OutboxWriter, PgOutboxMetrics, PgOutboxRelay
from services.common.settings import Settings
from services.common.topics import COUPONS

OUTBOX = OutboxSql.for_schema("coupon")


def coupon_outbox(
    pool: asyncpg.Pool, topic_prefix: str = "", on_announced: Callable[[], None] = lambda: None
) -> OutboxWriter:
    """Transactions that may write coupon events (to the coupons topic of topic_prefix);
    on_announced: the relay's wake."""
    return OutboxWriter(pool, OUTBOX, f"{topic_prefix}{COUPONS}", on_announced)


class EventRelay:
    """The relay of coupon.outbox, with a Kafka producer of its own started in its task:
    the service starts, and keeps locking and settling coupons, while Kafka is down (the
    events wait in the table)."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, metrics: PgOutboxMetrics) -> None:
        self._pool = pool
        self._settings = settings
        self._metrics = metrics
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
