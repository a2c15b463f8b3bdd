"""Channels: where a rendered message goes. One interface, two implementations:

- HttpChannel: the WeChat subscribe-message send API shape
  (POST {base}/cgi-bin/message/subscribe/send?access_token=TOKEN, JSON body
  {"touser", "template_id", "page", "data", "miniprogram_state"}, answer
  {"errcode": 0, "errmsg": "ok"}), errcodes classified in domain.classify_errcode.
- LogChannel: writes the message to the log and succeeds (local runs, the default).

`touser` is the user's openid for the mini-program (notify.recipients, from identity's
user.registered events); the dispatcher never hands the http channel our user id. The log
channel names the openid when it is known, else the user id.

The access_token: a fixed one (NOTIFY_ACCESS_TOKEN: a non-WeChat provider, or a manual
override), or the platform token identity keeps in Redis (services/common/wechat_token.py).
A send refused for the token (errcode 40001, 40014, 42001) asks for a new one ONCE, waits
up to NOTIFY_TOKEN_WAIT_SECONDS for it and sends again; without a new token, or refused
again, the send is retryable like any transient failure. Notify never fetches a token
itself: a second fetcher would invalidate identity's.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.common.settings import Settings
from services.common.wechat_token import TOKEN_REFUSED_ERRCODES, SharedAccessToken
from services.notify.domain import SendOutcome, classify_errcode, classify_http_status
from services.notify.metrics import NotifyMetrics

log = logging.getLogger(__name__)

SEND_PATH = "/cgi-bin/message/subscribe/send"


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    touser: str
    template_id: str
    page: str
    data: dict[str, dict[str, str]]


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: SendOutcome
    detail: str = "ok"
    errcode: int | None = None  # the provider's, when it answered one


class Channel(Protocol):
    name: str

    @property
    def longest_send_seconds(self) -> float:
        """The longest one send() may take, token re-ask included (the send lease must be
        longer)."""
        ...

    async def send(self, message: OutgoingMessage) -> SendResult: ...

    async def close(self) -> None: ...


class TokenSource(Protocol):
    async def current(self) -> str | None: ...

    async def renewed(self, refused: str, wait_seconds: float) -> str | None: ...


class StaticToken:
    """NOTIFY_ACCESS_TOKEN: always the same token, never renewed."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def current(self) -> str | None:
        return self._token

    async def renewed(self, refused: str, wait_seconds: float) -> str | None:
        return None


class LogChannel:
    name = "log"
    longest_send_seconds = 1.0

    async def send(self, message: OutgoingMessage) -> SendResult:
        log.info(
            "notify %s to %s",
            message.template_id,
            message.touser,
            extra={"page": message.page, "data": message.data},
        )
        return SendResult(SendOutcome.SENT)

    async def close(self) -> None:
        return None


class HttpChannel:
    """A WeChat-shaped subscribe-message provider over HTTP. Every call is bounded by the
    send timeout; a timeout, a connection error, a 5xx or a non-JSON answer is retryable
    (the provider may or may not have delivered: see docs/operations.md).

    token_wait_seconds: how long a send refused for its token waits for a new one (None:
    the token cannot be renewed, as a fixed one; the refusal is then just retryable)."""

    name = "http"

    def __init__(
        self,
        base_url: str,
        tokens: TokenSource,
        timeout_seconds: float,
        miniprogram_state: str = "formal",
        max_connections: int = 100,
        token_wait_seconds: float | None = None,
        metrics: NotifyMetrics | None = None,
    ) -> None:
        self._url = base_url.rstrip("/") + SEND_PATH
        self._tokens = tokens
        self._token_wait = token_wait_seconds
        self._metrics = metrics
        self._timeout = timeout_seconds
        self._state = miniprogram_state
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections),
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        )

    @property
    def longest_send_seconds(self) -> float:
        if self._token_wait is None:
            return self._timeout
        # A refused send, the wait for a new token, the send again.
        return 2 * self._timeout + self._token_wait

    async def send(self, message: OutgoingMessage) -> SendResult:
        body = orjson.dumps(
            {
                "touser": message.touser,
                "template_id": message.template_id,
                "page": message.page,
                "data": message.data,
                "miniprogram_state": self._state,
            }
        )
        try:
            token = await self._tokens.current()
        except (RedisError, OSError) as exc:
            return SendResult(SendOutcome.RETRYABLE, f"access_token unreadable: {exc!r}"[:300])
        if token is None:
            # Identity has not stored one yet (or it expired unrenewed): nothing was sent.
            return SendResult(SendOutcome.RETRYABLE, "no access_token yet")
        result = await self._post(body, token)
        if result.errcode not in TOKEN_REFUSED_ERRCODES or self._token_wait is None:
            return result
        fresh = await self._renewed(token, self._token_wait)
        if fresh is None:
            return SendResult(
                SendOutcome.RETRYABLE,
                f"{result.detail}; no new access_token within {self._token_wait} s",
                result.errcode,
            )
        again = await self._post(body, fresh)
        if again.errcode in TOKEN_REFUSED_ERRCODES:
            # Retryable, never dead at once: the keeper may need longer than one wait.
            return SendResult(
                SendOutcome.RETRYABLE,
                f"new access_token refused too: {again.detail}",
                again.errcode,
            )
        return again

    async def _renewed(self, refused: str, wait_seconds: float) -> str | None:
        """A token other than `refused`: the current one if another send already got it
        renewed, else the keeper's answer to our report (asked once per refused send)."""
        try:
            current = await self._tokens.current()
            if current is not None and current != refused:
                return current
            fresh = await self._tokens.renewed(refused, wait_seconds)
        except (RedisError, OSError) as exc:
            log.warning("asking for a new access_token failed: %r", exc)
            return None
        if self._metrics is not None:
            self._metrics.token_reasks.labels("renewed" if fresh else "no_new_token").inc()
        return fresh

    async def _post(self, body: bytes, token: str) -> SendResult:
        try:
            async with asyncio.timeout(self._timeout):
                async with self._session.post(
                    self._url,
                    params={"access_token": token},
                    data=body,
                    headers={"Content-Type": "application/json"},
                ) as resp:
                    by_status = classify_http_status(resp.status)
                    if by_status is not None:
                        return SendResult(by_status, f"HTTP {resp.status}")
                    raw = await resp.read()
        except TimeoutError:
            return SendResult(SendOutcome.RETRYABLE, f"timeout after {self._timeout} s")
        except aiohttp.ClientError as exc:
            return SendResult(SendOutcome.RETRYABLE, f"{type(exc).__name__}: {exc}"[:300])
        return _from_answer(raw)

    async def close(self) -> None:
        await self._session.close()


def _from_answer(raw: bytes) -> SendResult:
    try:
        answer: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return SendResult(SendOutcome.RETRYABLE, "answer is not JSON")
    errcode = answer.get("errcode", 0) if isinstance(answer, dict) else None
    if isinstance(errcode, bool) or not isinstance(errcode, int):
        return SendResult(SendOutcome.RETRYABLE, f"answer without an errcode: {raw[:200]!r}")
    errmsg = str(answer.get("errmsg", ""))[:200]
    return SendResult(classify_errcode(errcode), f"errcode {errcode}: {errmsg}", errcode)


def make_channel(
    settings: Settings, redis: Redis | None = None, metrics: NotifyMetrics | None = None
) -> Channel:
    """The channel of NOTIFY_CHANNEL. The http channel sends with NOTIFY_ACCESS_TOKEN if
    set, else with the token identity shares in Redis (`redis` is then required)."""
    if settings.notify_channel == "http":
        tokens: TokenSource
        token_wait: float | None
        if settings.notify_access_token:
            tokens, token_wait = StaticToken(settings.notify_access_token), None
        else:
            if redis is None:
                raise ValueError("the http channel without NOTIFY_ACCESS_TOKEN needs Redis")
            tokens = SharedAccessToken(redis, settings.wechat_appid)
            token_wait = settings.notify_token_wait_seconds
        return HttpChannel(
            settings.notify_provider_url,
            tokens,
            settings.notify_send_timeout_seconds,
            settings.notify_miniprogram_state,
            max_connections=max(settings.notify_dispatch_concurrency, 1),
            token_wait_seconds=token_wait,
            metrics=metrics,
        )
    if settings.notify_channel == "log":
        return LogChannel()
    raise ValueError(f"NOTIFY_CHANNEL must be 'log' or 'http', not {settings.notify_channel!r}")
