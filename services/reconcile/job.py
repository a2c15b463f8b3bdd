"""The reconciliation job: loads both sides of every recent activity and campaign, compares
them (domain.compare, groupbuy_domain.compare_campaign), repairs what is safe to repair,
and exports the counts as metrics.

A failure is never fatal to a run: a sale that cannot be read is reported and skipped,
repairs go in bounded batches with bounded retries (repair.py), and the run goes on
with the next sale. What failed is in the run's report and in
reconciliation_repair_failures_total / reconciliation_sales_unreadable_total.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import asyncpg
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.asyncio import Redis

from services.common.events import SECKILL_RESERVED, Envelope
from services.common.kafka import kafka_reachable, publish_all
from services.common.settings import Settings
from services.common.topics import GROUPBUY, SECKILL_RESERVATIONS
from services.groupbuy.store import GroupStore
from services.reconcile.domain import (
    ACTIVITY,
    CAMPAIGN,
    Kind,
    RunReport,
    SaleReport,
    compare,
    state_missing,
)
from services.reconcile.groupbuy_domain import (
    CampaignRecord,
    compare_campaign,
    group_events,
    member_of_key,
)
from services.reconcile.repair import RepairPolicy, chunks, describe, repair_in_batches
from services.reconcile.state import (
    ActivityState,
    CampaignState,
    activity_orders,
    activity_state,
    campaign_orders,
    campaign_state,
    group_members,
    group_states,
    recent_sales,
)
from services.seckill.domain import outbox_event
from services.seckill.stock import StockStore

log = logging.getLogger(__name__)

T = TypeVar("T")

# Reads of a campaign retried until stock and groups form one snapshot (see
# CampaignState.consistent); after that the stock check is skipped for this run.
SNAPSHOT_TRIES = 3


def _one(_: object) -> int:
    return 1


class ReconcileMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.mismatches = Gauge(
            "reconciliation_mismatches",
            "Differences between Redis and PostgreSQL found by the last run, by kind "
            "(repairable kinds are repaired in the same run).",
            ["kind"],
            registry=registry,
        )
        self.repairs = Counter(
            "reconciliation_repairs_total",
            "Mismatches repaired, by kind.",
            ["kind"],
            registry=registry,
        )
        self.repair_failures = Counter(
            "reconciliation_repair_failures_total",
            "Mismatches whose repair failed after its retries (retried by the next run), by kind.",
            ["kind"],
            registry=registry,
        )
        self.unreadable = Counter(
            "reconciliation_sales_unreadable_total",
            "Activities and campaigns a run could not compare (Redis or PostgreSQL failed).",
            registry=registry,
        )
        self.runs = Counter(
            "reconciliation_runs_total",
            "Reconciliation runs, by result: ok, or failed (something could not be read or "
            "repaired; the rest of the run went on).",
            ["result"],
            registry=registry,
        )
        self.last_success = Gauge(
            "reconciliation_last_success_timestamp_seconds",
            "When the last run without failures finished.",
            registry=registry,
        )


class Reconciler:
    def __init__(
        self,
        redis: Redis,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        settings: Settings,
        metrics: ReconcileMetrics,
    ) -> None:
        self._redis = redis
        self._pool = pool
        self._producer = producer
        self._settings = settings
        self._metrics = metrics
        self._stock = StockStore(redis, None, 0)
        self._groups = GroupStore(redis)
        self._policy = RepairPolicy.from_settings(settings)
        self._grace = timedelta(seconds=settings.reconcile_grace_seconds)

    async def ping(self) -> None:
        """Readiness: Redis and PostgreSQL answer."""
        await self._redis.ping()
        await self._pool.fetchval("SELECT 1")

    async def ping_kafka(self) -> None:
        """Readiness detail: the broker the repairs are published to answers."""
        await kafka_reachable(self._producer)

    async def run_once(self) -> RunReport:
        """Reconcile every recent sale. Never raises for a failure of Redis, PostgreSQL
        or Kafka: those are in the report (and the metrics)."""
        run = RunReport()
        try:
            activities, campaigns = await recent_sales(
                self._pool, self._settings.reconcile_lookback_seconds
            )
        except Exception as exc:
            log.exception("cannot list the sales to reconcile")
            run.error = describe(exc)
            activities, campaigns = [], []
        for activity_id, stock in activities:
            run.sales.append(
                await self._guarded(ACTIVITY, activity_id, self._activity(activity_id, stock))
            )
        for campaign_id, stock in campaigns:
            run.sales.append(
                await self._guarded(CAMPAIGN, campaign_id, self._campaign(campaign_id, stock))
            )
        self._export(run)
        return run

    def _export(self, run: RunReport) -> None:
        for kind in Kind:
            self._metrics.mismatches.labels(kind.value).set(run.count(kind))
        self._metrics.unreadable.inc(sum(s.error is not None for s in run.sales))
        if run.failures:
            self._metrics.runs.labels("failed").inc()
            log.error("reconciliation run: %d failures (%d sales)", run.failures, len(run.sales))
        else:
            self._metrics.runs.labels("ok").inc()
            self._metrics.last_success.set(datetime.now(UTC).timestamp())

    async def _guarded(self, sale: str, sale_id: int, work: Awaitable[SaleReport]) -> SaleReport:
        try:
            report = await work
        except Exception as exc:
            log.exception("%s %d could not be reconciled", sale, sale_id)
            report = SaleReport(sale, sale_id)
            report.error = describe(exc)
        if report.total:
            log.warning(
                "%s %d: %s",
                sale,
                sale_id,
                {k.value: len(v) for k, v in report.mismatches.items() if v},
            )
        return report

    # --- seckill ------------------------------------------------------------------------

    async def _activity(self, activity_id: int, initial_stock: int) -> SaleReport:
        # Orders first: a reservation whose order lands between the two reads then looks
        # like "no order" only if older than the grace period, which it is not.
        orders = await activity_orders(self._pool, activity_id)
        state = await activity_state(self._redis, activity_id)
        if not state.present:
            return state_missing(ACTIVITY, activity_id)
        report = compare(
            activity_id,
            initial_stock,
            state.remaining,
            state.reservations(),
            state.in_outbox,
            {o.reservation_id: o.record() for o in orders},
            datetime.now(UTC),
            self._grace,
        )
        lost = [
            _reserved_event(activity_id, state, rid)
            for rid in report.mismatches[Kind.RESERVATION_WITHOUT_ORDER]
        ]
        await self._repair(
            report,
            Kind.RESERVATION_WITHOUT_ORDER,
            f"publishing to {self._settings.topic(SECKILL_RESERVATIONS)}",
            self._batches(lost),
            self._publisher(SECKILL_RESERVATIONS),
        )
        reasons = {o.reservation_id: o.cancel_reason or "unknown" for o in orders}

        async def release(rids: list[str]) -> None:
            for rid in rids:
                await self._stock.release(activity_id, rid, reasons[rid])

        await self._repair(
            report,
            Kind.CANCELLED_NOT_RELEASED,
            "returning stock",
            self._batches(report.mismatches[Kind.CANCELLED_NOT_RELEASED]),
            release,
        )
        return report

    # --- groupbuy -----------------------------------------------------------------------

    async def _campaign(self, campaign_id: int, initial_stock: int) -> SaleReport:
        # The record before Redis, as for activities; member rows after it, for every
        # group either side knows (Redis is always ahead of the record, so a row read
        # later can only belong to a member Redis already has).
        orders = await campaign_orders(self._pool, campaign_id)
        recorded = await group_states(self._pool, campaign_id)
        state = await self._campaign_snapshot(campaign_id)
        if state.meta is None or state.remaining is None:
            return state_missing(CAMPAIGN, campaign_id)
        members = await group_members(self._pool, sorted(set(state.groups) | set(recorded)))
        record = CampaignRecord(
            groups=recorded,
            members={(gid, user) for gid, users in members.items() for user in users},
            orders=orders,
        )
        report, republish = compare_campaign(
            campaign_id,
            initial_stock,
            state.remaining,
            state.groups,
            state.in_outbox,
            record,
            datetime.now(UTC),
            self._grace,
        )
        if not state.consistent:
            report.mismatches[Kind.GROUP_STOCK_DRIFT].clear()
            log.info("campaign %d: stock kept changing, its stock check waits", campaign_id)
        meta = state.meta
        per_group = Tally(member_of_key(k)[0] for k in report.mismatches[Kind.GROUP_EVENT_LOST])
        groups = [(gid, group_events(campaign_id, state.groups[gid], meta)) for gid in republish]
        publish = self._publisher(GROUPBUY)

        async def publish_groups(batch: list[tuple[str, list[Envelope]]]) -> None:
            await publish([event for _, events in batch for event in events])

        await self._repair(
            report,
            Kind.GROUP_EVENT_LOST,
            f"publishing to {self._settings.topic(GROUPBUY)}",
            self._batches(groups, lambda g: len(g[1])),  # a group's events stay together
            publish_groups,
            weight=lambda g: per_group[g[0]],
        )

        async def release(keys: list[str]) -> None:
            for key in keys:
                await self._groups.release_unit(*member_of_key(key))

        await self._repair(
            report,
            Kind.GROUP_CANCELLED_NOT_RELEASED,
            "returning units",
            self._batches(report.mismatches[Kind.GROUP_CANCELLED_NOT_RELEASED]),
            release,
        )
        return report

    async def _campaign_snapshot(self, campaign_id: int) -> CampaignState:
        state = await campaign_state(self._redis, campaign_id)
        for _ in range(SNAPSHOT_TRIES - 1):
            if state.consistent:
                break
            await asyncio.sleep(0.05)
            state = await campaign_state(self._redis, campaign_id)
        return state

    # --- repairs ------------------------------------------------------------------------

    def _batches(self, items: Sequence[T], weight: Callable[[T], int] = _one) -> list[list[T]]:
        return chunks(items, self._policy.batch, weight)

    def _publisher(self, topic: str) -> Callable[[list[Envelope]], Awaitable[None]]:
        name = self._settings.topic(topic)

        async def publish(events: list[Envelope]) -> None:
            # The ids are the originals': consumers ignore what they already have.
            await publish_all(self._producer, name, events)

        return publish

    async def _repair(
        self,
        report: SaleReport,
        kind: Kind,
        what: str,
        batches: Sequence[list[T]],
        action: Callable[[list[T]], Awaitable[object]],
        weight: Callable[[T], int] = _one,
    ) -> None:
        """Run one kind's repairs and record in the report how many mismatches were
        repaired and how many were not (weight: the mismatches one item repairs)."""
        if not batches:
            return
        outcome = await repair_in_batches(batches, action, self._policy)
        done = sum(weight(item) for item in outcome.done)
        failed = sum(weight(item) for item in outcome.failed)
        report.repaired[kind] = done
        self._metrics.repairs.labels(kind.value).inc(done)
        if failed:
            report.failed[kind] = failed
            report.repair_errors[kind] = f"{what}: {outcome.error}"
            self._metrics.repair_failures.labels(kind.value).inc(failed)


def _reserved_event(activity_id: int, state: ActivityState, rid: str) -> Envelope:
    """The seckill.reserved event of a reservation, as the relay published it (same id)."""
    r = state.records[rid]
    fields = {
        "type": SECKILL_RESERVED,
        "rid": rid,
        "user": r["user"],
        "qty": str(r["qty"]),
        "at": r["at"],
        "deadline": r["deadline"],
        "price": state.price,
        "sku": state.sku,
    }
    return outbox_event(activity_id, fields)
