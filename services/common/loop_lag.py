"""event_loop_lag_seconds: how late the event loop runs what is due.

A task asks to wake every SAMPLE_INTERVAL_SECONDS and measures how much later it woke.
Whatever held the loop meanwhile (a blocking call, a long synchronous stretch, a CPU limit
throttling the pod) delayed every request, heartbeat and probe due in that time by as
much. The gauge is the worst lag of the last WINDOW_SECONDS, so a stall between two
scrapes is still seen by the next one.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from prometheus_client import CollectorRegistry, Gauge

# A stall shows up to one interval short (the task may have been due late in it): 25 ms
# keeps that error small, at a cost of 40 wake-ups a second (measured on an idle uvloop:
# about 4 ms of CPU per second, less on a busy loop that is awake anyway).
SAMPLE_INTERVAL_SECONDS = 0.025
# Twice the ServiceMonitor's 15 s scrape interval: every stall is in at least one scrape.
WINDOW_SECONDS = 30.0


class LoopLag:
    """Samples the running loop's lag (run()) and exports the window's worst."""

    def __init__(
        self,
        registry: CollectorRegistry,
        interval: float = SAMPLE_INTERVAL_SECONDS,
        window: float = WINDOW_SECONDS,
    ) -> None:
        self._interval = interval
        self._window = window
        # (when, lag) with lags strictly decreasing: the head is the window's worst, and
        # a sample is dropped as soon as a later one is at least as bad.
        self._worst: deque[tuple[float, float]] = deque()
        gauge = Gauge(
            "event_loop_lag_seconds",
            f"Worst delay of the event loop in running a task that was due, "
            f"over the last {window:.0f} s",
            registry=registry,
        )
        gauge.set_function(self.worst)

    def record(self, now: float, lag: float) -> None:
        while self._worst and self._worst[-1][1] <= lag:
            self._worst.pop()
        self._worst.append((now, lag))
        self._forget_before(now - self._window)

    def worst(self, now: float | None = None) -> float:
        self._forget_before((time.monotonic() if now is None else now) - self._window)
        return self._worst[0][1] if self._worst else 0.0

    def _forget_before(self, oldest: float) -> None:
        while self._worst and self._worst[0][0] < oldest:
            self._worst.popleft()

    async def run(self) -> None:
        while True:
            due = time.monotonic() + self._interval
            await asyncio.sleep(self._interval)
            now = time.monotonic()
            self.record(now, max(0.0, now - due))
