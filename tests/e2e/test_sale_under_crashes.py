"""A whole sale (reserve, pay some, let the rest time out) while the seckill and the order
service are each SIGKILLed and restarted: every invariant holds afterwards and the
reconciliation job finds nothing to report."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from services.common.auth import mint_token
from services.common.settings import Settings
from services.order.payments import SIGNATURE_HEADER, sign
from services.reconcile.__main__ import reconciler
from services.reconcile.job import ReconcileMetrics
from services.seckill.keys import activity_keys
from tests.e2e.processes import service
from tests.helpers import activity_body, constant, payment_body, wait_for

pytestmark = pytest.mark.slow

STOCK = 300
# The first wave cannot sell out (the kill lands mid-spike, however slow the machine):
# the second wave always finds stock, so the order service dies with reservations coming.
SHOPPERS = 200


async def test_a_sale_survives_killed_services_and_reconciles_clean(
    redis: Redis, db: asyncpg.Connection, settings: Settings, tmp_path: Path
) -> None:
    settings = dataclasses.replace(settings, reconcile_grace_seconds=0)
    seckill_url = f"http://127.0.0.1:{settings.seckill_port}"
    order_url = f"http://127.0.0.1:{settings.order_port}"
    admin = {"Authorization": f"Bearer {mint_token(settings.jwt_keys(), 'ops', ['admin'])}"}
    acknowledged: set[str] = set()
    paid: set[str] = set()

    async with (
        service("seckill", settings, tmp_path) as seckill,
        service("order", settings, tmp_path) as order,
        aiohttp.ClientSession() as http,
    ):
        resp = await http.post(
            f"{seckill_url}/api/seckill/admin/activities",
            headers=admin,
            json=activity_body(stock=STOCK, payment_timeout_seconds=4, sku="crash"),
        )
        assert resp.status == 201
        activity_id = (await resp.json())["id"]

        async def shopper(i: int) -> None:
            headers = {"Authorization": f"Bearer {mint_token(settings.jwt_keys(), f'u{i}')}"}
            with contextlib.suppress(aiohttp.ClientError):
                async with http.post(
                    f"{seckill_url}/api/seckill/activities/{activity_id}/reservations",
                    headers=headers,
                ) as r:
                    if r.status == 201:
                        acknowledged.add((await r.json())["reservation_id"])

        async def provider() -> None:
            """Pays every other order as it appears, retrying like a payment provider."""
            own = await asyncpg.connect(settings.database_url)  # db is busy elsewhere
            try:
                await pay_forever(own)
            finally:
                await own.close()

        async def pay_forever(conn: asyncpg.Connection) -> None:
            while True:
                rows = await conn.fetch(
                    "SELECT id, amount_cents, user_id FROM orders.orders"
                    " WHERE state='pending_payment' AND activity_id=$1",
                    activity_id,
                )
                for row in rows:
                    if int(row["user_id"][1:]) % 2 or str(row["id"]) in paid:
                        continue
                    body = payment_body(str(row["id"]), row["amount_cents"], f"t-{row['id']}")
                    ts = int(time.time())
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.post(
                            f"{order_url}/api/payments/callback",
                            data=body,
                            headers={
                                SIGNATURE_HEADER: sign(settings.payment_webhook_secret, ts, body)
                            },
                        ) as r:
                            if r.status == 200 and (await r.json())["result"] == "paid":
                                paid.add(str(row["id"]))
                await asyncio.sleep(0.05)

        payments = asyncio.create_task(provider())
        shoppers = [asyncio.create_task(shopper(i)) for i in range(SHOPPERS)]
        assert await wait_for(lambda: constant(len(acknowledged) >= 60), True, 30, 0.005)
        seckill.kill()  # mid-spike
        acknowledged_at_kill = len(acknowledged)
        await asyncio.gather(*shoppers)
        await seckill.start()
        orders_now = lambda: db.fetchval(  # noqa: E731
            "SELECT count(*) FROM orders.orders WHERE activity_id=$1", activity_id
        )
        assert await wait_for(lambda: _at_least(orders_now, 20), True, 30, 0.01)
        # A second, steadier wave, so that the order service dies while reservations are
        # still arriving, not after the last one was already persisted.
        gate = asyncio.Semaphore(20)
        acknowledged_before = len(acknowledged)

        async def steady(i: int) -> None:
            async with gate:
                await shopper(i)

        more = [asyncio.create_task(steady(i)) for i in range(SHOPPERS, SHOPPERS + 300)]
        assert await wait_for(
            lambda: constant(len(acknowledged) >= acknowledged_before + 10), True, 30, 0.005
        )
        order.kill()  # with orders, payments and the sweeper in flight
        keys = activity_keys(activity_id)
        reservations_at_kill = await redis.hlen(keys.reservations)
        await asyncio.gather(*more)
        await order.start()

        # Settle: every reservation has its order, none is left unpaid, the outboxes are
        # empty and the stock of every cancelled order is back.
        async def settled() -> bool:
            reservations = await redis.hlen(keys.reservations)
            pending = await db.fetchval(
                "SELECT count(*) FROM orders.orders WHERE activity_id=$1"
                " AND state='pending_payment'",
                activity_id,
            )
            paid_count = await db.fetchval(
                "SELECT count(*) FROM orders.orders WHERE activity_id=$1 AND state='paid'",
                activity_id,
            )
            outbox = await db.fetchval("SELECT count(*) FROM orders.outbox")
            return bool(
                await orders_now() == reservations
                and pending == 0
                and outbox == 0
                and await redis.xlen(keys.outbox) == 0
                and int(await redis.get(keys.stock)) == STOCK - paid_count
            )

        assert await wait_for(settled, True, within=60, interval=0.2)
        payments.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await payments

    # Invariants, from the records themselves.
    rows = await db.fetch(
        "SELECT reservation_id, user_id, state, cancel_reason FROM orders.orders"
        " WHERE activity_id=$1",
        activity_id,
    )
    records = {
        k.decode(): orjson.loads(v) for k, v in (await redis.hgetall(keys.reservations)).items()
    }
    assert acknowledged <= {r["reservation_id"] for r in rows}  # nothing acknowledged lost
    assert {r["reservation_id"] for r in rows} == set(records)  # one order per reservation
    # The kills landed mid-stream, or this test would prove nothing.
    assert acknowledged_at_kill < STOCK and reservations_at_kill < len(rows)
    assert max(Counter(r["user_id"] for r in rows).values()) == 1  # limit 1 per shopper
    states = Counter(r["state"] for r in rows)
    assert states["paid"] <= STOCK  # never oversold
    assert states["paid"] >= 1 and states["cancelled"] >= 1 and states["pending_payment"] == 0
    for row in rows:  # cancelled -> released, paid -> still held
        expected = "released" if row["state"] == "cancelled" else "reserved"
        assert records[row["reservation_id"]]["state"] == expected, row
    assert int(await redis.get(keys.stock)) == STOCK - states["paid"]
    payments_rows = await db.fetchval(
        "SELECT count(*) FROM orders.payments WHERE outcome='applied'"
    )
    assert payments_rows == states["paid"]

    async with reconciler(settings, ReconcileMetrics(CollectorRegistry())) as job:
        run = await job.run_once()
    assert [(s.sale, s.sale_id) for s in run.sales] == [("activity", activity_id)]
    assert run.sales[0].total == 0 and run.failures == 0, run.sales[0]


async def _at_least(probe: Any, n: int) -> bool:
    return bool(await probe() >= n)
