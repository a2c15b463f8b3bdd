"""Repairs in bounded batches, each with bounded retries, backoff and a time limit.

A reconciliation run may have thousands of lost events to publish again. One error must
not throw away the rest of the run: every batch is tried a bounded number of times, and
a batch that keeps failing ends only its own sale's repairs (what was done is kept and
reported; the next run retries the rest).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from services.common.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RepairPolicy:
    batch: int
    attempts: int
    timeout_seconds: float
    backoff_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RepairPolicy:
        return cls(
            batch=max(1, settings.reconcile_republish_batch),
            attempts=max(1, settings.reconcile_repair_attempts),
            timeout_seconds=settings.reconcile_repair_timeout_seconds,
            backoff_seconds=settings.reconcile_repair_backoff_seconds,
        )


@dataclass
class RepairOutcome(Generic[T]):
    done: list[T] = field(default_factory=list)
    failed: list[T] = field(default_factory=list)
    error: str | None = None


def chunks(items: Sequence[T], limit: int, weight: Callable[[T], int]) -> list[list[T]]:
    """Consecutive chunks whose weights add up to at most `limit`; an item heavier than
    the limit is a chunk of its own (a group's events are never split)."""
    out: list[list[T]] = []
    current: list[T] = []
    load = 0
    for item in items:
        w = weight(item)
        if current and load + w > limit:
            out.append(current)
            current, load = [], 0
        current.append(item)
        load += w
    if current:
        out.append(current)
    return out


async def repair_in_batches(
    batches: Sequence[list[T]],
    action: Callable[[list[T]], Awaitable[object]],
    policy: RepairPolicy,
) -> RepairOutcome[T]:
    """Run action on each batch in turn. The action must be idempotent: a try that
    timed out may have taken effect, and it is tried again."""
    outcome: RepairOutcome[T] = RepairOutcome()
    for index, batch in enumerate(batches):
        error = await _attempt(batch, action, policy)
        if error is not None:
            outcome.failed = [item for rest in batches[index:] for item in rest]
            outcome.error = error
            break
        outcome.done.extend(batch)
    return outcome


async def _attempt(
    batch: list[T], action: Callable[[list[T]], Awaitable[object]], policy: RepairPolicy
) -> str | None:
    """None once the batch succeeded; the last error after the attempts ran out."""
    error = ""
    for attempt in range(1, policy.attempts + 1):
        try:
            async with asyncio.timeout(policy.timeout_seconds):
                await action(batch)
            return None
        except Exception as exc:  # a repair that fails is reported, never fatal to the run
            error = describe(exc, policy.timeout_seconds)
            log.warning("repair of %d items failed (try %d): %s", len(batch), attempt, error)
        if attempt < policy.attempts:
            await asyncio.sleep(policy.backoff_seconds * 2 ** (attempt - 1))
    return error


def describe(exc: BaseException, timeout_seconds: float | None = None) -> str:
    """An error in one line for the report."""
    if isinstance(exc, TimeoutError):
        within = "" if timeout_seconds is None else f" within {timeout_seconds:g} s"
        return f"no answer{within}"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")
