"""Channels: where a rendered message goes. One interface, two implementations:

- HttpChannel: the WeChat subscribe-message send API shape
  (POST {base}/cgi-bin/message/subscribe/send?access_token=TOKEN, JSON body
  {"touser", "template_id", "page", "data", "miniprogram_state"}, answer
  {"errcode": 0, "errmsg": "ok"}), errcodes classified in domain.classify_errcode.
- LogChannel: writes the message to the log and succeeds (local runs, the default).

`touser` is the user id (the JWT `sub`); a real deployment maps it to the user's openid.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson

from services.common.settings import Settings
from services.notify.domain import SendOutcome, classify_errcode, classify_http_status

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


class Channel(Protocol):
    name: str

    async def send(self, message: OutgoingMessage) -> SendResult: ...

    async def close(self) -> None: ...


class LogChannel:
    name = "log"

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
    (the provider may or may not have delivered: see docs/operations.md)."""

    name = "http"

    def __init__(
        self,
        base_url: str,
        access_token: str,
        timeout_seconds: float,
        miniprogram_state: str = "formal",
        max_connections: int = 100,
    ) -> None:
        self._url = base_url.rstrip("/") + SEND_PATH
        self._token = access_token
        self._timeout = timeout_seconds
        self._state = miniprogram_state
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections),
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        )

    async def send(self, message: OutgoingMessage) -> SendResult:
        body = {
            "touser": message.touser,
            "template_id": message.template_id,
            "page": message.page,
            "data": message.data,
            "miniprogram_state": self._state,
        }
        try:
            async with asyncio.timeout(self._timeout):
                async with self._session.post(
                    self._url,
                    params={"access_token": self._token},
                    data=orjson.dumps(body),
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
    return SendResult(classify_errcode(errcode), f"errcode {errcode}: {errmsg}")


def make_channel(settings: Settings) -> Channel:
    if settings.notify_channel == "http":
        return HttpChannel(
            settings.notify_provider_url,
            settings.notify_access_token,
            settings.notify_send_timeout_seconds,
            settings.notify_miniprogram_state,
            max_connections=max(settings.notify_dispatch_concurrency, 1),
        )
    if settings.notify_channel == "log":
        return LogChannel()
    raise ValueError(f"NOTIFY_CHANNEL must be 'log' or 'http', not {settings.notify_channel!r}")
