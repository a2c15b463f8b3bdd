"""Every process's /metrics shows its CPU, memory, open files, garbage collections and
event-loop lag, and the lag shows a loop that was blocked."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from services.common.settings import Settings
from services.seckill.app import create_app, create_ops
from services.seckill.worker import create_worker
from tests.helpers import started_client

RUNTIME_METRICS = {
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "python_gc_collections_total",
    "event_loop_lag_seconds",
}


async def scrape(ops: TestClient[Any, Any]) -> dict[str, float]:
    """Sample name -> value (the sum over labels, for python_gc_collections_total)."""
    resp = await ops.get("/metrics")
    assert resp.status == 200
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def api_ops(settings: Settings) -> tuple[web.Application, Callable[[], web.Application]]:
    api = create_app(dataclasses.replace(settings, seckill_embedded_worker=False))
    return api, lambda: create_ops(api)


def worker_ops(settings: Settings) -> tuple[None, Callable[[], web.Application]]:
    return None, lambda: create_worker(dataclasses.replace(settings, seckill_embedded_worker=False))


@pytest.mark.parametrize("process", [api_ops, worker_ops], ids=["seckill-api", "seckill-worker"])
async def test_a_process_s_metrics_show_its_cpu_memory_fds_gc_and_loop_lag(
    settings: Settings, redis: Redis, db: asyncpg.Connection, process: Any
) -> None:
    api_app, ops_factory = process(settings)
    api = await started_client(api_app) if api_app is not None else None
    ops = await started_client(ops_factory())
    try:
        values = await scrape(ops)
        assert RUNTIME_METRICS <= set(values)
        assert values["process_cpu_seconds_total"] > 0
        assert values["process_resident_memory_bytes"] > 10 * 2**20
        assert values["process_open_fds"] >= 3
        assert values["python_gc_collections_total"] >= 0
        assert 0 <= values["event_loop_lag_seconds"] < 0.25
    finally:
        await ops.close()
        if api is not None:
            await api.close()


async def test_a_loop_blocked_for_300_ms_shows_a_lag_of_at_least_250_ms(
    settings: Settings, redis: Redis, db: asyncpg.Connection
) -> None:
    api_app, ops_factory = api_ops(settings)
    api = await started_client(api_app)
    ops = await started_client(ops_factory())
    try:
        await asyncio.sleep(0.1)  # the sampler has woken a few times
        assert (await scrape(ops))["event_loop_lag_seconds"] < 0.25
        # A blocking call on the loop, as a synchronous client or a long computation is.
        asyncio.get_running_loop().call_soon(time.sleep, 0.3)
        await asyncio.sleep(0.1)
        lag = (await scrape(ops))["event_loop_lag_seconds"]
        assert 0.25 <= lag < 1.0
    finally:
        await ops.close()
        await api.close()
