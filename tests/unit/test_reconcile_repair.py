"""Repairs in bounded batches with bounded retries: a failing batch costs its own tries and
ends its sale's repairs; everything before it stays done. Without I/O."""

from __future__ import annotations

import asyncio

from services.reconcile.repair import RepairPolicy, chunks, repair_in_batches

FAST = RepairPolicy(batch=2, attempts=3, timeout_seconds=0.2, backoff_seconds=0.001)


def test_chunks_hold_at_most_the_limit_and_never_split_an_item() -> None:
    assert chunks([1, 2, 3, 4, 5], 2, lambda _: 1) == [[1, 2], [3, 4], [5]]
    groups = [["a"] * 3, ["b"] * 1, ["c"] * 5, ["d"] * 1]
    assert chunks(groups, 4, len) == [[groups[0], groups[1]], [groups[2]], [groups[3]]]


async def test_a_batch_that_fails_once_is_retried_and_counts_as_done() -> None:
    calls: list[list[int]] = []

    async def flaky(batch: list[int]) -> None:
        calls.append(batch)
        if len(calls) == 1:
            raise ConnectionError("broker went away")

    outcome = await repair_in_batches(chunks([1, 2, 3], 2, lambda _: 1), flaky, FAST)
    assert (outcome.done, outcome.failed, outcome.error) == ([1, 2, 3], [], None)
    assert calls == [[1, 2], [1, 2], [3]]


async def test_a_batch_that_keeps_failing_stops_the_rest_and_says_why() -> None:
    calls: list[list[int]] = []

    async def refuses_second(batch: list[int]) -> None:
        calls.append(batch)
        if batch == [3, 4]:
            raise RuntimeError("topic does not exist")

    batches = chunks([1, 2, 3, 4, 5], 2, lambda _: 1)
    outcome = await repair_in_batches(batches, refuses_second, FAST)
    assert outcome.done == [1, 2]
    assert outcome.failed == [3, 4, 5]
    assert outcome.error == "RuntimeError: topic does not exist"
    assert calls == [[1, 2], [3, 4], [3, 4], [3, 4]]  # three tries, then on to report


async def test_a_batch_that_hangs_is_given_up_after_its_time_limit() -> None:
    async def hangs(batch: list[int]) -> None:
        await asyncio.sleep(60)

    loop = asyncio.get_running_loop()
    started = loop.time()
    outcome = await repair_in_batches([[1]], hangs, FAST)
    assert outcome.failed == [1] and outcome.error == "no answer within 0.2 s"
    assert loop.time() - started < 2
