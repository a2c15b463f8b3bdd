"""A fake WeChat subscribe-message provider: a real local HTTP server (aiohttp) that
records what it accepted and can be told to fail, refuse or hang for given users."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.notify.channels import SEND_PATH

TOKEN = "test-access-token"


@dataclass
class FakeProvider:
    """accepted: bodies answered errcode 0, in order. Behaviour per user (touser):
    fail_times[u] = n: n answers of errcode -1 (system busy), then success;
    errcode[u] = c: always answer errcode c; hang: never answer (until released)."""

    accepted: list[dict[str, Any]] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    fail_times: dict[str, int] = field(default_factory=dict)
    errcode: dict[str, int] = field(default_factory=dict)
    hang: set[str] = field(default_factory=set)
    # After accept_limit acceptances every request is held (like a provider stalling):
    # a held request is never accepted; release() answers it with 503.
    accept_limit: int | None = None
    held: int = 0
    bad_token: int = 0
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    def accepted_by_user(self) -> Counter[str]:
        return Counter(b["touser"] for b in self.accepted)

    def duplicates(self) -> list[Any]:
        seen = Counter(orjson.dumps(b, option=orjson.OPT_SORT_KEYS) for b in self.accepted)
        return [k for k, n in seen.items() if n > 1]

    def release(self) -> None:
        self._release.set()

    async def handle(self, request: web.Request) -> web.Response:
        if request.query.get("access_token") != TOKEN:
            self.bad_token += 1
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        body = orjson.loads(await request.read())
        user = body["touser"]
        self.requests[user] += 1
        if user in self.hang or (
            self.accept_limit is not None and len(self.accepted) >= self.accept_limit
        ):
            self.held += 1
            await self._release.wait()
            return web.json_response({"errcode": -1, "errmsg": "released"}, status=503)
        if user in self.errcode:
            return web.json_response({"errcode": self.errcode[user], "errmsg": "refused"})
        if self.fail_times.get(user, 0) > 0:
            self.fail_times[user] -= 1
            return web.json_response({"errcode": -1, "errmsg": "system busy"})
        self.accepted.append(body)
        return web.json_response({"errcode": 0, "errmsg": "ok"})


@contextlib.asynccontextmanager
async def fake_provider() -> AsyncIterator[FakeProvider]:
    provider = FakeProvider()
    app = web.Application()
    app.router.add_post(SEND_PATH, provider.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    provider.url = f"http://127.0.0.1:{server.port}"
    try:
        yield provider
    finally:
        provider.release()
        await asyncio.sleep(0.05)
        await server.close()


def notify_settings(settings: Any, provider: FakeProvider, **overrides: Any) -> Any:
    """Settings for a notify service sending to the fake provider, with short timeouts
    and backoff so that retries happen within a test."""
    import dataclasses

    values: dict[str, Any] = {
        "notify_channel": "http",
        "notify_provider_url": provider.url,
        "notify_access_token": TOKEN,
        "notify_send_timeout_seconds": 2.0,
        "notify_sending_lease_seconds": 4.0,
        "notify_backoff_base_seconds": 0.05,
        "notify_backoff_max_seconds": 0.2,
        "notify_dispatch_poll_seconds": 0.1,
        "notify_max_attempts": 4,
        "notify_rate_limit_per_hour": 100,
        "notify_reminder_interval_seconds": 0.2,
        "metrics_refresh_seconds": 0.5,
    }
    values.update(overrides)
    return dataclasses.replace(settings, **values)


def order_paid(order_no: int, user: str, activity_id: int = 1) -> Any:
    """An order.paid envelope as the order service publishes it (same id per order)."""
    from services.common.events import ORDER_PAID, Envelope, event_id_for

    order_id = f"00000000-0000-4000-8000-{order_no:012d}"
    return Envelope(
        id=event_id_for(ORDER_PAID, order_id),
        type=ORDER_PAID,
        key=order_id,
        data={
            "order_id": order_id,
            "reservation_id": f"a{activity_id}-r{order_no}",
            "activity_id": activity_id,
            "user_id": user,
            "sku": "tea-set",
            "quantity": 1,
            "amount_cents": 9900,
            "transaction_id": f"tx{order_no}",
            "paid_at": "2026-11-23T10:00:00Z",
        },
    )
