"""Publishes Redis stream outboxes to Kafka, at least once (seckill and groupbuy use it).

A service's Lua scripts append events to one outbox stream per sale (an activity, a
campaign) in the same atomic step as the change they announce. The relay reads those
streams with a consumer group, publishes with acks=all, and only then acknowledges
(XACK) and deletes the entries. A relay that dies after reading leaves its entries
pending: on restart it re-reads its own pending entries first, and any relay reclaims
entries another one left idle for longer than relay_reclaim_idle_ms (XAUTOCLAIM). While
Kafka is down entries simply wait in the streams; the hot path keeps succeeding.

What differs per service is a StreamOutbox: which streams exist, and how an entry
becomes an Envelope (with a deterministic id, so a re-published entry is deduplicated).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from services.common.events import Envelope
from services.common.kafka import kafka_reachable, publish_all, start_producer
from services.common.settings import Settings

log = logging.getLogger(__name__)

# A sale's stream is watched once the relay re-reads the registry, and a blocked read
# only returns for streams it was given: a sale created just before it starts (the demo,
# the benchmark) waited up to refresh + block (2.5 s, every benchmark round's relay p99)
# for its first entries. Re-reading is one SMEMBERS; the backlog gauge's XLEN over every
# stream runs less often.
STREAMS_REFRESH_SECONDS = 0.2
READ_BLOCK_MS = 200
BACKLOG_REFRESH_SECONDS = 2.0
# Consumer group of the relay on every outbox stream.
RELAY_GROUP = "relay"


async def warm_sale(
    redis: Redis,
    *,
    meta_key: str,
    meta: Mapping[str, str | int],
    stock_key: str,
    stock: int,
    outbox_key: str,
    registry_key: str,
    sale_id: int,
) -> None:
    """Load a sale (an activity, a campaign) into Redis: its settings, its stock, its
    outbox stream with the relay's group, and its id in the registry the relay watches.

    Idempotent: the stock is set only if absent, so warming again never hands out stock
    twice. The id is registered last: the relay only watches streams whose group exists.
    """
    pipe = redis.pipeline(transaction=True)
    fields: dict[Any, Any] = dict(meta)  # redis-py's key type is wider and invariant
    pipe.hset(meta_key, mapping=fields)
    pipe.set(stock_key, stock, nx=True)
    await pipe.execute()
    try:
        await redis.xgroup_create(outbox_key, RELAY_GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    await redis.sadd(registry_key, sale_id)


async def sale_totals(redis: Redis, meta_key: str, stock_key: str) -> tuple[int | None, int | None]:
    """A warmed sale's (total, remaining) read in one transaction; None where Redis has
    nothing (not warmed, or Redis lost it)."""
    pipe = redis.pipeline(transaction=True)
    pipe.hget(meta_key, "total")
    pipe.get(stock_key)
    total, remaining = await pipe.execute()
    return (None if total is None else int(total), None if remaining is None else int(remaining))


async def remaining_stock(redis: Redis, stock_keys: Sequence[str]) -> list[int]:
    """What is left of several sales in one round trip, 0 where Redis has nothing."""
    if not stock_keys:
        return []
    pipe = redis.pipeline(transaction=False)
    for key in stock_keys:
        pipe.get(key)
    return [int(v) if v is not None else 0 for v in await pipe.execute()]


@dataclass(frozen=True, slots=True)
class StreamOutbox:
    """How one service lays out its outboxes.

    registry: a Redis set of the ids whose streams to watch (added after the stream's
    consumer group exists); stream_of: id -> stream key; id_of: stream key -> id;
    to_event: (id, decoded entry fields) -> the Kafka event; topic: where events go.
    """

    registry: str
    stream_of: Callable[[int], str]
    id_of: Callable[[str], int]
    to_event: Callable[[int, dict[str, str]], Envelope]
    topic: str


class RelayMetrics:
    """<prefix>_outbox_* metrics (seckill_outbox_published_total, ...)."""

    def __init__(self, registry: CollectorRegistry, prefix: str = "seckill") -> None:
        self.published = Counter(
            f"{prefix}_outbox_published_total",
            "Outbox entries published to Kafka and acknowledged.",
            registry=registry,
        )
        self.reclaimed = Counter(
            f"{prefix}_outbox_reclaimed_total",
            "Outbox entries reclaimed from a relay that stopped before acknowledging.",
            registry=registry,
        )
        self.failures = Counter(
            f"{prefix}_outbox_publish_failures_total",
            "Relay rounds that failed (Kafka or Redis unavailable); entries are retried.",
            registry=registry,
        )
        self.backlog = Gauge(
            f"{prefix}_outbox_backlog",
            "Outbox entries not yet published, over all streams.",
            registry=registry,
        )
        self.delay = Histogram(
            f"{prefix}_outbox_publish_delay_seconds",
            "Time from the script writing an entry to Kafka acknowledging it.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )


def _entry_ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


_Entries = list[tuple[str, list[tuple[bytes, dict[bytes, bytes] | None]]]]


class StreamOutboxRelay:
    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        metrics: RelayMetrics,
        outbox: StreamOutbox,
        producer: AIOKafkaProducer | None = None,
    ) -> None:
        self._redis = redis
        self._settings = settings
        self._metrics = metrics
        self._outbox = outbox
        self._producer = producer
        self._owns_producer = producer is None
        self._topic = settings.topic(outbox.topic)
        self._consumer = settings.instance_id
        self._streams: list[str] = []
        self._streams_at = 0.0
        self._backlog_at = 0.0
        self._reclaimed_at = 0.0
        # Whether this consumer may hold entries read but not acknowledged (a failed
        # publish, a reclaim, or a previous process with the same name): only then is the
        # pending list read, which saves a Redis round trip per round on the hot process.
        self._own_pending = True
        self._live: AIOKafkaProducer | None = None
        self._failures = 0

    async def check_kafka(self) -> None:
        """Readiness detail: raises while the relay cannot publish. Asks the broker itself:
        a relay round that waits inside the client's retries for a broker that is gone
        still looks healthy from here for up to the request timeout."""
        if self._live is None:
            raise ConnectionError("relay has not connected to Kafka yet")
        await kafka_reachable(self._live)
        if self._failures:
            raise ConnectionError(f"last {self._failures} relay rounds failed")

    async def run(self) -> None:
        producer = self._producer or await start_producer(self._settings)
        self._live = producer
        try:
            while True:
                try:
                    await self.relay_once(producer, block_ms=READ_BLOCK_MS)
                    self._failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._failures += 1
                    self._metrics.failures.inc()
                    log.warning("relay round failed (%d in a row): %r", self._failures, exc)
                    await asyncio.sleep(min(5.0, 0.1 * 2 ** min(self._failures, 6)))
        finally:
            if self._owns_producer:
                await producer.stop()

    async def relay_once(self, producer: AIOKafkaProducer, block_ms: int | None = None) -> int:
        """One round: reclaim if due, publish own pending entries, else new ones."""
        streams = await self._watched_streams()
        if not streams:
            if block_ms:
                await asyncio.sleep(block_ms / 1000)
            return 0
        now = time.monotonic()
        if now - self._reclaimed_at >= self._settings.relay_reclaim_interval_seconds:
            self._reclaimed_at = now
            await self.reclaim(streams)
        entries = []
        if self._own_pending:
            entries = await self._read(streams, "0", None)  # read before, not acknowledged
            self._own_pending = bool(entries)  # a full batch may leave more behind
        from_pending = bool(entries)
        if not entries:
            entries = await self._read(streams, ">", block_ms)
        if not entries:
            return 0
        self._own_pending = True  # until Kafka and then Redis acknowledged them
        published = await self._publish(producer, entries)
        self._own_pending = from_pending
        return published

    async def reclaim(self, streams: list[str]) -> int:
        """Take over entries another relay read but left unacknowledged for too long."""
        claimed = 0
        for stream in streams:
            start = "0-0"
            while True:
                # Not justid: redis-py then drops the cursor needed to page through.
                reply = await self._redis.xautoclaim(
                    stream,
                    RELAY_GROUP,
                    self._consumer,
                    self._settings.relay_reclaim_idle_ms,
                    start_id=start,
                    count=self._settings.relay_batch_size,
                )
                start, entries = reply[0], reply[1]
                claimed += len(entries)
                if start in (b"0-0", "0-0"):
                    break
        if claimed:
            self._own_pending = True
            self._metrics.reclaimed.inc(claimed)
            log.warning("reclaimed %d outbox entries from a stopped relay", claimed)
        return claimed

    async def _watched_streams(self) -> list[str]:
        now = time.monotonic()
        if now - self._streams_at >= STREAMS_REFRESH_SECONDS or not self._streams:
            ids = sorted(int(a) for a in await self._redis.smembers(self._outbox.registry))
            self._streams = [self._outbox.stream_of(a) for a in ids]
            self._streams_at = now
        if self._streams and now - self._backlog_at >= BACKLOG_REFRESH_SECONDS:
            self._backlog_at = now
            pipe = self._redis.pipeline(transaction=False)
            for stream in self._streams:
                pipe.xlen(stream)
            self._metrics.backlog.set(sum(await pipe.execute()))
        return self._streams

    async def _read(self, streams: list[str], start: str, block_ms: int | None) -> _Entries:
        reply: Any = await self._redis.xreadgroup(
            RELAY_GROUP,
            self._consumer,
            dict.fromkeys(streams, start),
            count=self._settings.relay_batch_size,
            block=block_ms,
        )
        return [(s.decode() if isinstance(s, bytes) else s, e) for s, e in (reply or []) if e]

    async def _publish(self, producer: AIOKafkaProducer, entries: _Entries) -> int:
        events: list[Envelope] = []
        for stream, items in entries:
            owner = self._outbox.id_of(stream)
            for _, fields in items:
                if fields:  # None: deleted after ack by a relay that then died
                    decoded = {k.decode(): v.decode() for k, v in fields.items()}
                    events.append(self._outbox.to_event(owner, decoded))
        await publish_all(producer, self._topic, events)
        # Only now, after Kafka acknowledged every event, may the entries go.
        pipe = self._redis.pipeline(transaction=False)
        for stream, items in entries:
            ids = [entry_id for entry_id, _ in items]
            pipe.xack(stream, RELAY_GROUP, *ids)
            pipe.xdel(stream, *ids)
        await pipe.execute()
        now_ms = time.time() * 1000
        for _, items in entries:
            for entry_id, _ in items:
                self._metrics.delay.observe(max(0.0, (now_ms - _entry_ms(entry_id)) / 1000))
        self._metrics.published.inc(len(events))
        return len(events)
