"""What a failed Redis call means for the caller: did the command run, or may it have?

A state-changing script whose reply is missing may have run: the command was sent and
only the answer was lost (a timeout after sending, a connection broken mid-call). The
caller must look before trying again: 503 `outcome_unknown`. A command that was never
sent (Redis refused the connection, the pool could not connect or had no free connection
in time) or that Redis refused while loading its dataset after a restart (LOADING) did not
run: nothing changed and a retry is safe: 503 `redis_unavailable` with Retry-After.

This module is the one place that tells the two apart; the routes and the HTTP error
middleware ask it.
"""

from __future__ import annotations

from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.connection import AbstractConnection

from services.common.errors import DomainError, OutcomeUnknown, RedisUnavailable

# Failures of Redis itself, as redis-py raises them (BusyLoadingError is one): what the
# error middleware answers 503 for, on any route.
REDIS_DOWN: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
)


class RedisNotReached(redis_errors.ConnectionError):
    """No connection could be handed out (connect refused or timed out, handshake failed,
    pool exhausted until its timeout): the command that needed it was never sent."""


class NotSentReportingPool(BlockingConnectionPool):
    """A BlockingConnectionPool whose failures to hand out a connection say so
    (RedisNotReached), so that they are not mistaken for a command lost in flight."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        try:
            # redis-py leaves get_connection untyped.
            connection: AbstractConnection = await super().get_connection(  # type: ignore[no-untyped-call]
                *args, **kwargs
            )
            return connection
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            # Everything get_connection does (wait for a free connection, connect,
            # handshake, replace a connection the server closed) happens before any byte
            # of the caller's command is written.
            raise RedisNotReached(f"Redis not reached: {exc}") from exc


def did_not_run(exc: BaseException) -> bool:
    """True when a failed call certainly did not run its command: it was never sent, or
    Redis answered LOADING (it runs nothing until its dataset is loaded)."""
    return isinstance(exc, RedisNotReached | redis_errors.BusyLoadingError)


def unavailable(exc: BaseException) -> RedisUnavailable:
    """The answer of a route that failed because of Redis (any route: the middleware)."""
    if isinstance(exc, redis_errors.BusyLoadingError):
        return RedisUnavailable("Redis is loading its data after a restart; retry shortly")
    if isinstance(exc, RedisNotReached):
        return RedisUnavailable("Redis is unreachable; retry shortly")
    return RedisUnavailable("Redis did not answer; retry shortly")


def unanswered_change(exc: BaseException, check: str, **ids: Any) -> DomainError:
    """The answer to one state-changing script call that got no reply: 503
    redis_unavailable when the script did not run (nothing changed, retry), else 503
    outcome_unknown pointing at `check`, where the caller learns whether it ran."""
    if did_not_run(exc):
        return RedisUnavailable(
            "not done, nothing changed: Redis is unreachable or loading its data; retry shortly"
        )
    return OutcomeUnknown(check, **ids)
