"""The Kafka broker is SIGKILLed mid-sale and restarted on the same log: every reservation
acknowledged before, during and after the outage becomes exactly one order, with no
reconciliation running, and every Kafka-using process says so in /readyz while it lasts.

The broker is the test's own (tests/kafka_broker.py), never the shared one."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from services.common.auth import mint_token
from services.common.kafka import ensure_topics
from services.common.settings import Settings
from tests.e2e.processes import service
from tests.helpers import activity_body, free_port, wait_for
from tests.kafka_broker import KafkaBroker

pytestmark = pytest.mark.slow

# As `make up` and Kubernetes run them: the seckill API leaves the outbox relay and the
# stock returns to the seckill worker, and does not talk to Kafka itself. Every other
# process does (groupbuy's relay and consumers, order, notify, and reconcile's repairs).
KAFKA_USERS = ("seckill.worker", "order", "groupbuy", "notify", "reconcile")
OUTAGE_SECONDS = 8.0
PRESSES_PER_SECOND = 100
# /readyz gives each check 2 s; the outage must show within ~2 s.
NOTICE_WITHIN = 3.0
DRAIN_WITHIN = 60.0


@dataclasses.dataclass
class Readiness:
    """When a process's /readyz first said Kafka was failing, and later ok again."""

    failing_at: float | None = None
    ok_again_at: float | None = None


async def test_a_broker_killed_mid_sale_loses_no_acknowledged_reservation(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    broker = KafkaBroker(tmp_path)
    first_start = await asyncio.to_thread(broker.start)
    try:
        s = dataclasses.replace(
            settings,
            kafka_bootstrap_servers=broker.bootstrap,
            seckill_embedded_worker=False,
            reconcile_ops_port=free_port(),
            # Reconciliation must not repair anything here: the test proves that the
            # pipeline alone turns every reservation into an order.
            reconcile_interval_seconds=3600,
        )
        await ensure_topics(s, partitions=2)
        report = await _sale_with_broker_outage(s, broker, db, tmp_path)
    finally:
        broker.stop()
    report["broker_first_start_s"] = round(first_start, 2)
    print(f"\nbroker restart: {report}")


async def _sale_with_broker_outage(
    s: Settings, broker: KafkaBroker, db: asyncpg.Connection, tmp_path: Path
) -> dict[str, float]:
    seckill_url = f"http://127.0.0.1:{s.seckill_port}"
    admin = {"Authorization": f"Bearer {mint_token(s.jwt_keys(), 'ops', ['admin'])}"}
    acknowledged: set[str] = set()
    during_outage: set[str] = set()
    outage = asyncio.Event()
    readiness = {name: Readiness() for name in KAFKA_USERS}

    async with contextlib.AsyncExitStack() as stack:
        for name in ("seckill", *KAFKA_USERS):
            await stack.enter_async_context(service(name, s, tmp_path))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        resp = await http.post(
            f"{seckill_url}/api/seckill/admin/activities",
            headers=admin,
            json=activity_body(stock=100_000, sku="broker-restart"),
        )
        assert resp.status == 201
        activity_id = (await resp.json())["id"]
        press_url = f"{seckill_url}/api/seckill/activities/{activity_id}/reservations"

        async def press(user: int) -> None:
            token = mint_token(s.jwt_keys(), f"u{user}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.post(press_url, headers={"Authorization": f"Bearer {token}"}) as r:
                    assert r.status in (201, 503), await r.text()
                    if r.status == 201:
                        rid = (await r.json())["reservation_id"]
                        acknowledged.add(rid)
                        if outage.is_set():
                            during_outage.add(rid)

        async def shoppers(stop: asyncio.Event) -> None:
            user, tasks = 0, []
            while not stop.is_set():
                for _ in range(PRESSES_PER_SECOND // 10):
                    tasks.append(asyncio.create_task(press(user)))
                    user += 1
                await asyncio.sleep(0.1)
            await asyncio.gather(*tasks)

        async def watch(name: str) -> None:
            port = getattr(s, f"{name.replace('.', '_')}_ops_port")
            state = readiness[name]
            while True:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                        kafka_ok = (await r.json())["checks"]["kafka"] == "ok"
                    now = time.monotonic()
                    if outage.is_set() and not kafka_ok and state.failing_at is None:
                        state.failing_at = now
                    if state.failing_at is not None and kafka_ok and state.ok_again_at is None:
                        state.ok_again_at = now
                await asyncio.sleep(0.1)

        stop = asyncio.Event()
        pressing = asyncio.create_task(shoppers(stop))
        watchers = [asyncio.create_task(watch(name)) for name in KAFKA_USERS]
        await asyncio.sleep(2.0)  # orders are flowing
        killed_at = time.monotonic()
        broker.kill()
        outage.set()
        await asyncio.sleep(OUTAGE_SECONDS)
        outage.clear()
        restart_seconds = await asyncio.to_thread(broker.start)
        back_at = time.monotonic()
        await asyncio.sleep(2.0)
        stop.set()
        await pressing

        async def orders() -> int:
            return int(
                await db.fetchval(
                    "SELECT count(*) FROM orders.orders WHERE activity_id=$1", activity_id
                )
            )

        count = await wait_for(orders, len(acknowledged), DRAIN_WITHIN, 0.05)
        drained_at = time.monotonic()
        await wait_for(lambda: _all_recovered(readiness), True, 30, 0.1)
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)

        ids = {
            r["reservation_id"]
            for r in await db.fetch(
                "SELECT reservation_id FROM orders.orders WHERE activity_id=$1", activity_id
            )
        }
        # Exactly one order per acknowledged reservation: none lost, none extra.
        assert count == len(acknowledged) == len(ids)
        assert ids == acknowledged
        assert len(during_outage) > 100, "presses during the outage must have been answered"
        for name, state in readiness.items():
            assert state.failing_at is not None, f"{name} never reported the outage"
            noticed = state.failing_at - killed_at
            assert noticed <= NOTICE_WITHIN, f"{name} reported the outage after {noticed:.1f} s"
            assert state.ok_again_at is not None, f"{name} never recovered"

        return {
            "acknowledged": len(acknowledged),
            "acknowledged_during_outage": len(during_outage),
            "orders": count,
            "broker_restart_s": round(restart_seconds, 2),
            "drain_after_broker_back_s": round(drained_at - back_at, 2),
            "outage_noticed_s": round(
                max(st.failing_at - killed_at for st in readiness.values() if st.failing_at), 2
            ),
        }


async def _all_recovered(readiness: dict[str, Readiness]) -> bool:
    return all(state.ok_again_at is not None for state in readiness.values())
