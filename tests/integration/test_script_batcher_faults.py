"""The script batcher tells each caller what it knows of its own command when a round trip
fails part-way: a reply already read is delivered, a command Redis refused (LOADING) is
reported as not run, and only the commands whose replies were not read are unknown.

Runs on a redis-server of its own (tests/redis_server.py): one test blocks it with a slow
script, the other restarts it."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from services.common.redis_batch import ScriptBatcher
from services.common.redis_faults import did_not_run
from tests.redis_server import RedisServer

SLOW_SECONDS = 1.0
# Busy for SLOW_SECONDS inside Redis: a script whose reply cannot come within the deadline.
SLOW = """
local start = redis.call('TIME')
while true do
  local now = redis.call('TIME')
  if (now[1] - start[1]) * 1000000 + (now[2] - start[2]) > tonumber(ARGV[1]) then
    return 'slow'
  end
end
"""
FAST = "return redis.call('INCR', KEYS[1])"


async def one_round_trip(batcher: ScriptBatcher, *calls: Any) -> list[Any]:
    """Queue every call before the batcher starts, so they share one round trip."""
    tasks = [asyncio.create_task(call) for call in calls]
    await asyncio.sleep(0)  # each call is queued
    batcher.start()
    try:
        return await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await batcher.stop()


async def test_a_reply_already_read_is_delivered_when_reloading_a_lost_script_times_out(
    own_redis: Redis, redis_server: RedisServer
) -> None:
    fast = own_redis.register_script(FAST)
    slow = own_redis.register_script(SLOW)
    await own_redis.script_load(FAST)  # cached; the slow one is not: NOSCRIPT, then retried
    batcher = ScriptBatcher(own_redis, max_batch=8, timeout_seconds=0.3, workers=1)
    counted, late = await one_round_trip(
        batcher,
        batcher.call(fast, ["ran"], []),
        batcher.call(slow, [], [int(SLOW_SECONDS * 1_000_000)]),
    )
    # The fast script ran in the first pipeline and its reply was read: the deadline,
    # hit while the slow one ran after reloading, is not its failure.
    assert counted == 1
    assert isinstance(late, TimeoutError) and not did_not_run(late)
    await redis_server.wait_ready()  # the slow script is done
    assert await own_redis.get("ran") == b"1"


async def test_after_a_loading_reply_only_the_first_command_is_reported_not_run(
    own_redis: Redis, redis_server: RedisServer
) -> None:
    first = own_redis.register_script(FAST)
    second = own_redis.register_script(FAST + " -- another script")
    assert await first(keys=["warm"]) == 1  # a pooled connection to go stale

    await redis_server.restart_loading(seconds=3.0)
    batcher = ScriptBatcher(own_redis, max_batch=8, timeout_seconds=2.0, workers=1)
    refused, unread = await one_round_trip(
        batcher, batcher.call(first, ["a"], []), batcher.call(second, ["b"], [])
    )
    assert isinstance(refused, Exception) and did_not_run(refused), refused
    # Its reply was never read: for all the batcher knows it may have run.
    assert isinstance(unread, Exception) and not did_not_run(unread), unread
    await redis_server.wait_ready()
    assert await own_redis.mget("a", "b") == [None, None]  # neither ran, as it happens
