"""Prometheus metrics of the seckill service, on its own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.common.http import HttpMetrics
from services.seckill.background import BackgroundMetrics


class SeckillMetrics:
    """The API's metrics, and the background work's when it runs in the same process
    (`background` is None when it runs in its own: its metrics are that process's)."""

    def __init__(self, embedded_background: bool = True) -> None:
        self.registry = CollectorRegistry()
        self.http = HttpMetrics(self.registry)
        self.background = BackgroundMetrics(self.registry) if embedded_background else None
        self.reservations = Counter(
            "seckill_reservations_total",
            "Reservation attempts by result (reserved, sold_out, limit_reached, ...).",
            ["result"],
            registry=self.registry,
        )
        self.idempotent_replays = Counter(
            "seckill_idempotent_replays_total",
            "Presses answered with the recorded first outcome of their Idempotency-Key.",
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
