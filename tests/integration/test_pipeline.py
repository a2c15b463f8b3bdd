"""Reservation -> outbox -> Kafka -> orders, on real Redis, PostgreSQL and the broker."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Callable
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient
from aiokafka.errors import ProducerClosed
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from services.common.events import Envelope
from services.common.kafka import make_producer, publish_all
from services.common.settings import Settings
from services.common.topics import ORDERS, SECKILL_RESERVATIONS
from services.order.app import REGISTRY
from services.seckill.app import create_app, create_ops
from services.seckill.domain import outbox_event
from services.seckill.keys import RELAY_GROUP, activity_keys, activity_of_outbox
from tests.helpers import (
    constant,
    create_activity,
    free_port,
    read_dead_letters,
    read_topic,
    running_relay,
    started_client,
    wait_for,
)

Token = Callable[..., dict[str, str]]


async def press(
    client: TestClient[Any, Any], activity_id: int, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    resp = await client.post(f"/api/seckill/activities/{activity_id}/reservations", headers=headers)
    return resp.status, await resp.json()


def order_count(db: asyncpg.Connection, activity_id: int) -> Callable[[], Any]:
    return lambda: db.fetchval(
        "SELECT count(*) FROM orders.orders WHERE activity_id=$1", activity_id
    )


async def reserve_many(
    seckill: TestClient[Any, Any], token: Token, n: int, stock: int | None = None
) -> tuple[int, list[str]]:
    activity = await create_activity(seckill, token("ops", admin=True), stock=stock or n)
    results = await asyncio.gather(
        *(press(seckill, activity["id"], token(f"u{i}")) for i in range(n))
    )
    assert [s for s, _ in results] == [201] * n
    return activity["id"], [b["reservation_id"] for _, b in results]


def metric(registry: CollectorRegistry, name: str) -> float:
    value = registry.get_sample_value(name)
    return 0.0 if value is None else value


async def test_2000_presses_by_1000_users_sell_exactly_100_and_make_100_orders(
    seckill: TestClient[Any, Any],
    orders: TestClient[Any, Any],
    token: Token,
    redis: Redis,
    db: asyncpg.Connection,
    settings: Settings,
) -> None:
    activity = await create_activity(seckill, token("ops", admin=True), stock=100)
    users = [f"shopper-{i}" for i in range(1000)]
    presses = [u for u in users for _ in range(2)]  # every shopper presses twice
    results = await asyncio.gather(*(press(seckill, activity["id"], token(u)) for u in presses))

    statuses = Counter(status for status, _ in results)
    assert statuses[201] == 100
    assert set(statuses) <= {201, 409, 410}
    winners = Counter(u for u, (s, _) in zip(presses, results, strict=True) if s == 201)
    assert max(winners.values()) == 1  # nobody above the per-user limit of 1
    reserved_ids = {b["reservation_id"] for s, b in results if s == 201}
    assert len(reserved_ids) == 100
    assert await redis.get(activity_keys(activity["id"]).stock) == b"0"

    async with running_relay(redis, settings):
        assert await wait_for(order_count(db, activity["id"]), 100) == 100
    rows = await db.fetch(
        "SELECT reservation_id, user_id FROM orders.orders WHERE activity_id=$1", activity["id"]
    )
    assert {r["reservation_id"] for r in rows} == reserved_ids
    assert len(rows) == 100
    assert max(Counter(r["user_id"] for r in rows).values()) == 1
    assert set(winners) == {r["user_id"] for r in rows}
    # The outbox is drained: every entry acknowledged and deleted.
    assert await redis.xlen(activity_keys(activity["id"]).outbox) == 0


async def test_relay_killed_after_reading_loses_nothing(
    seckill: TestClient[Any, Any],
    orders: TestClient[Any, Any],
    token: Token,
    redis: Redis,
    db: asyncpg.Connection,
    settings: Settings,
) -> None:
    activity_id, rids = await reserve_many(seckill, token, 20)
    stream = activity_keys(activity_id).outbox
    # A relay reads the entries, then dies before publishing or acknowledging them.
    taken = await redis.xreadgroup(RELAY_GROUP, "dead-relay", {stream: ">"}, count=100)
    assert len(taken[0][1]) == 20
    assert (await redis.xpending(stream, RELAY_GROUP))["pending"] == 20

    async with running_relay(redis, settings) as relay:
        assert await wait_for(order_count(db, activity_id), 20) == 20
        assert relay._metrics.reclaimed._value.get() == 20
    got = await db.fetch(
        "SELECT reservation_id FROM orders.orders WHERE activity_id=$1", activity_id
    )
    assert sorted(r["reservation_id"] for r in got) == sorted(rids)
    assert (await redis.xpending(stream, RELAY_GROUP))["pending"] == 0


async def test_relay_killed_after_publishing_before_ack_duplicates_no_order(
    seckill: TestClient[Any, Any],
    orders: TestClient[Any, Any],
    token: Token,
    redis: Redis,
    db: asyncpg.Connection,
    settings: Settings,
) -> None:
    activity_id, rids = await reserve_many(seckill, token, 20)
    stream = activity_keys(activity_id).outbox
    # The dead relay got as far as Kafka acknowledging, but never acknowledged in Redis.
    taken = await redis.xreadgroup(RELAY_GROUP, "dead-relay", {stream: ">"}, count=100)
    events = [
        outbox_event(activity_of_outbox(stream), {k.decode(): v.decode() for k, v in f.items()})
        for _, f in taken[0][1]
    ]
    producer = make_producer(settings)
    await producer.start()
    try:
        await publish_all(producer, settings.topic(SECKILL_RESERVATIONS), events)
    finally:
        await producer.stop()

    registry = orders.server.app[REGISTRY]
    async with running_relay(redis, settings):
        # Reclaimed and published again: the order service sees each reservation twice.
        assert (
            await wait_for(
                lambda: constant(metric(registry, "order_reservation_duplicates_total")), 20.0
            )
            == 20.0
        )
    assert await order_count(db, activity_id)() == 20
    got = await db.fetch(
        "SELECT reservation_id FROM orders.orders WHERE activity_id=$1", activity_id
    )
    assert sorted(r["reservation_id"] for r in got) == sorted(rids)


async def test_entries_of_a_failed_publish_are_published_by_the_same_relay_next_round(
    seckill: TestClient[Any, Any],
    orders: TestClient[Any, Any],
    token: Token,
    redis: Redis,
    db: asyncpg.Connection,
    settings: Settings,
) -> None:
    from services.seckill.outbox_relay import OutboxRelay, RelayMetrics

    # Never reclaimed within the test: only the relay's own pending list can bring
    # the entries back.
    settings = dataclasses.replace(settings, relay_reclaim_idle_ms=600_000)
    relay = OutboxRelay(redis, settings, RelayMetrics(CollectorRegistry()))
    producer = make_producer(settings)
    await producer.start()
    # As for a relay that published before: the topic's metadata is known. (A closed
    # client that must still fetch metadata waits for ever instead of raising.)
    await producer.partitions_for(settings.topic(SECKILL_RESERVATIONS))
    try:
        assert await relay.relay_once(producer) == 0  # nothing yet, pending list checked
        activity_id, rids = await reserve_many(seckill, token, 12)
        stream = activity_keys(activity_id).outbox
        await producer.stop()  # the broker "goes away" after the relay read the entries
        with pytest.raises(ProducerClosed):
            await relay.relay_once(producer)
        assert (await redis.xpending(stream, RELAY_GROUP))["pending"] == 12
        producer = make_producer(settings)
        await producer.start()
        assert await relay.relay_once(producer) == 12
        assert await relay.relay_once(producer) == 0
    finally:
        await producer.stop()
    assert (await redis.xpending(stream, RELAY_GROUP))["pending"] == 0
    assert await wait_for(order_count(db, activity_id), 12) == 12
    got = await db.fetch(
        "SELECT reservation_id FROM orders.orders WHERE activity_id=$1", activity_id
    )
    assert sorted(r["reservation_id"] for r in got) == sorted(rids)


async def test_a_relay_that_knows_other_sales_publishes_a_new_sales_presses_within_half_a_second(
    seckill: TestClient[Any, Any], token: Token, redis: Redis, settings: Settings
) -> None:
    """The demo and every benchmark round create a sale just before it starts: its first
    presses must not wait for a slow re-read of the registry (it was 2 s)."""
    from services.seckill.outbox_relay import OutboxRelay, RelayMetrics

    relay = OutboxRelay(redis, settings, RelayMetrics(CollectorRegistry()))
    producer = make_producer(settings)
    await producer.start()
    try:
        await reserve_many(seckill, token, 1)
        assert await relay.relay_once(producer) == 1  # it now watches that sale's stream
        await reserve_many(seckill, token, 3)  # a new sale
        await asyncio.sleep(0.5)
        assert await relay.relay_once(producer) == 3
    finally:
        await producer.stop()


async def test_reservations_keep_succeeding_while_kafka_is_down_and_flow_when_it_returns(
    token: Token,
    redis: Redis,
    db: asyncpg.Connection,
    settings: Settings,
    orders: TestClient[Any, Any],
) -> None:
    broker_down = dataclasses.replace(settings, kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    api = create_app(broker_down)  # with its relay, which cannot reach Kafka
    client = await started_client(api)
    try:
        activity_id, _ = await reserve_many(client, token, 15)
        stream = activity_keys(activity_id).outbox
        assert await redis.xlen(stream) == 15
        ops = await started_client(create_ops(api))
        try:
            resp = await ops.get("/readyz")
            body = await resp.json()
            assert resp.status == 200 and body["status"] == "degraded"
            assert body["checks"]["redis"] == "ok" and body["checks"]["kafka"] != "ok"
        finally:
            await ops.close()
    finally:
        await client.close()

    assert await order_count(db, activity_id)() == 0
    async with running_relay(redis, settings):  # Kafka is back
        assert await wait_for(order_count(db, activity_id), 15) == 15
    assert await redis.xlen(stream) == 0


async def test_undecodable_and_invalid_events_are_dead_lettered_and_good_ones_processed(
    orders: TestClient[Any, Any], db: asyncpg.Connection, settings: Settings
) -> None:
    good = Envelope(
        id="e-good",
        type="seckill.reserved",
        key="u1",
        data={
            "reservation_id": "9-" + "a" * 32,
            "activity_id": 9,
            "user_id": "u1",
            "sku": "s",
            "quantity": 1,
            "unit_price_cents": 100,
            "reserved_at": "2026-01-01T00:00:00.000Z",
            "pay_before": "2099-01-01T00:15:00.000Z",
        },
    )
    invalid = dataclasses.replace(good, id="e-bad", data={**good.data, "quantity": "lots"})
    topic = settings.topic(SECKILL_RESERVATIONS)
    producer = make_producer(settings)
    await producer.start()
    try:
        for value in (b"{not json", invalid.encode(), good.encode()):
            await (await producer.send(topic, value=value, key=b"u1"))
    finally:
        await producer.stop()

    assert await wait_for(lambda: db.fetchval("SELECT count(*) FROM orders.orders"), 1) == 1
    dead = await read_dead_letters(settings, SECKILL_RESERVATIONS, 2)
    reasons = {r.value: dict(r.headers)["dlq.reason"].decode() for r in dead}
    assert reasons[b"{not json"].startswith("malformed")
    assert "quantity" in reasons[invalid.encode()]
    assert orjson.loads(invalid.encode())["id"] == "e-bad"
    assert await db.fetchval("SELECT reservation_id FROM orders.orders") == "9-" + "a" * 32


@pytest.mark.parametrize("copies", [3])
async def test_redelivered_reservation_events_make_one_order(
    orders: TestClient[Any, Any], db: asyncpg.Connection, settings: Settings, copies: int
) -> None:
    event = Envelope(
        id="e-1",
        type="seckill.reserved",
        key="u1",
        data={
            "reservation_id": "5-" + "b" * 32,
            "activity_id": 5,
            "user_id": "u1",
            "sku": "s",
            "quantity": 2,
            "unit_price_cents": 150,
            "reserved_at": "2026-01-01T00:00:00.000Z",
            "pay_before": "2099-01-01T00:15:00.000Z",
        },
    )
    producer = make_producer(settings)
    await producer.start()
    try:
        await publish_all(producer, settings.topic(SECKILL_RESERVATIONS), [event] * copies)
    finally:
        await producer.stop()
    registry = orders.server.app[REGISTRY]
    assert (
        await wait_for(
            lambda: constant(metric(registry, "order_reservation_duplicates_total")), copies - 1.0
        )
        == copies - 1.0
    )
    rows = await db.fetch("SELECT amount_cents, state FROM orders.orders")
    assert [(r["amount_cents"], r["state"]) for r in rows] == [(300, "pending_payment")]
    # One order.created in the outbox path, published (the order relay polls the outbox:
    # right after the insert its row may still be waiting for the next poll).
    outbox = lambda: db.fetchval("SELECT count(*) FROM orders.outbox")  # noqa: E731
    assert await wait_for(outbox, 0, within=10) == 0


async def test_each_new_order_is_announced_once_on_the_orders_topic(
    seckill: TestClient[Any, Any],
    orders: TestClient[Any, Any],
    token: Token,
    redis: Redis,
    db: asyncpg.Connection,
    settings: Settings,
) -> None:
    activity_id, rids = await reserve_many(seckill, token, 12)
    async with running_relay(redis, settings):
        assert await wait_for(order_count(db, activity_id), 12) == 12
    seen = await read_topic(settings, ORDERS, lambda es: len(es) >= 12)
    assert len(seen) == 12  # and no more arrived
    assert {e.type for e in seen} == {"order.created"}
    assert sorted(e.data["reservation_id"] for e in seen) == sorted(rids)
    order_ids = {str(r["id"]) for r in await db.fetch("SELECT id FROM orders.orders")}
    assert {e.key for e in seen} == order_ids == {e.data["order_id"] for e in seen}
    assert len({e.id for e in seen}) == 12
