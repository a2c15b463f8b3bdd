"""Merchant password hashes (argon2id, argon2-cffi), computed off the event loop.

One hash or verification costs about 0.1 s of CPU and 64 MiB of memory (RFC 9106's
second recommended profile: t=3, m=64 MiB, p=4, argon2-cffi's defaults). Run on the
event loop, a burst of password guesses would stall every other request of the process;
so each runs in a worker thread (argon2 releases the GIL), and at most `concurrency` run
at once: the rest wait their turn, and after WAIT_SECONDS are refused (503 with
Retry-After) rather than piling up without bound.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.common.errors import DomainError

log = logging.getLogger(__name__)

T = TypeVar("T")
WAIT_SECONDS = 5.0
BUSY_RETRY_SECONDS = 1


class PasswordsBusy(DomainError):
    def __init__(self) -> None:
        super().__init__(
            503,
            "login_busy",
            "too many logins are being checked at once: retry shortly",
            {"Retry-After": str(BUSY_RETRY_SECONDS)},
        )


@dataclass(frozen=True, slots=True)
class Verified:
    ok: bool
    # A new hash of the same password when the stored one was made with other parameters
    # (argon2's check_needs_rehash): the caller stores it, so parameters can be raised
    # without asking anybody to change a password.
    rehashed: str | None = None


class Passwords:
    def __init__(self, concurrency: int, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._slots = asyncio.Semaphore(max(1, concurrency))
        # Unknown names are verified against this, so they take as long as a wrong
        # password of a real account: the time of the answer tells nothing.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    @property
    def parameters(self) -> str:
        h = self._hasher
        kind = f"argon2{h.type.name.lower()}"
        return f"{kind} t={h.time_cost} m={h.memory_cost} KiB p={h.parallelism}"

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> Verified:
        """Whether password matches the stored hash; None (no such account) is checked
        against a dummy hash and never matches."""
        return await self._run(self._verify, stored, password)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                await self._slots.acquire()
        except TimeoutError:
            raise PasswordsBusy() from None
        try:
            work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        except BaseException:
            self._slots.release()
            raise
        # The slot is given back when the thread is done, not when the caller stops
        # waiting: a cancelled request must not let more hashes run than the bound.
        work.add_done_callback(lambda _: self._slots.release())
        return await asyncio.shield(work)

    def _verify(self, stored: str | None, password: str) -> Verified:
        try:
            self._hasher.verify(self._dummy if stored is None else stored, password)
        except VerificationError:
            return Verified(False)
        except InvalidHashError:
            log.error("a stored merchant password hash is not an argon2 hash")
            return Verified(False)
        if stored is None:
            return Verified(False)
        if self._hasher.check_needs_rehash(stored):
            return Verified(True, self._hasher.hash(password))
        return Verified(True)
