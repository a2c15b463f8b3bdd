"""The merchant console's live board, watched during a sale and held against the truth.

While the demo's burst runs, this reads the same two streams the console's board reads
(the seckill activity's figures, the order service's figures of that sale) through the
admin side of the gateway, and polls the truth they report on (the stock counter in
Redis, the sale's orders in PostgreSQL) every few milliseconds. The lag of a value is
the time from the truth reaching it to the board first showing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import orjson
import redis.asyncio as aioredis

TRUTH_POLL_SECONDS = 0.005
COUNT_ORDERS = "SELECT count(*) FROM orders.orders WHERE activity_id = $1 AND source = 'seckill'"

Sample = tuple[float, int]  # (monotonic time, value)


@dataclass(frozen=True, slots=True)
class Lag:
    changes: int  # distinct values the truth went through
    p50_ms: float | None
    max_ms: float | None
    missed: int  # values the board never showed (a later one replaced them in time)


def _reached(value: int, target: int, falling: bool) -> bool:
    return value <= target if falling else value >= target


def board_lag(truth: Sequence[Sample], board: Sequence[Sample], falling: bool) -> Lag:
    """For every value the truth reached, how long until the board showed it (or went
    past it: the board samples every half second, so it skips values). A value the
    truth passed before the board showed it still counts, from when the truth got there."""
    firsts: list[Sample] = []
    for t, v in truth:
        if not firsts or v != firsts[-1][1]:
            firsts.append((t, v))
    lags: list[float] = []
    missed = 0
    for t_truth, target in firsts[1:]:
        shown = next((t for t, v in board if t >= t_truth and _reached(v, target, falling)), None)
        if shown is None:
            missed += 1
        else:
            lags.append(shown - t_truth)
    lags.sort()
    return Lag(
        changes=len(firsts) - 1,
        p50_ms=lags[len(lags) // 2] * 1000 if lags else None,
        max_ms=lags[-1] * 1000 if lags else None,
        missed=missed,
    )


@dataclass
class BoardWatch:
    """Samples of the board's and the truth's remaining stock and orders created."""

    board_remaining: list[Sample] = field(default_factory=list)
    board_orders: list[Sample] = field(default_factory=list)
    truth_remaining: list[Sample] = field(default_factory=list)
    truth_orders: list[Sample] = field(default_factory=list)
    last_seckill: dict[str, Any] = field(default_factory=dict)
    last_orders: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


async def _read_stream(session: aiohttp.ClientSession, url: str, token: str, sink: Any) -> None:
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=10)
    async with session.get(url, headers=headers, timeout=timeout) as response:
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status} {await response.text()}")
        event = ""
        async for raw in response.content:
            line = raw.rstrip(b"\n")
            if line.startswith(b"event: "):
                event = line[7:].decode()
            elif line.startswith(b"data: ") and event == "figures":
                sink(time.monotonic(), orjson.loads(line[6:]))


async def _poll_truth(
    watch: BoardWatch, pg: asyncpg.Connection, r: aioredis.Redis, activity_id: int
) -> None:
    stock_key = f"sk:{{a{activity_id}}}:stock"
    while True:
        raw = await r.get(stock_key)
        if raw is not None:
            watch.truth_remaining.append((time.monotonic(), int(raw)))
        count = await pg.fetchval(COUNT_ORDERS, activity_id)
        watch.truth_orders.append((time.monotonic(), int(count)))
        await asyncio.sleep(TRUTH_POLL_SECONDS)


@contextlib.asynccontextmanager
async def watching(
    session: aiohttp.ClientSession,
    admin_base: str,
    token: str,
    activity_id: int,
    database_url: str,
    r: aioredis.Redis,
) -> Any:
    """Watch the board and the truth while the body runs (on a PostgreSQL connection of
    its own: one connection runs one query at a time)."""
    watch = BoardWatch()
    pg = await asyncpg.connect(database_url, timeout=10)

    def seckill(t: float, figures: dict[str, Any]) -> None:
        watch.last_seckill = figures
        watch.board_remaining.append((t, int(figures["remaining"])))

    def orders(t: float, figures: dict[str, Any]) -> None:
        watch.last_orders = figures
        watch.board_orders.append((t, int(figures["created"])))

    async def guarded(coro: Any, what: str) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            watch.errors.append(f"{what}: {exc!r}")

    base = admin_base.rstrip("/")
    tasks = [
        asyncio.create_task(
            guarded(
                _read_stream(
                    session,
                    f"{base}/api/seckill/admin/activities/{activity_id}/live",
                    token,
                    seckill,
                ),
                "seckill board stream",
            )
        ),
        asyncio.create_task(
            guarded(
                _read_stream(
                    session,
                    f"{base}/api/orders/admin/live?source=seckill&sale_id={activity_id}",
                    token,
                    orders,
                ),
                "orders board stream",
            )
        ),
        asyncio.create_task(guarded(_poll_truth(watch, pg, r, activity_id), "truth poller")),
    ]
    try:
        yield watch
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pg.close()


async def settled(watch: BoardWatch, within: float, presses: int) -> bool:
    """Wait until the board's last figures equal the truth's last values, and its press
    counter (flushed by each seckill process every 0.25 s) counts every press sent."""
    ends = time.monotonic() + within
    while time.monotonic() < ends:
        if (
            watch.truth_remaining
            and watch.truth_orders
            and watch.last_seckill.get("remaining") == watch.truth_remaining[-1][1]
            and watch.last_orders.get("created") == watch.truth_orders[-1][1]
            and watch.last_seckill.get("presses") == presses
        ):
            return True
        await asyncio.sleep(0.05)
    return False
