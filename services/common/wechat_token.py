"""The WeChat platform access_token, shared in Redis: identity keeps it, notify reads it.

The WeChat server APIs (subscribe messages included) take an access_token that lives
about two hours and that one component must fetch for the whole platform: each fetch of
the old `token` endpoint invalidates the previous token. The identity service fetches it
under a Redis lock (services/identity/access_token.py) and stores it here; readers never
fetch. A reader whose call was refused for the token (errcode 40001 or 42001) reports that
token invalid; the keeper then fetches a new one at once.

Keys carry the hash tag {appid}, so the token, its lock and its invalid mark share a slot.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

# The errcodes by which the WeChat API says the access_token is invalid or expired.
TOKEN_REFUSED_ERRCODES = frozenset({40001, 40014, 42001})
# How long an "invalid" report is kept: longer than the keeper's check interval.
INVALID_MARK_SECONDS = 300


@dataclass(frozen=True, slots=True)
class TokenKeys:
    token: str
    lock: str
    invalid: str


def token_keys(appid: str) -> TokenKeys:
    tag = "{wx:" + appid + "}"
    return TokenKeys(
        token=f"{tag}:access_token", lock=f"{tag}:access_token:lock", invalid=f"{tag}:invalid"
    )


@dataclass(frozen=True, slots=True)
class AccessToken:
    value: str
    expires_at: float  # epoch seconds

    def seconds_left(self, now: float | None = None) -> float:
        return self.expires_at - (time.time() if now is None else now)

    def encode(self) -> bytes:
        return orjson.dumps({"token": self.value, "expires_at": self.expires_at})

    @classmethod
    def decode(cls, raw: bytes | str | None) -> AccessToken | None:
        if raw is None:
            return None
        try:
            body: Any = orjson.loads(raw)
            token, expires_at = body["token"], float(body["expires_at"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None  # unreadable: as if absent, the keeper writes a new one
        if not isinstance(token, str) or not token:
            return None
        return cls(token, expires_at)


async def read_token(redis: Redis, appid: str) -> AccessToken | None:
    """The current token, or None (not fetched yet, or expired)."""
    current = AccessToken.decode(await redis.get(token_keys(appid).token))
    if current is None or current.seconds_left() <= 0:
        return None
    return current


async def report_invalid(redis: Redis, appid: str, token: str) -> None:
    """Tell the keeper the API refused `token`: it fetches a new one at its next check."""
    await redis.set(token_keys(appid).invalid, token, ex=INVALID_MARK_SECONDS)


async def reported_invalid(redis: Redis, appid: str) -> str | None:
    raw = await redis.get(token_keys(appid).invalid)
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class SharedAccessToken:
    """What notify sends with: the token identity keeps in Redis."""

    def __init__(self, redis: Redis, appid: str, poll_seconds: float = 0.2) -> None:
        self._redis = redis
        self._appid = appid
        self._poll = poll_seconds

    async def current(self) -> str | None:
        token = await read_token(self._redis, self._appid)
        return token.value if token else None

    async def renewed(self, refused: str, wait_seconds: float) -> str | None:
        """Report `refused` invalid and wait up to wait_seconds for a different token (the
        keeper fetching a new one); None if none came."""
        await report_invalid(self._redis, self._appid, refused)
        deadline = time.monotonic() + wait_seconds
        while True:
            token = await self.current()
            if token is not None and token != refused:
                return token
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(self._poll)
