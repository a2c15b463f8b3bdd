"""HTTP adapter for the WeChat server API identity calls: code2Session and stable_token.

Both calls are bounded by wechat_timeout_seconds. A timeout, a broken connection, a 5xx or
an answer that is not JSON is ProviderUnavailable (503 with Retry-After to the caller); what
an answer means is domain.py's business. The raw answer of code2Session carries the
session_key: it is never logged.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
from prometheus_client import Histogram

from services.common.settings import Settings
from services.identity.domain import ProviderUnavailable

CODE2SESSION_PATH = "/sns/jscode2session"
STABLE_TOKEN_PATH = "/cgi-bin/stable_token"


class WeChatApi:
    def __init__(self, settings: Settings, latency: Histogram, max_connections: int = 100) -> None:
        self._base = settings.wechat_api_url.rstrip("/")
        self._appid = settings.wechat_appid
        self._secret = settings.wechat_secret
        self._timeout = settings.wechat_timeout_seconds
        self._latency = latency
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections),
            timeout=aiohttp.ClientTimeout(total=self._timeout),
        )

    async def code2session(self, code: str) -> Any:
        params = {
            "appid": self._appid,
            "secret": self._secret,
            "js_code": code,
            "grant_type": "authorization_code",
        }
        return await self._call("code2session", "GET", CODE2SESSION_PATH, params=params)

    async def stable_token(self, force_refresh: bool) -> Any:
        body = {
            "grant_type": "client_credential",
            "appid": self._appid,
            "secret": self._secret,
            "force_refresh": force_refresh,
        }
        return await self._call("stable_token", "POST", STABLE_TOKEN_PATH, json_body=body)

    async def _call(
        self,
        call: str,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> Any:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                async with self._session.request(
                    method,
                    self._base + path,
                    params=params,
                    data=orjson.dumps(json_body) if json_body is not None else None,
                    headers={"Content-Type": "application/json"} if json_body else None,
                ) as resp:
                    if resp.status >= 500:
                        raise ProviderUnavailable(f"HTTP {resp.status}")
                    raw = await resp.read()
        except TimeoutError:
            raise ProviderUnavailable(f"no answer within {self._timeout} s") from None
        except aiohttp.ClientError as exc:
            raise ProviderUnavailable(type(exc).__name__) from None
        finally:
            self._latency.labels(call).observe(time.perf_counter() - started)
        try:
            # code2Session labels its JSON text/plain: parse the bytes, whatever the type.
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ProviderUnavailable("an answer that is not JSON") from None

    async def close(self) -> None:
        await self._session.close()
