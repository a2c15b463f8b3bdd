"""Prometheus metrics of the seckill service, on its own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.common.http import HttpMetrics
from services.common.kafka import ConsumerMetrics
from services.seckill.live_metrics import LiveMetrics
from services.seckill.outbox_relay import RelayMetrics
from services.seckill.stock_return import StockReturnMetrics


class SeckillMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http = HttpMetrics(self.registry)
        self.relay = RelayMetrics(self.registry)
        self.live = LiveMetrics(self.registry)
        self.consumer = ConsumerMetrics(self.registry)
        self.stock_returns = StockReturnMetrics(self.registry)
        self.reservations = Counter(
            "seckill_reservations_total",
            "Reservation attempts by result (reserved, sold_out, limit_reached, ...).",
            ["result"],
            registry=self.registry,
        )
        self.sold_out_short_circuit = Counter(
            "seckill_sold_out_short_circuit_total",
            "Presses answered sold out from the in-process flag, without Redis.",
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "seckill_reserve_batch_size",
            "Reservation scripts coalesced into one Redis round trip.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
