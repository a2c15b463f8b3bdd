"""The seckill background work in its own process (services/seckill/worker.py): the API
started with SECKILL_EMBEDDED_WORKER=false runs none of it, the worker runs all of it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Callable
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from services.common.settings import Settings
from services.seckill.app import create_app, create_ops
from services.seckill.keys import activity_keys
from services.seckill.worker import create_worker
from tests.helpers import create_activity, started_client, wait_for

Token = Callable[..., dict[str, str]]


async def samples(ops: TestClient[Any, Any]) -> dict[tuple[str, tuple[Any, ...]], float]:
    resp = await ops.get("/metrics")
    assert resp.status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(await resp.text())
        for s in family.samples
    }


async def test_a_worker_beside_an_api_without_one_turns_every_reservation_into_one_order(
    settings: Settings,
    orders: TestClient[Any, Any],
    token: Token,
    redis: Redis,
    db: asyncpg.Connection,
) -> None:
    split = dataclasses.replace(
        settings, seckill_embedded_worker=False, metrics_refresh_seconds=0.1
    )
    api = await started_client(create_app(split))
    api_ops = await started_client(create_ops(api.app))
    worker = None
    try:
        activity = await create_activity(api, token("ops", admin=True), stock=20)
        url = f"/api/seckill/activities/{activity['id']}/reservations"
        answers = await asyncio.gather(*(api.post(url, headers=token(f"u{i}")) for i in range(30)))
        assert Counter(r.status for r in answers) == {201: 20, 410: 10}
        reserved = {(await r.json())["reservation_id"] for r in answers if r.status == 201}

        # Nothing in the API process relays: the outbox holds every reservation.
        await asyncio.sleep(0.5)
        assert await redis.xlen(activity_keys(activity["id"]).outbox) == 20
        ready = await (await api_ops.get("/readyz")).json()
        assert ready == {"status": "ready", "checks": {"redis": "ok", "postgres": "ok"}}
        api_metrics = await samples(api_ops)
        assert not any(name.startswith("seckill_outbox_") for name, _ in api_metrics)
        assert api_metrics[("seckill_reservations_total", (("result", "reserved"),))] == 20.0

        worker = await started_client(create_worker(split))
        count = "SELECT count(*) FROM orders.orders WHERE activity_id = $1"
        assert await wait_for(lambda: db.fetchval(count, activity["id"]), 20) == 20
        rows = await db.fetch(
            "SELECT reservation_id FROM orders.orders WHERE activity_id = $1", activity["id"]
        )
        assert {r["reservation_id"] for r in rows} == reserved
        assert await wait_for(lambda: redis.xlen(activity_keys(activity["id"]).outbox), 0) == 0

        async def worker_ready() -> Any:
            return (await (await worker.get("/readyz")).json())["status"]

        assert await wait_for(worker_ready, "ready") == "ready"
        stock_gauge = ("seckill_activity_stock_remaining", (("activity", str(activity["id"])),))

        async def worker_metrics() -> Any:
            found = await samples(worker)
            return found.get(("seckill_outbox_published_total", ())), found.get(stock_gauge)

        assert await wait_for(worker_metrics, (20.0, 0.0)) == (20.0, 0.0)
    finally:
        if worker is not None:
            await worker.close()
        await api_ops.close()
        await api.close()
