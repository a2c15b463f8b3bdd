"""Kafka adapters: topic creation, a safe producer, and a batch consumer loop.

Delivery is at-least-once everywhere: producers wait for acks=all and are idempotent
(KAFKA_IDEMPOTENCE, off only for the optional Tansu broker, which cannot do it), consumers
commit offsets only after the handler's effect is durable, and handlers are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError, for_code
from prometheus_client import CollectorRegistry, Counter, Gauge

from services.common.events import Envelope, MalformedEvent
from services.common.periodic import every
from services.common.settings import Settings
from services.common.topics import all_topics, dlq, topic_specs

log = logging.getLogger(__name__)

START_SETTLE_SECONDS = 5.0


async def ensure_topics(
    settings: Settings, partitions: int | None = None, wait_seconds: float | None = None
) -> list[str]:
    """Create the platform's topics that do not exist yet, with the partitions and
    retention of services/common/topics.py (`partitions` overrides the count: tests use
    fewer). Returns the names created.

    The replication factor is 3, or the number of brokers if fewer (1 on the local
    single-node broker): never a hard-coded 1 on a cluster, where such a topic would refuse
    acks=all writes under min.insync.replicas=2. With KAFKA_CREATE_TOPICS=false
    (Kubernetes, where Strimzi owns the topics) nothing is created: it waits up to
    `wait_seconds` (default TOPIC_WAIT_SECONDS) for them to exist, then raises naming the
    missing ones.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        if not settings.kafka_create_topics:
            await _wait_for_topics(admin, settings, wait_seconds or TOPIC_WAIT_SECONDS)
            return []
        existing = set(await admin.list_topics())
        brokers = len((await admin.describe_cluster())["brokers"])
        created = []
        for spec in topic_specs():
            name = settings.topic(spec.name)
            if name in existing:
                continue
            topic = NewTopic(
                name,
                num_partitions=partitions or spec.partitions,
                replication_factor=min(3, brokers),
                topic_configs=spec.config(),
            )
            response = await admin.create_topics([topic])
            # The answer carries per-topic error codes instead of raising.
            for _, code, *message in response.topic_errors:
                if code == TopicAlreadyExistsError.errno:
                    continue  # created meanwhile (another bootstrap, or metadata lag)
                if code:
                    raise for_code(code)(f"creating topic {name}: {message}")
                created.append(name)
        return created
    finally:
        await admin.close()


TOPIC_WAIT_SECONDS = 120.0


async def _wait_for_topics(admin: AIOKafkaAdminClient, settings: Settings, within: float) -> None:
    wanted = {settings.topic(name) for name in all_topics()}
    deadline = asyncio.get_running_loop().time() + within
    while True:
        missing = sorted(wanted - set(await admin.list_topics()))
        if not missing:
            return
        if asyncio.get_running_loop().time() >= deadline:
            raise RuntimeError(
                f"topics missing after {within:.0f} s: {', '.join(missing)} "
                "(KAFKA_CREATE_TOPICS=false: are their KafkaTopic resources applied?)"
            )
        log.info("waiting for topics to be created: %s", ", ".join(missing))
        await asyncio.sleep(min(2.0, within / 4))


async def delete_topics(settings: Settings) -> None:
    """Delete every topic of `settings`' prefix (tests: a broker that keeps its log on disk
    would otherwise keep each test's topics for ever). Refuses an empty prefix."""
    if not settings.kafka_topic_prefix:
        raise ValueError("delete_topics needs a topic prefix: it would delete the platform's")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(settings.kafka_topic_prefix)]
        if ours:
            await admin.delete_topics(ours)
    finally:
        await admin.close()


def make_producer(settings: Settings) -> AIOKafkaProducer:
    # acks="all": aiokafka's default (1) can lose an acknowledged message on leader failover.
    # Idempotence: a send retried after a lost acknowledgement is written once, in order.
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        linger_ms=2,
        request_timeout_ms=10_000,
        client_id=f"flashsale-{settings.instance_id}",
    )


async def start_or_close(client: AIOKafkaProducer | AIOKafkaConsumer) -> None:
    """Start a client; if that fails or the caller is cancelled, close it before raising.

    start() is shielded because aiokafka leaks its bootstrap connection when start()
    itself is cancelled; on cancellation we let it settle, then stop the client.
    """
    starting = asyncio.ensure_future(client.start())
    try:
        await asyncio.shield(starting)
    except BaseException:
        # start() can retry for ever (no coordinator yet): bounded wait, then cancel it.
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(starting, START_SETTLE_SECONDS)
        await client.stop()
        raise


async def start_producer(settings: Settings) -> AIOKafkaProducer:
    """A started producer; waits (with backoff) while the broker is unreachable."""
    delay = 0.2
    while True:
        producer = make_producer(settings)
        try:
            await start_or_close(producer)
            return producer
        except KafkaError as exc:
            log.warning("Kafka not reachable, retrying: %r", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def kafka_reachable(producer: AIOKafkaProducer) -> None:
    """Readiness: raises unless a broker answers a metadata request now. A refused
    connection fails at once, so /readyz (2 s timeout) shows an outage within a probe."""
    await producer.client.fetch_all_metadata()


async def publish_all(producer: AIOKafkaProducer, topic: str, events: Iterable[Envelope]) -> int:
    """Send events and wait until the broker acknowledged every one; raises otherwise."""
    pending = [await producer.send(topic, value=e.encode(), key=e.key.encode()) for e in events]
    if pending:
        await asyncio.gather(*pending)
    return len(pending)


class PermanentError(Exception):
    """A message that can never be processed (bad data): dead-letter it, do not retry."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """A consumed record and its decoded envelope."""

    record: ConsumerRecord[bytes, bytes]
    event: Envelope


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "kafka_consumer_messages_total",
            "Messages handled by a consumer group, by outcome (ok, dead_lettered).",
            ["topic", "group", "result"],
            registry=registry,
        )
        self.retries = Counter(
            "kafka_consumer_retries_total",
            "Batch or message handling attempts that failed and were retried.",
            ["topic", "group"],
            registry=registry,
        )
        # Partitions are few and fixed per topic: a bounded label.
        self.lag = Gauge(
            "kafka_consumer_lag",
            "Messages behind the partition's high watermark, after the last fetch.",
            ["topic", "group", "partition"],
            registry=registry,
        )


BatchHandler = Callable[[Sequence[Incoming]], Awaitable[None]]


class BatchConsumer:
    """Consumes one topic in batches; commits offsets only after the handler returned.

    A failing batch is retried with backoff. Transient failures (a database or broker
    that is down) are retried until they pass: nothing is dropped while a dependency
    is out. Any other failure is retried consumer_max_attempts times, then the batch is
    split and each message that still fails goes to <topic>.dlq with the reason.
    """

    def __init__(
        self,
        settings: Settings,
        topic: str,
        group_id: str,
        handler: BatchHandler,
        producer: AIOKafkaProducer,
        metrics: ConsumerMetrics,
        transient_errors: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._settings = settings
        self._topic = settings.topic(topic)
        self._dlq_topic = settings.topic(dlq(topic))
        self._group = settings.group(group_id)
        self._handler = handler
        self._producer = producer
        self._metrics = metrics
        self._transient = (OSError, TimeoutError, KafkaError, *transient_errors)
        self._consumer: AIOKafkaConsumer | None = None

    async def run(self) -> None:
        consumer = await self._start_consumer()
        self._consumer = consumer
        try:
            while True:
                fetched = await consumer.getmany(
                    timeout_ms=500, max_records=self._settings.consumer_max_records
                )
                records = [r for batch in fetched.values() for r in batch]
                if not records:
                    await self._record_lag(consumer)
                    continue
                await self._process(records)
                try:
                    await consumer.commit()
                except CommitFailedError:
                    # The group rebalanced while we worked: the batch will be redelivered
                    # to the partitions' new owner, and handlers are idempotent.
                    log.warning("commit failed after rebalance", extra={"topic": self._topic})
                await self._record_lag(consumer)
        finally:
            self._consumer = None
            await consumer.stop()

    _lag_partitions: frozenset[int] = frozenset()

    async def _record_lag(self, consumer: AIOKafkaConsumer) -> None:
        """kafka_consumer_lag per assigned partition: high watermark minus position. Local
        state only (no broker round trip); partitions no longer assigned are dropped."""
        assigned: set[int] = set()
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                position = await consumer.position(tp)
            except KafkaError:
                continue
            assigned.add(tp.partition)
            self._metrics.lag.labels(self._topic, self._group, str(tp.partition)).set(
                max(0, highwater - position)
            )
        for gone in self._lag_partitions - assigned:
            with contextlib.suppress(KeyError):
                self._metrics.lag.remove(self._topic, self._group, str(gone))
        self._lag_partitions = frozenset(assigned)

    async def _start_consumer(self) -> AIOKafkaConsumer:
        delay = 0.2
        while True:
            consumer = AIOKafkaConsumer(
                self._topic,
                bootstrap_servers=self._settings.kafka_bootstrap_servers,
                group_id=self._group,
                # aiokafka defaults (auto-commit, "latest") lose messages (docs/architecture.md).
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=self._settings.kafka_session_timeout_ms,
                heartbeat_interval_ms=self._settings.kafka_heartbeat_interval_ms,
                client_id=f"{self._group}-{self._settings.instance_id}",
            )
            try:
                await start_or_close(consumer)
                return consumer
            except KafkaError as exc:
                log.warning("consumer start failed, retrying: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _process(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        good: list[Incoming] = []
        for record in records:
            try:
                good.append(Incoming(record, Envelope.decode(record.value)))
            except MalformedEvent as exc:
                await self._dead_letter(record, f"malformed: {exc}", attempts=1)
        if not good:
            return
        if await self._attempt(good):
            return
        for item in good:  # isolate the message(s) that keep failing
            if not await self._attempt([item]):
                await self._dead_letter(
                    item.record, self._last_error, attempts=self._settings.consumer_max_attempts
                )

    _last_error = ""

    async def _attempt(self, items: list[Incoming]) -> bool:
        """Run the handler with retries; False once bounded retries are used up."""
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._handler(items)
                self._metrics.messages.labels(self._topic, self._group, "ok").inc(len(items))
                return True
            except PermanentError as exc:
                self._last_error = f"{type(exc).__name__}: {exc}"
                return False
            except self._transient as exc:
                self._metrics.retries.labels(self._topic, self._group).inc()
                log.warning("transient failure handling %d messages: %r", len(items), exc)
                await asyncio.sleep(_backoff(min(attempt, 6)))
            except Exception as exc:
                self._metrics.retries.labels(self._topic, self._group).inc()
                self._last_error = f"{type(exc).__name__}: {exc}"
                log.exception("failure handling %d messages (attempt %d)", len(items), attempt)
                if attempt >= self._settings.consumer_max_attempts:
                    return False
                await asyncio.sleep(_backoff(attempt))

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], reason: str, attempts: int
    ) -> None:
        headers = [
            ("dlq.reason", reason.encode()[:1000]),
            ("dlq.attempts", str(attempts).encode()),
            ("dlq.source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ]
        # Waits for acks=all before the offset is committed: a dead letter is never lost.
        fut = await self._producer.send(
            self._dlq_topic, value=record.value, key=record.key, headers=headers
        )
        await fut
        self._metrics.messages.labels(self._topic, self._group, "dead_lettered").inc()
        log.error("dead-lettered %s: %s", headers[2][1].decode(), reason)


async def consume(
    settings: Settings,
    topic: str,
    group: str,
    handler: BatchHandler,
    metrics: ConsumerMetrics,
    transient_errors: tuple[type[BaseException], ...] = (),
) -> None:
    """Run a BatchConsumer until cancelled, with a producer of its own for its dead
    letters (a service's consumers each run in a task of their own)."""
    producer = await start_producer(settings)
    try:
        consumer = BatchConsumer(
            settings, topic, group, handler, producer, metrics, transient_errors
        )
        await consumer.run()
    finally:
        await producer.stop()


def _backoff(attempt: int) -> float:
    """Exponential backoff with full jitter, capped at 5 s."""
    return random.uniform(0, min(5.0, 0.05 * 2**attempt))


class DlqMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.size = Gauge(
            "kafka_dlq_messages",
            "Messages held in a dead-letter topic (end minus beginning offsets).",
            ["topic"],
            registry=registry,
        )


async def watch_dlq_sizes(
    settings: Settings, topics: Sequence[str], metrics: DlqMetrics, interval: float
) -> None:
    """Refresh kafka_dlq_messages for the dead-letter topics of `topics` every `interval`
    seconds, with one group-less consumer (two offset requests per round). Runs until
    cancelled; a broker that is down only delays the next refresh."""
    names = [settings.topic(dlq(t)) for t in topics]
    while True:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
            client_id=f"flashsale-dlq-{settings.instance_id}",
        )
        try:
            await start_or_close(consumer)
            break
        except KafkaError as exc:
            log.warning("DLQ size watcher cannot reach Kafka, retrying: %r", exc)
            await asyncio.sleep(interval)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=f"flashsale-dlq-admin-{settings.instance_id}",
    )

    async def refresh() -> None:
        # A consumer without a group knows the metadata of assigned topics only (Apache
        # Kafka answers an empty metadata request with no topics): assign every partition
        # of the DLQs, paused so that nothing is fetched, then read both ends' offsets.
        await admin.start()  # once; a broker down at start fails this round, not the task
        described = await admin.describe_topics(names)
        parts = [
            TopicPartition(t["topic"], p["partition"])
            for t in described
            if t["error_code"] == 0
            for p in t["partitions"]
        ]
        if set(parts) != consumer.assignment():
            consumer.assign(parts)
            consumer.pause(*parts)
        if not parts:
            return
        end = await consumer.end_offsets(parts)
        begin = await consumer.beginning_offsets(parts)
        for name in names:
            mine = [p for p in parts if p.topic == name]
            if mine:
                metrics.size.labels(name).set(sum(end[p] - begin[p] for p in mine))

    try:
        await every(interval, refresh, "DLQ size")
    finally:
        await asyncio.gather(consumer.stop(), admin.close(), return_exceptions=True)
