"""Reconciliation on real Redis, PostgreSQL and the broker: lost events are found and
repaired, a second run finds nothing, and a broker that refuses the repairs fails only
those repairs: the run goes on, reports everything and exits non-zero at the end."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from services.common.events import GROUP_COMPLETED, GROUP_JOINED, GROUP_OPENED, event_id_for
from services.common.settings import Settings
from services.common.topics import GROUPBUY, SECKILL_RESERVATIONS
from services.groupbuy.keys import campaign_keys
from services.reconcile.__main__ import reconciler
from services.reconcile.domain import Kind, RunReport
from services.reconcile.job import ReconcileMetrics, Reconciler
from services.seckill.keys import RELAY_GROUP, activity_keys
from tests.helpers import (
    create_activity,
    create_campaign,
    free_port,
    join_group,
    lose_outbox,
    open_group,
    read_topic,
    running_relay,
    settings_env,
    started_client,
    wait_for,
)

Token = Callable[..., dict[str, str]]


@pytest.fixture
async def job(settings: Settings) -> AsyncIterator[tuple[Reconciler, CollectorRegistry]]:
    registry = CollectorRegistry()
    no_grace = dataclasses.replace(settings, reconcile_grace_seconds=0)
    async with reconciler(no_grace, ReconcileMetrics(registry)) as r:
        yield r, registry


def counts(run: RunReport) -> dict[str, int]:
    return {k.value: run.count(k) for k in Kind if run.count(k)}


async def reserve(seckill: TestClient[Any, Any], token: Token, activity_id: int, user: str) -> str:
    resp = await seckill.post(
        f"/api/seckill/activities/{activity_id}/reservations", headers=token(user)
    )
    assert resp.status == 201
    return str((await resp.json())["reservation_id"])


async def test_a_reservation_whose_event_was_lost_becomes_an_order(
    seckill: TestClient[Any, Any],
    orders: TestClient[Any, Any],
    token: Token,
    redis: Redis,
    db: asyncpg.Connection,
    settings: Settings,
    job: tuple[Reconciler, CollectorRegistry],
) -> None:
    reconcile, registry = job
    activity = await create_activity(seckill, token("ops", admin=True), stock=5)
    kept = await reserve(seckill, token, activity["id"], "u1")
    lost = await reserve(seckill, token, activity["id"], "u2")
    stream = activity_keys(activity["id"]).outbox
    # The entry of `lost` is acknowledged without being published: what a broker that
    # restarted with the message unconsumed (memory only) amounts to.
    entries = await redis.xrange(stream)
    lost_id = next(i for i, f in entries if f[b"rid"] == lost.encode())
    await redis.xreadgroup(RELAY_GROUP, "x", {stream: ">"}, count=10)
    await redis.xack(stream, RELAY_GROUP, lost_id)
    await redis.xdel(stream, lost_id)
    async with running_relay(redis, settings):
        count = lambda: db.fetchval("SELECT count(*) FROM orders.orders")  # noqa: E731
        assert await wait_for(count, 1) == 1  # only `kept`
        assert counts(await reconcile.run_once()) == {"reservation_without_order": 1}
        assert (
            registry.get_sample_value(
                "reconciliation_mismatches", {"kind": "reservation_without_order"}
            )
            == 1.0
        )
        assert await wait_for(count, 2) == 2
    rids = {r["reservation_id"] for r in await db.fetch("SELECT reservation_id FROM orders.orders")}
    assert rids == {kept, lost}
    assert counts(await reconcile.run_once()) == {}
    assert (
        registry.get_sample_value(
            "reconciliation_mismatches", {"kind": "reservation_without_order"}
        )
        == 0.0
    )


async def test_a_cancelled_order_whose_stock_was_not_returned_gets_it_back_once(
    seckill: TestClient[Any, Any],
    orders: TestClient[Any, Any],
    token: Token,
    redis: Redis,
    db: asyncpg.Connection,
    settings: Settings,
    job: tuple[Reconciler, CollectorRegistry],
) -> None:
    reconcile, _ = job
    activity = await create_activity(seckill, token("ops", admin=True), stock=3)
    rid = await reserve(seckill, token, activity["id"], "u1")
    async with running_relay(redis, settings):
        count = lambda: db.fetchval("SELECT count(*) FROM orders.orders")  # noqa: E731
        assert await wait_for(count, 1) == 1
    # Cancelled, but the order.cancelled event never left (written behind the outbox).
    await db.execute(
        "UPDATE orders.orders SET state='cancelled', cancel_reason='timeout', "
        "cancelled_at=now() - interval '1 minute' WHERE reservation_id=$1",
        rid,
    )
    stock = activity_keys(activity["id"]).stock
    assert await redis.get(stock) == b"2"
    assert counts(await reconcile.run_once()) == {"cancelled_not_released": 1}
    assert await redis.get(stock) == b"3"
    assert counts(await reconcile.run_once()) == {}
    assert await redis.get(stock) == b"3"


async def test_unrepairable_differences_are_reported(
    seckill: TestClient[Any, Any],
    orders: TestClient[Any, Any],
    token: Token,
    redis: Redis,
    db: asyncpg.Connection,
    settings: Settings,
    job: tuple[Reconciler, CollectorRegistry],
) -> None:
    reconcile, _ = job
    activity = await create_activity(seckill, token("ops", admin=True), stock=3)
    rid = await reserve(seckill, token, activity["id"], "u1")
    async with running_relay(redis, settings):
        count = lambda: db.fetchval("SELECT count(*) FROM orders.orders")  # noqa: E731
        assert await wait_for(count, 1) == 1
    keys = activity_keys(activity["id"])
    # Stock handed back while the order is still payable, and a unit gone missing.
    await redis.eval(
        "local r = cjson.decode(redis.call('HGET', KEYS[1], ARGV[1])); r.state = 'released';"
        "redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(r))",
        1,
        keys.reservations,
        rid,
    )
    await redis.decr(keys.stock)
    await db.execute(
        "INSERT INTO orders.orders (id, reservation_id, activity_id, user_id, sku, quantity,"
        " unit_price_cents, amount_cents, reserved_at, pay_before) VALUES"
        " ($1, 'ghost', $2, 'u9', 's', 1, 1, 1, now(), now() + interval '1 hour')",
        uuid.uuid4(),
        activity["id"],
    )
    found = counts(await reconcile.run_once())
    assert found == {
        "released_but_order_live": 1,
        "order_without_reservation": 1,
        "stock_drift": 1,
    }
    await asyncio.sleep(0)


@pytest.fixture
async def groupbuy_recording(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The groupbuy API with its consumers (the record of groups and members), without the
    relay: the tests decide what happens to the outbox."""
    from services.groupbuy.app import create_app

    client = await started_client(create_app(settings, run_relay=False, run_sweeper=False))
    yield client
    await client.close()


async def test_groups_whose_events_were_lost_become_orders_and_records_once(
    groupbuy_recording: TestClient[Any, Any],
    orders: TestClient[Any, Any],
    token: Token,
    redis: Redis,
    db: asyncpg.Connection,
    job: tuple[Reconciler, CollectorRegistry],
) -> None:
    reconcile, registry = job
    gb = groupbuy_recording
    campaign = await create_campaign(gb, token("ops", admin=True), group_size=3, stock=9)
    full = await open_group(gb, token, campaign["id"], "l1")
    assert [await join_group(gb, token, full, u) for u in ("m1", "m2")] == [201, 201]
    waiting = await open_group(gb, token, campaign["id"], "l2")
    # Acknowledged to the shoppers, relayed, then lost with a memory-only broker.
    assert len(await lose_outbox(redis, campaign_keys(campaign["id"]).outbox)) == 5

    assert counts(await reconcile.run_once()) == {"group_event_lost": 5}
    repaired = registry.get_sample_value(
        "reconciliation_repairs_total", {"kind": "group_event_lost"}
    )
    assert repaired == 5.0

    query = (
        "SELECT user_id, state, group_state, amount_cents FROM orders.orders "
        "WHERE activity_id = $1 AND source = 'groupbuy' ORDER BY user_id"
    )

    async def group_orders() -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await db.fetch(query, campaign["id"])]

    expected = [
        ("l1", "pending_payment", "completed", 4900),
        ("l2", "pending_payment", "open", 4900),
        ("m1", "pending_payment", "completed", 4900),
        ("m2", "pending_payment", "completed", 4900),
    ]
    assert await wait_for(group_orders, expected) == expected

    async def recorded() -> list[tuple[Any, ...]]:
        rows = await db.fetch(
            "SELECT g.id, g.state, g.completion, array_agg(m.user_id ORDER BY m.position) "
            "FROM groupbuy.groups g JOIN groupbuy.members m ON m.group_id = g.id "
            "WHERE g.campaign_id = $1 GROUP BY g.id ORDER BY g.state",
            campaign["id"],
        )
        return [tuple(r) for r in rows]

    record = [(full, "completed", "full", ["l1", "m1", "m2"]), (waiting, "open", None, ["l2"])]
    assert await wait_for(recorded, record) == record
    # Repaired once: the next run finds nothing, and nothing was created twice.
    assert counts(await reconcile.run_once()) == {}
    assert await group_orders() == expected


# --- a broker that refuses the repairs ----------------------------------------------------


async def create_topic(settings: Settings, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(settings.topic(topic), num_partitions=2, replication_factor=1)]
        )
    finally:
        await admin.close()


def failing_republish(settings: Settings, **overrides: Any) -> tuple[Settings, dict[str, str]]:
    """Settings (and a child's environment) whose seckill republishing cannot succeed: a
    topic prefix under which seckill.reservations does not exist, on a broker that does
    not create topics on demand. Deterministic, and no client is mocked."""
    broken = dataclasses.replace(
        settings,
        kafka_topic_prefix=f"{settings.kafka_topic_prefix}nokafka.",
        reconcile_grace_seconds=0,
        reconcile_republish_batch=2,
        reconcile_repair_attempts=2,
        reconcile_repair_timeout_seconds=1.0,
        reconcile_repair_backoff_seconds=0.05,
        **overrides,
    )
    return broken, settings_env(broken)


async def lost_reservations(
    seckill: TestClient[Any, Any], token: Token, redis: Redis, users: list[str]
) -> int:
    """An activity whose reservations' events were all lost; its id."""
    activity = await create_activity(seckill, token("ops", admin=True), stock=5)
    for user in users:
        await reserve(seckill, token, activity["id"], user)
    assert len(await lose_outbox(redis, activity_keys(activity["id"]).outbox)) == len(users)
    return int(activity["id"])


async def test_a_broker_refusing_the_republish_fails_only_that_repair_and_the_run_reports_all(
    seckill: TestClient[Any, Any],
    orders: TestClient[Any, Any],
    groupbuy: TestClient[Any, Any],
    token: Token,
    redis: Redis,
    db: asyncpg.Connection,
    settings: Settings,
) -> None:
    # Activity A, first in the run: three reservations whose events were lost.
    broken_activity = await lost_reservations(seckill, token, redis, ["u1", "u2", "u3"])
    # Activity B, after it: a cancelled order whose stock never came back.
    healthy = await create_activity(seckill, token("ops", admin=True), stock=3)
    rid = await reserve(seckill, token, healthy["id"], "u9")
    async with running_relay(redis, settings):
        count = "SELECT count(*) FROM orders.orders WHERE activity_id = $1"
        assert await wait_for(lambda: db.fetchval(count, healthy["id"]), 1) == 1
    await db.execute(
        "UPDATE orders.orders SET state='cancelled', cancel_reason='timeout', "
        "cancelled_at=now() - interval '1 minute' WHERE reservation_id=$1",
        rid,
    )
    # Campaign C: a full group whose three events (opened, joined, completed) were lost.
    campaign = await create_campaign(groupbuy, token("ops", admin=True), group_size=2, stock=6)
    gid = await open_group(groupbuy, token, campaign["id"], "leader")
    assert await join_group(groupbuy, token, gid, "m1") == 201
    assert len(await lose_outbox(redis, campaign_keys(campaign["id"]).outbox)) == 3

    broken, env = failing_republish(settings)
    await create_topic(broken, GROUPBUY)  # groupbuy's topic exists under the prefix
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.reconcile",
        "--once",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), 60)
    report = out.decode()
    assert child.returncode == 1, (report, err.decode()[-3000:])
    assert "Traceback" not in err.decode()
    topic = broken.topic(SECKILL_RESERVATIONS)
    lines = report.splitlines()
    assert lines[0] == "reconciled 2 activities and 1 campaign"
    assert (
        f"  activity {broken_activity}: reservation_without_order: found 3, repaired 0, "
        f"failed 3 (publishing to {topic}: no answer within 1 s)"
    ) in lines
    assert f"  activity {healthy['id']}: cancelled_not_released: found 1, repaired 1" in lines
    assert f"  campaign {campaign['id']}: group_event_lost: found 3, repaired 3" in lines
    assert lines[-1] == (
        "result: NOT CLEAN: 3 repairs failed, 0 could not be compared, 0 mismatches need attention"
    )
    # The other sales were repaired: B's unit is back, C's events are on the topic with
    # the ids the relay gave them, in the order the scripts appended them.
    assert await redis.get(activity_keys(healthy["id"]).stock) == b"3"
    events = await read_topic(broken, GROUPBUY, lambda es: len(es) >= 3)
    assert [(e.type, e.id) for e in events] == [
        (GROUP_OPENED, event_id_for(GROUP_OPENED, gid)),
        (GROUP_JOINED, event_id_for(GROUP_JOINED, f"{gid}:m1")),
        (GROUP_COMPLETED, event_id_for(GROUP_COMPLETED, gid)),
    ]
    assert {e.key for e in events} == {gid}
    # A's reservations still have no order: nothing was half-done or invented.
    assert await db.fetchval(count, broken_activity) == 0


async def test_the_reconcile_service_keeps_running_and_counts_the_failed_repairs(
    seckill: TestClient[Any, Any], token: Token, redis: Redis, settings: Settings
) -> None:
    await lost_reservations(seckill, token, redis, ["u1", "u2", "u3"])
    port = free_port()
    _, env = failing_republish(settings, reconcile_interval_seconds=0.2, reconcile_ops_port=port)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.reconcile",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:

        async def samples() -> dict[tuple[str, str], float]:
            try:
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"http://127.0.0.1:{port}/metrics") as resp,
                ):
                    text = await resp.text()
            except aiohttp.ClientError:
                return {}
            return {
                (s.name, s.labels.get("kind") or s.labels.get("result", "")): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }

        async def failed_runs() -> bool:
            return (await samples()).get(("reconciliation_runs_total", "failed"), 0) >= 2

        assert await wait_for(failed_runs, True, within=40)
        found = await samples()
        assert child.returncode is None  # still running after failed runs
        runs = found[("reconciliation_runs_total", "failed")]
        # Three lost events per run, none of them published; counted, not fatal.
        failures = found[("reconciliation_repair_failures_total", "reservation_without_order")]
        assert failures >= 3 * runs - 3
        assert found.get(("reconciliation_runs_total", "ok"), 0) == 0
        assert found[("reconciliation_mismatches", "reservation_without_order")] == 3
    finally:
        child.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(child.communicate(), 30)
    assert child.returncode == 0, err.decode()[-3000:]
