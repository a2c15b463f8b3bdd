"""Returns the stock of cancelled orders: consumes order.cancelled from the orders topic.

The release script is idempotent on the reservation id, so a redelivered cancellation
returns nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter

from services.common.events import ORDER_CANCELLED
from services.common.kafka import Incoming, PermanentError
from services.seckill.domain import activity_of_reservation
from services.seckill.sold_out import SoldOutFlags
from services.seckill.stock import StockStore

log = logging.getLogger(__name__)


class StockReturnMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.returned = Counter(
            "seckill_stock_returns_total",
            "Cancelled orders handled, by result (ok, already_released, unknown).",
            ["result"],
            registry=registry,
        )


class StockReturnHandler:
    def __init__(
        self, stock: StockStore, sold_out: SoldOutFlags, metrics: StockReturnMetrics
    ) -> None:
        self._stock = stock
        self._sold_out = sold_out
        self._metrics = metrics

    async def __call__(self, batch: Sequence[Incoming]) -> None:
        for item in batch:
            if item.event.type != ORDER_CANCELLED:
                continue
            if item.event.data.get("source") == "groupbuy":
                # A group order: its unit belongs to a group-buy campaign, returned by
                # the groupbuy service, never to a seckill activity.
                continue
            reservation_id = item.event.data.get("reservation_id")
            reason = item.event.data.get("reason")
            if (
                not isinstance(reservation_id, str)
                or not isinstance(reason, str)
                or (activity_id := activity_of_reservation(reservation_id)) is None
            ):
                raise PermanentError(
                    f"order.cancelled without a valid reservation: {item.event.id}"
                )
            result = await self._stock.release(activity_id, reservation_id, reason)
            self._metrics.returned.labels(result).inc()
            if result == "ok":
                # The item can be bought again: stop answering "sold out" from memory.
                self._sold_out.clear(activity_id)
            elif result == "unknown":
                log.error(
                    "cancelled reservation %s is not in Redis; stock not returned "
                    "(reconciliation reports it)",
                    reservation_id,
                )
