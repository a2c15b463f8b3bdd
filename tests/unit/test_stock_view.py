"""StockView: the pages' remaining stock, read once per max_age per activity, without I/O
(the loader is a local function standing in for the Redis read)."""

from __future__ import annotations

import asyncio

import pytest

from services.common.stock_view import StockView


class Store:
    """What Redis holds, the loads it was asked for, and a gate to hold a load open."""

    def __init__(self, stock: dict[int, int]) -> None:
        self.stock = stock
        self.loads: list[list[int]] = []
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def load(self, ids: list[int]) -> dict[int, int]:
        self.loads.append(ids)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("redis down")
        return {i: self.stock[i] for i in ids}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_value_is_read_once_per_max_age_and_then_again() -> None:
    store, clock = Store({1: 10, 2: 20}), Clock()
    view = StockView(store.load, 0.2, clock)
    assert await view.remaining([1, 2]) == {1: 10, 2: 20}
    store.stock[1] = 9
    clock.now += 0.19
    assert await view.remaining([1]) == {1: 10}
    clock.now += 0.02
    assert await view.remaining([1, 2]) == {1: 9, 2: 20}
    assert store.loads == [[1, 2], [1, 2]]


async def test_while_one_request_refreshes_the_others_show_the_previous_value() -> None:
    store, clock = Store({1: 10}), Clock()
    view = StockView(store.load, 0.2, clock)
    await view.remaining([1])
    store.stock[1] = 3
    clock.now += 1.0
    store.gate = asyncio.Event()
    refresher = asyncio.create_task(view.remaining([1]))
    await asyncio.sleep(0)
    others = await asyncio.gather(*(view.remaining([1]) for _ in range(50)))
    assert others == [{1: 10}] * 50
    store.gate.set()
    assert await refresher == {1: 3}
    assert store.loads == [[1], [1]]
    assert await view.remaining([1]) == {1: 3}


async def test_a_failed_refresh_is_the_callers_error_and_the_next_request_tries_again() -> None:
    store, clock = Store({1: 10}), Clock()
    view = StockView(store.load, 0.2, clock)
    await view.remaining([1])
    clock.now += 1.0
    store.fail = True
    with pytest.raises(ConnectionError):
        await view.remaining([1])
    store.fail = False
    store.stock[1] = 7
    assert await view.remaining([1]) == {1: 7}
    assert store.loads == [[1], [1], [1]]


async def test_max_age_zero_reads_every_time() -> None:
    store = Store({1: 10})
    view = StockView(store.load, 0.0, Clock())
    for _ in range(3):
        assert await view.remaining([1]) == {1: 10}
    assert len(store.loads) == 3
