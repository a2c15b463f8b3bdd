"""SIGKILL real service processes mid-stream: nothing acknowledged is lost, nothing doubles."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from services.common.auth import mint_token
from services.common.settings import Settings
from services.seckill.keys import activity_keys
from tests.e2e.processes import service
from tests.helpers import constant, create_activity, running_relay, wait_for

pytestmark = pytest.mark.slow
Token = Callable[..., dict[str, str]]


def orders_of(db: asyncpg.Connection, activity_id: int) -> Callable[[], Any]:
    return lambda: db.fetchval(
        "SELECT count(*) FROM orders.orders WHERE activity_id=$1", activity_id
    )


async def test_killing_the_order_service_mid_stream_leaves_one_order_per_reservation(
    seckill: TestClient[Any, Any],
    token: Token,
    redis: Redis,
    db: asyncpg.Connection,
    settings: Settings,
    tmp_path: Path,
) -> None:
    n = 1500
    activity = await create_activity(seckill, token("ops", admin=True), stock=n)
    results = await asyncio.gather(
        *(
            seckill.post(
                f"/api/seckill/activities/{activity['id']}/reservations", headers=token(f"u{i}")
            )
            for i in range(n)
        )
    )
    assert [r.status for r in results] == [201] * n
    reserved = {(await r.json())["reservation_id"] for r in results}

    async with service("order", settings, tmp_path) as order, running_relay(redis, settings):
        # Kill it as soon as orders are landing, with most of the stream still in flight.
        landed = await wait_for(lambda: _positive(orders_of(db, activity["id"])), True, 30, 0.005)
        assert landed
        order.kill()
        at_kill = await orders_of(db, activity["id"])()
        assert at_kill < n, "the stream finished before the kill; the test proves nothing"
        await order.start()
        assert await wait_for(orders_of(db, activity["id"]), n, 60) == n
        # Every order.created leaves the PostgreSQL outbox (while the service runs).
        assert await wait_for(lambda: db.fetchval("SELECT count(*) FROM orders.outbox"), 0) == 0
    rows = await db.fetch(
        "SELECT reservation_id FROM orders.orders WHERE activity_id=$1", activity["id"]
    )
    assert len(rows) == n and {r["reservation_id"] for r in rows} == reserved


async def _positive(probe: Callable[[], Any]) -> bool:
    return bool(await probe() > 0)


async def test_killing_the_seckill_service_loses_no_acknowledged_reservation(
    token: Token,
    redis: Redis,
    db: asyncpg.Connection,
    settings: Settings,
    tmp_path: Path,
    orders: TestClient[Any, Any],
) -> None:
    stock = 3000
    admin = {"Authorization": f"Bearer {mint_token(settings.jwt_keys(), 'ops', ['admin'])}"}
    base = f"http://127.0.0.1:{settings.seckill_port}"
    acknowledged: set[str] = set()
    async with service("seckill", settings, tmp_path) as seckill_proc:
        async with aiohttp.ClientSession(base_url=base) as http:
            resp = await http.post(
                "/api/seckill/admin/activities", headers=admin, json=_activity(stock)
            )
            assert resp.status == 201
            activity_id = (await resp.json())["id"]

            async def shopper(i: int) -> None:
                headers = {"Authorization": f"Bearer {mint_token(settings.jwt_keys(), f'u{i}')}"}
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.post(
                        f"/api/seckill/activities/{activity_id}/reservations", headers=headers
                    ) as r:
                        if r.status == 201:
                            acknowledged.add((await r.json())["reservation_id"])

            tasks = [asyncio.create_task(shopper(i)) for i in range(stock)]
            await wait_for(lambda: constant(len(acknowledged) >= 200), True, 30, 0.005)
            seckill_proc.kill()  # mid-spike, with its relay mid-stream
            await asyncio.gather(*tasks)
        assert 200 <= len(acknowledged) < stock
        await seckill_proc.start()
        keys = activity_keys(activity_id)
        taken = stock - int(await redis.get(keys.stock))
        # Presses cut off by the kill may or may not have reserved; each that did is in
        # Redis and must become an order, like every acknowledged one.
        assert taken >= len(acknowledged)
        assert await wait_for(orders_of(db, activity_id), taken, 60) == taken
    rows = await db.fetch(
        "SELECT reservation_id FROM orders.orders WHERE activity_id=$1", activity_id
    )
    got = {r["reservation_id"] for r in rows}
    assert len(rows) == taken and acknowledged <= got
    assert got == {k.decode() for k in await redis.hkeys(activity_keys(activity_id).reservations)}


def _activity(stock: int) -> dict[str, Any]:
    from tests.helpers import activity_body

    return activity_body(stock=stock, sku=f"kill-{os.getpid()}")
