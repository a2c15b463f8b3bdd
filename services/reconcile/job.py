"""The reconciliation job: loads both sides of each recent activity, compares them
(domain.compare), repairs what is safe to repair, and exports the counts as metrics.

It reads the seckill Redis keys and both services' tables: an operator's tool that
stands across the services on purpose.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.asyncio import Redis

from services.common.events import from_epoch_ms
from services.common.kafka import publish_all
from services.common.settings import Settings
from services.common.topics import SECKILL_RESERVATIONS
from services.reconcile.domain import (
    ActivityReport,
    Kind,
    OrderRecord,
    ReservationRecord,
    compare,
)
from services.seckill.domain import outbox_event
from services.seckill.keys import activity_keys
from services.seckill.stock import StockStore

log = logging.getLogger(__name__)

RECENT_ACTIVITIES = """
SELECT id, stock FROM seckill.activities
WHERE warmed_at IS NOT NULL AND ends_at > now() - make_interval(secs => $1)
ORDER BY id
"""
ACTIVITY_ORDERS = """
SELECT reservation_id, state, cancel_reason, cancelled_at FROM orders.orders
WHERE activity_id = $1 AND source = 'seckill'
"""


class ReconcileMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.mismatches = Gauge(
            "reconciliation_mismatches",
            "Differences between Redis reservations and PostgreSQL orders found by the "
            "last run, by kind (repairable kinds are repaired in the same run).",
            ["kind"],
            registry=registry,
        )
        self.repairs = Counter(
            "reconciliation_repairs_total",
            "Mismatches repaired, by kind.",
            ["kind"],
            registry=registry,
        )
        self.runs = Counter(
            "reconciliation_runs_total",
            "Reconciliation runs, by result.",
            ["result"],
            registry=registry,
        )
        self.last_success = Gauge(
            "reconciliation_last_success_timestamp_seconds",
            "When the last successful run finished.",
            registry=registry,
        )


class Reconciler:
    def __init__(
        self,
        redis: Redis,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        stock: StockStore,
        settings: Settings,
        metrics: ReconcileMetrics,
    ) -> None:
        self._redis = redis
        self._pool = pool
        self._producer = producer
        self._stock = stock
        self._settings = settings
        self._metrics = metrics

    async def ping(self) -> None:
        """Readiness: Redis and PostgreSQL answer."""
        await self._redis.ping()
        await self._pool.fetchval("SELECT 1")

    async def run_once(self) -> list[ActivityReport]:
        try:
            reports = [
                await self._reconcile(row["id"], row["stock"])
                for row in await self._pool.fetch(
                    RECENT_ACTIVITIES, self._settings.reconcile_lookback_seconds
                )
            ]
        except Exception:
            self._metrics.runs.labels("failed").inc()
            raise
        for kind in Kind:
            self._metrics.mismatches.labels(kind.value).set(sum(r.count(kind) for r in reports))
        self._metrics.runs.labels("ok").inc()
        self._metrics.last_success.set(datetime.now(UTC).timestamp())
        return reports

    async def _reconcile(self, activity_id: int, initial_stock: int) -> ActivityReport:
        keys = activity_keys(activity_id)
        # Orders first: a reservation whose order lands between the two reads then looks
        # like "no order" only if older than the grace period, which it is not.
        order_rows = await self._pool.fetch(ACTIVITY_ORDERS, activity_id)
        raw = await self._redis.hgetall(keys.reservations)
        remaining = int(await self._redis.get(keys.stock) or 0)
        in_outbox = {f[b"rid"].decode() for _, f in await self._redis.xrange(keys.outbox) if f}
        records = {k.decode(): orjson.loads(v) for k, v in raw.items()}
        reservations = {
            rid: ReservationRecord(
                rid, r["user"], int(r["qty"]), r["state"], from_epoch_ms(int(r["at"]))
            )
            for rid, r in records.items()
        }
        orders = {
            r["reservation_id"]: OrderRecord(r["reservation_id"], r["state"], r["cancelled_at"])
            for r in order_rows
        }
        report = compare(
            activity_id,
            initial_stock,
            remaining,
            reservations,
            in_outbox,
            orders,
            datetime.now(UTC),
            timedelta(seconds=self._settings.reconcile_grace_seconds),
        )
        if report.total:
            log.warning(
                "activity %d: %s",
                activity_id,
                {k.value: len(v) for k, v in report.mismatches.items() if v},
            )
        await self._republish(
            activity_id, report.mismatches[Kind.RESERVATION_WITHOUT_ORDER], records
        )
        reasons = {r["reservation_id"]: r["cancel_reason"] for r in order_rows}
        for rid in report.mismatches[Kind.CANCELLED_NOT_RELEASED]:
            await self._stock.release(activity_id, rid, reasons[rid])
            self._metrics.repairs.labels(Kind.CANCELLED_NOT_RELEASED.value).inc()
        return report

    async def _republish(
        self, activity_id: int, rids: list[str], records: dict[str, dict[str, str]]
    ) -> None:
        """Publish lost seckill.reserved events again; the event ids are the originals',
        and the order service ignores a reservation it already has."""
        if not rids:
            return
        price, sku = await self._redis.hmget(activity_keys(activity_id).meta, "price", "sku")
        events = []
        for rid in rids:
            r = records[rid]
            fields = {
                "type": "seckill.reserved",
                "rid": rid,
                "user": r["user"],
                "qty": str(r["qty"]),
                "at": r["at"],
                "deadline": r["deadline"],
                "price": price.decode(),
                "sku": sku.decode(),
            }
            events.append(outbox_event(activity_id, fields))
        await publish_all(self._producer, self._settings.topic(SECKILL_RESERVATIONS), events)
        self._metrics.repairs.labels(Kind.RESERVATION_WITHOUT_ORDER.value).inc(len(events))
