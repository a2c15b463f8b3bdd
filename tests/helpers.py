"""Helpers shared by the tests (fixtures are in conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from services.common.http_server import ServiceRunner

RESET_SQL = """
TRUNCATE seckill.activities, seckill.admin_audit, groupbuy.admin_audit,
    orders.orders, orders.outbox, orders.payments,
    orders.admin_audit, orders.cancelled_sales, notify.templates, notify.admin_audit,
    groupbuy.campaigns, groupbuy.groups, groupbuy.members,
    notify.deliveries, notify.subscriptions, notify.recipients,
    identity.users, identity.merchants, identity.token_families, identity.refresh_tokens,
    identity.login_failures, identity.admin_login_audit, identity.outbox,
    coupon.templates, coupon.coupons, coupon.grant_rules, coupon.grants, coupon.orders,
    coupon.outbox, coupon.admin_audit RESTART IDENTITY CASCADE
"""


async def reset_stores(settings: Any) -> None:
    """Empty the settings' Redis database and every table the services write."""
    import asyncpg
    from redis.asyncio import Redis

    redis = Redis.from_url(settings.redis_url)
    await redis.flushdb()
    await redis.aclose()
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(RESET_SQL)
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def activity_body(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "sku": "sku-1",
        "title": "Limited tea set",
        "price_cents": 9900,
        "stock": 10,
        "starts_at": (now - timedelta(seconds=1)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
        "per_user_limit": 1,
        "payment_timeout_seconds": 900,
    }
    body.update(overrides)
    return body


async def create_activity(
    client: TestClient[Any, Any], admin: dict[str, str], **overrides: Any
) -> dict[str, Any]:
    resp = await client.post(
        "/api/seckill/admin/activities", json=activity_body(**overrides), headers=admin
    )
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def wait_for(
    probe: Callable[[], Any], expected: Any, within: float = 20.0, interval: float = 0.1
) -> Any:
    """Poll an async probe until it returns expected; returns the last value seen."""
    deadline = asyncio.get_running_loop().time() + within
    value = await probe()
    while value != expected and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(interval)
        value = await probe()
    return value


def settings_env(settings: Any, **overrides: Any) -> dict[str, str]:
    """Environment variables that make Settings.from_env() in a child process equal to
    these settings (plus overrides)."""
    import dataclasses
    import os

    values = {**dataclasses.asdict(settings), **overrides}
    return {**os.environ, **{k.upper(): str(v) for k, v in values.items()}}


async def constant(value: Any) -> Any:
    """An awaitable of a value already known, for wait_for probes over local state."""
    return value


@contextlib.asynccontextmanager
async def running_relay(redis: Any, settings: Any) -> AsyncIterator[Any]:
    """A seckill outbox relay running in this process until the block ends."""
    from prometheus_client import CollectorRegistry

    from services.seckill.outbox_relay import OutboxRelay, RelayMetrics

    relay = OutboxRelay(redis, settings, RelayMetrics(CollectorRegistry()))
    task = asyncio.create_task(relay.run(), name="test-outbox-relay")
    try:
        yield relay
    finally:
        from services.common.shutdown import stop_tasks

        await stop_tasks([task])


class ServiceTestServer(TestServer):
    """A TestServer on the services' own runner (services/common/http_server.py)."""

    async def _make_runner(self, **kwargs: Any) -> ServiceRunner:
        return ServiceRunner(self.app, **kwargs)


async def started_client(app: Any) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(ServiceTestServer(app))
    await client.start_server()
    return client


async def read_topic(
    settings: Any, topic: str, done: Callable[[list[Any]], bool], within: float = 20.0
) -> list[Any]:
    """Envelopes on a topic (from the start) until done(envelopes) holds, then one more
    short poll so that unexpected extra messages are seen too."""
    from aiokafka import AIOKafkaConsumer

    from services.common.events import Envelope

    consumer = AIOKafkaConsumer(
        settings.topic(topic),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: list[Any] = []
    try:
        async with asyncio.timeout(within):
            while not done(seen):
                batch = await consumer.getmany(timeout_ms=300)
                seen.extend(Envelope.decode(r.value) for rs in batch.values() for r in rs)
        batch = await consumer.getmany(timeout_ms=700)
        seen.extend(Envelope.decode(r.value) for rs in batch.values() for r in rs)
    finally:
        await consumer.stop()
    return seen


async def read_dead_letters(
    settings: Any, topic: str, at_least: int, within: float = 20.0
) -> list[Any]:
    """The records of `topic`'s dead-letter topic (with their dlq.* headers), once at least
    `at_least` are there, plus whatever one more short poll finds."""
    from aiokafka import AIOKafkaConsumer

    from services.common.topics import dlq

    consumer = AIOKafkaConsumer(
        settings.topic(dlq(topic)),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    dead: list[Any] = []
    try:
        async with asyncio.timeout(within):
            while len(dead) < at_least:
                batch = await consumer.getmany(timeout_ms=500)
                dead.extend(r for rs in batch.values() for r in rs)
        batch = await consumer.getmany(timeout_ms=700)
        dead.extend(r for rs in batch.values() for r in rs)
    finally:
        await consumer.stop()
    return dead


def reserved_event(
    activity_id: int, user: str, quantity: int = 1, unit_price_cents: int = 500
) -> Any:
    """A seckill.reserved envelope as the seckill relay publishes it, for a new
    reservation (its order is order_id_for(data["reservation_id"])), payable for 15 min."""
    import uuid

    from services.common.events import SECKILL_RESERVED, Envelope, event_id_for

    rid = f"{activity_id}-{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    return Envelope(
        id=event_id_for(SECKILL_RESERVED, rid),
        type=SECKILL_RESERVED,
        key=user,
        data={
            "reservation_id": rid,
            "activity_id": activity_id,
            "user_id": user,
            "sku": "tea",
            "quantity": quantity,
            "unit_price_cents": unit_price_cents,
            "reserved_at": now.isoformat(),
            "pay_before": (now + timedelta(minutes=15)).isoformat(),
        },
    )


def payment_body(order_id: str, amount_cents: int, transaction_id: str) -> bytes:
    import orjson

    return orjson.dumps(
        {
            "transaction_id": transaction_id,
            "order_id": order_id,
            "amount_cents": amount_cents,
            "status": "success",
            "paid_at": datetime.now(UTC).isoformat(),
        }
    )


async def post_payment(
    client: TestClient[Any, Any], secret: str, body: bytes, timestamp: int | None = None
) -> tuple[int, dict[str, Any]]:
    """POST a payment callback signed as the provider would."""
    import time

    from services.order.payments import SIGNATURE_HEADER, sign

    ts = int(time.time()) if timestamp is None else timestamp
    resp = await client.post(
        "/api/payments/callback",
        data=body,
        headers={SIGNATURE_HEADER: sign(secret, ts, body), "Content-Type": "application/json"},
    )
    return resp.status, await resp.json()


def campaign_body(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "sku": "sku-gb",
        "title": "Tea for five",
        "group_price_cents": 4900,
        "single_price_cents": 9900,
        "group_size": 5,
        "stock": 50,
        "starts_at": (now - timedelta(seconds=1)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
        "group_window_seconds": 3600,
        "per_user_limit": 1,
    }
    body.update(overrides)
    return body


async def create_campaign(
    client: TestClient[Any, Any], admin: dict[str, str], **overrides: Any
) -> dict[str, Any]:
    resp = await client.post(
        "/api/groupbuy/admin/campaigns", json=campaign_body(**overrides), headers=admin
    )
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


@contextlib.asynccontextmanager
async def running_stream_relay(
    redis: Any, settings: Any, outbox: Any, prefix: str
) -> AsyncIterator[Any]:
    """A stream outbox relay (services/common/stream_outbox.py) running in this process
    until the block ends."""
    from prometheus_client import CollectorRegistry

    from services.common.shutdown import stop_tasks
    from services.common.stream_outbox import RelayMetrics, StreamOutboxRelay

    relay = StreamOutboxRelay(redis, settings, RelayMetrics(CollectorRegistry(), prefix), outbox)
    task = asyncio.create_task(relay.run(), name=f"test-{prefix}-relay")
    try:
        yield relay
    finally:
        await stop_tasks([task])


def running_groupbuy_relay(
    redis: Any, settings: Any
) -> contextlib.AbstractAsyncContextManager[Any]:
    """The groupbuy outbox relay running in this process until the block ends."""
    from services.groupbuy.app import GROUPBUY_OUTBOX

    return running_stream_relay(redis, settings, GROUPBUY_OUTBOX, "groupbuy")


async def redis_keyspace(redis: Any, pattern: str) -> dict[bytes, Any]:
    """Every key matching pattern with its value: "changes nothing" is compared on it.

    Leaves out the merchant board's counters (services/seckill/board.py): they count every
    press answered, refused ones too, and change a flush after the press, on their own."""
    out: dict[bytes, Any] = {}
    for key in sorted(await redis.keys(pattern)):
        if key.endswith(b":board"):
            continue
        kind = (await redis.type(key)).decode()
        if kind == "string":
            out[key] = await redis.get(key)
        elif kind == "hash":
            out[key] = await redis.hgetall(key)
        elif kind == "zset":
            out[key] = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            out[key] = await redis.xlen(key)
        elif kind == "set":
            out[key] = await redis.smembers(key)
        else:
            out[key] = kind
    return out


async def lose_outbox(redis: Any, stream: str) -> list[dict[bytes, bytes]]:
    """Acknowledge and delete every entry of an outbox stream without publishing it: what
    a relay followed by a memory-only broker that restarted before anyone consumed the
    messages amounts to. Returns the lost entries' fields."""
    from services.common.stream_outbox import RELAY_GROUP

    entries = await redis.xrange(stream)
    if entries:
        await redis.xreadgroup(RELAY_GROUP, "lost", {stream: ">"}, count=len(entries) + 10)
        ids = [entry_id for entry_id, _ in entries]
        await redis.xack(stream, RELAY_GROUP, *ids)
        await redis.xdel(stream, *ids)
    return [fields for _, fields in entries]


async def open_group(client: TestClient[Any, Any], token: Any, campaign_id: int, user: str) -> str:
    resp = await client.post(f"/api/groupbuy/campaigns/{campaign_id}/groups", headers=token(user))
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["id"])


async def join_group(client: TestClient[Any, Any], token: Any, group_id: str, user: str) -> int:
    resp = await client.post(f"/api/groupbuy/groups/{group_id}/join", headers=token(user))
    return resp.status


@dataclasses.dataclass
class ReplyDropper:
    """A TCP proxy in front of a server that, while `dropping`, passes requests on but
    throws the replies away: a request that was applied, and whose answer was lost."""

    upstream_port: int
    dropping: bool = False

    async def pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, replies: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if not (replies and self.dropping):
                    writer.write(data)
                    await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        await asyncio.gather(
            self.pipe(client_r, server_w, replies=False),
            self.pipe(server_r, client_w, replies=True),
        )


@contextlib.asynccontextmanager
async def reply_dropping_proxy(upstream_port: int) -> AsyncIterator[tuple[int, ReplyDropper]]:
    """(port, control) of a ReplyDropper on a free port."""
    dropper = ReplyDropper(upstream_port)
    server = await asyncio.start_server(dropper.serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], dropper
    finally:
        server.close()


async def raw_exchange(port: int, request: bytes, within: float = 5.0) -> bytes:
    """What a server on the loopback answers to these raw bytes, read until it closes the
    connection (or `within` passes: TimeoutError)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        # A server refusing an oversized request answers and closes before reading it all.
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            await writer.drain()
        async with asyncio.timeout(within):
            return await reader.read()
    finally:
        writer.close()


def parse_answer(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one HTTP/1.x answer (headers named once each)."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split(" ")[1]), headers, body


def template_body(**overrides: Any) -> dict[str, Any]:
    """A coupon template whose claims are open now: 30 off 200, valid 7 days."""
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "name": "30 off 200",
        "kind": "amount_off",
        "amount_off_cents": 3000,
        "threshold_cents": 20000,
        "validity": "relative",
        "valid_days": 7,
        "quantity": 10,
        "per_user_limit": 1,
        "claim_starts_at": (now - timedelta(seconds=1)).isoformat(),
        "claim_ends_at": (now + timedelta(hours=1)).isoformat(),
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


async def create_template(
    client: TestClient[Any, Any], admin: dict[str, str], **overrides: Any
) -> dict[str, Any]:
    """POST a template (template_body with overrides; None drops a field): 201."""
    resp = await client.post(
        "/api/coupons/admin/templates", json=template_body(**overrides), headers=admin
    )
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


def running_coupon_relay(redis: Any, settings: Any) -> contextlib.AbstractAsyncContextManager[Any]:
    """The coupon outbox relay running in this process until the block ends."""
    from services.coupon.app import COUPON_OUTBOX

    return running_stream_relay(redis, settings, COUPON_OUTBOX, "coupon")
