"""The event-loop lag gauge keeps the worst lag of its window, then forgets it."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry

from services.common.loop_lag import LoopLag


def gauge_value(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("event_loop_lag_seconds")


def test_the_worst_lag_of_the_window_is_reported_until_it_leaves_the_window() -> None:
    lag = LoopLag(CollectorRegistry(), window=30.0)
    lag.record(100.0, 0.002)
    lag.record(101.0, 0.4)
    lag.record(102.0, 0.01)
    lag.record(125.0, 0.003)
    assert lag.worst(now=130.9) == 0.4
    # 101 + 30 s: the stall is out of the window; the next worst takes over.
    assert lag.worst(now=131.5) == 0.01
    assert lag.worst(now=132.5) == 0.003
    assert lag.worst(now=200.0) == 0.0


def test_a_later_sample_at_least_as_bad_replaces_the_earlier_ones() -> None:
    lag = LoopLag(CollectorRegistry(), window=30.0)
    lag.record(100.0, 0.2)
    lag.record(110.0, 0.2)
    assert lag.worst(now=135.0) == 0.2  # the one of 110 s is still in the window
    assert lag.worst(now=140.5) == 0.0


def test_the_gauge_reads_the_worst_lag_when_scraped() -> None:
    registry = CollectorRegistry()
    lag = LoopLag(registry)
    assert gauge_value(registry) == 0.0
    lag.record(time.monotonic(), 0.3)
    assert gauge_value(registry) == 0.3
