"""The coupon service's PostgreSQL outbox (coupon.outbox): events of a coupon's life after
issue (locked, used, released, revoked, expired, expiring) are written in the transaction
that makes them true, and services.common.pg_outbox.PgOutboxRelay publishes them to the
coupons topic. (claimed and granted leave through the Redis outbox streams instead.)"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import asyncpg

from services.common.events import Envelope
from services.common.pg_outbox import OutboxSql, insert_outbox
from services.common.topics import COUPONS

OUTBOX = OutboxSql.for_schema("coupon")


@dataclass(slots=True)
class Tx:
    conn: asyncpg.Connection
    announced: bool = False


class Announcer:
    """Transactions that may write coupon events; after a COMMIT that wrote some,
    on_announced runs (it wakes the relay instead of waiting for its next poll)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        topic_prefix: str = "",
        on_announced: Callable[[], None] = lambda: None,
    ) -> None:
        self.pool = pool
        self._topic = f"{topic_prefix}{COUPONS}"
        self._on_announced = on_announced

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self.pool.acquire() as conn:
            tx = Tx(conn)
            async with conn.transaction():
                yield tx
        if tx.announced:
            self._on_announced()

    async def announce(self, tx: Tx, events: Sequence[Envelope]) -> None:
        """Queue events for the relay, in tx's transaction."""
        if events:
            tx.announced = True
            await insert_outbox(tx.conn, OUTBOX, self._topic, events)
