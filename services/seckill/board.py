"""The merchant board's press counters: how many presses an activity was answered, and how
many of them were "sold out", over every seckill API process.

The reserve route counts in this process's memory (a dict increment: no I/O on the hot
path); a background task adds the counts to the activity's Redis hash (keys.board) every
FLUSH_SECONDS, one pipeline for every activity pressed since the last flush. These are
display counters, not records: a process killed with SIGKILL loses at most its last
FLUSH_SECONDS of counts, and a flush whose reply is lost may be counted twice when it is
retried. Reservations and remaining stock, which are records, are read from the
reservation state itself (StockStore.live_counts), never from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis

from services.common.periodic import SETTLE_SECONDS
from services.seckill.keys import activity_keys

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.25
# A board hash lives this long after its last flush: a sale's presses stop when it ends,
# so its counts stay readable for days after it ended (and a sale still pressed keeps
# them), and a forgotten sale's counters go away on their own.
BOARD_RETENTION_SECONDS = 7 * 24 * 3600


class PressBoard:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._presses: dict[int, int] = {}
        self._sold_out: dict[int, int] = {}

    def answered(self, activity_id: int, sold_out: bool) -> None:
        self._presses[activity_id] = self._presses.get(activity_id, 0) + 1
        if sold_out:
            self._sold_out[activity_id] = self._sold_out.get(activity_id, 0) + 1

    async def flush(self) -> None:
        """Add the counts made since the last flush to Redis. On failure they are kept
        for the next flush (Redis down for a while loses nothing but time)."""
        presses, self._presses = self._presses, {}
        sold_out, self._sold_out = self._sold_out, {}
        if not presses and not sold_out:
            return
        pipe = self._redis.pipeline(transaction=False)
        for activity_id in presses.keys() | sold_out.keys():
            board = activity_keys(activity_id).board
            if presses.get(activity_id):
                pipe.hincrby(board, "presses", presses[activity_id])
            if sold_out.get(activity_id):
                pipe.hincrby(board, "sold_out", sold_out[activity_id])
            pipe.expire(board, BOARD_RETENTION_SECONDS)
        try:
            await pipe.execute()
        except BaseException:
            for activity_id, n in presses.items():
                self._presses[activity_id] = self._presses.get(activity_id, 0) + n
            for activity_id, n in sold_out.items():
                self._sold_out[activity_id] = self._sold_out.get(activity_id, 0) + n
            raise

    async def run(self) -> None:
        """Flush every FLUSH_SECONDS until cancelled, then once more (a graceful stop
        loses nothing). As in services.common.periodic, a flush under way when the
        service stops is let finish: a Redis call cancelled halfway can leave its
        connection with an unread reply."""
        try:
            while True:
                await asyncio.sleep(FLUSH_SECONDS)
                current = asyncio.ensure_future(self.flush())
                try:
                    await asyncio.shield(current)
                except asyncio.CancelledError:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(current, SETTLE_SECONDS)
                    raise
                except Exception as exc:
                    log.warning("board counters not flushed (kept for the next flush): %r", exc)
        except asyncio.CancelledError:
            try:
                await asyncio.wait_for(self.flush(), SETTLE_SECONDS)
            except Exception as exc:
                log.warning(
                    "board counters of the last %.2f s lost at shutdown: %r", FLUSH_SECONDS, exc
                )
            raise
