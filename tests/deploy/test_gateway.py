"""The nginx gateway, rendered as `make up` renders it, in front of stub upstreams:
routing, admin and ops routes hidden, body size and per-IP rate limits, JSON errors, and
what it says when a service does not answer."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.common.settings import Settings
from tests.deploy.tools import require
from tests.helpers import free_port
from tools.deploy import K8S_GATEWAY, local_gateway_values, render_nginx_conf

NGINX_HOW = "install the Debian package nginx (make infra does when root)"
Gateway = Callable[..., Any]


def stub(name: str) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        seen = {"upstream": name, "path": request.path_qs}
        if "Idempotency-Key" in request.headers:
            seen["idempotency_key"] = request.headers["Idempotency-Key"]
        # A service's own 503 (outcome_unknown with where to check) must reach the client.
        if request.path.endswith("/unanswered"):
            body = {"error": "outcome_unknown", "message": "m", "check": "/api/x", "id": "1"}
            return web.json_response(body, status=503)
        return web.json_response(seen)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    """start(**settings overrides) -> base URL of a gateway in front of stub services;
    status_port: serve stub_status there, as the Kubernetes gateway does for its exporter."""
    nginx = require("nginx", NGINX_HOW)
    seckill, order = TestServer(stub("seckill")), TestServer(stub("order"))
    groupbuy = TestServer(stub("groupbuy"))
    notify = TestServer(stub("notify"))
    await seckill.start_server()
    await order.start_server()
    await groupbuy.start_server()
    await notify.start_server()
    procs: list[asyncio.subprocess.Process] = []

    async def start(status_port: int | None = None, **overrides: Any) -> str:
        ports = {
            "seckill_port": seckill.port,
            "order_port": order.port,
            "groupbuy_port": groupbuy.port,
            "notify_port": notify.port,
        }
        s = dataclasses.replace(Settings(), gateway_port=free_port(), **{**ports, **overrides})
        run = tmp_path / f"gw{len(procs)}"
        (run / "tmp").mkdir(parents=True)
        conf = run / "nginx.conf"
        values = local_gateway_values(s, run)
        if status_port is not None:
            values = dataclasses.replace(values, status_listen=f"127.0.0.1:{status_port}")
        conf.write_text(render_nginx_conf(values))
        log = run / "error.log"
        argv = ["-c", str(conf), "-e", str(log), "-g", "daemon off;"]
        quiet = asyncio.subprocess.DEVNULL
        procs.append(await asyncio.create_subprocess_exec(nginx, *argv, stdout=quiet, stderr=quiet))
        url = f"http://127.0.0.1:{s.gateway_port}"
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", s.gateway_port)
                writer.close()
                return url
            except OSError:
                assert procs[-1].returncode is None, log.read_text() if log.exists() else ""
                await asyncio.sleep(0.05)
        raise AssertionError("nginx did not start")

    yield start
    for proc in procs:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
    await seckill.close()
    await order.close()
    await groupbuy.close()
    await notify.close()


async def get(url: str, method: str = "GET", **kw: Any) -> tuple[int, dict[str, Any], Any]:
    async with aiohttp.ClientSession() as http, http.request(method, url, **kw) as resp:
        body = await resp.json(content_type=None)
        return resp.status, dict(resp.headers), body


async def test_api_routes_reach_their_service(gateway: Gateway) -> None:
    base = await gateway()
    routes = {
        "/api/seckill/activities": "seckill",
        "/api/seckill/activities/7/reservations": "seckill",
        "/api/orders": "order",
        "/api/orders/abc?x=1": "order",
        "/api/payments/callback": "order",
        "/api/groupbuy/campaigns/3": "groupbuy",
        "/api/groupbuy/groups/3-abc/join": "groupbuy",
        "/api/notify/messages": "notify",
        "/api/notify/subscriptions": "notify",
    }
    for path, upstream in routes.items():
        status, _, body = await get(
            base + path, "POST" if "reserv" in path or "join" in path else "GET"
        )
        assert (status, body) == (200, {"upstream": upstream, "path": path})


async def test_admin_ops_and_unknown_routes_are_not_exposed(gateway: Gateway) -> None:
    base = await gateway()
    hidden = [
        "/api/seckill/admin/activities",
        "/api/groupbuy/admin/campaigns",
        "/metrics",
        "/healthz",
        "/readyz",
        "/",
        "/api/other",
    ]
    for path in hidden:
        status, headers, body = await get(base + path, "POST" if "admin" in path else "GET")
        assert status == 404, path
        assert headers["Content-Type"] == "application/json"
        assert body == {"error": "not_found", "message": "no such route"}


async def test_a_body_over_the_limit_is_refused_with_413(gateway: Gateway) -> None:
    base = await gateway(gateway_max_body_bytes=1024)
    url = base + "/api/seckill/activities/1/reservations"
    status, _, body = await get(url, "POST", data=b"x" * 2048)
    assert status == 413 and body["error"] == "payload_too_large"
    status, _, _ = await get(url, "POST", data=b"x" * 512)
    assert status == 200


async def test_a_client_over_the_per_ip_rate_is_answered_429(gateway: Gateway) -> None:
    base = await gateway(
        gateway_rate_limit_per_second=1, gateway_rate_limit_burst=2, gateway_rate_limit_exempt=""
    )
    results = [await get(base + "/api/seckill/activities") for _ in range(10)]
    statuses = [s for s, _, _ in results]
    assert statuses.count(200) <= 4 and statuses.count(429) >= 6
    _, headers, body = next(r for r in results if r[0] == 429)
    assert headers["Retry-After"] == "1"
    assert body["error"] == "rate_limited"


async def test_loopback_is_exempt_by_default_so_a_local_load_test_is_not_throttled(
    gateway: Gateway,
) -> None:
    base = await gateway(gateway_rate_limit_per_second=1, gateway_rate_limit_burst=1)
    statuses = [(await get(base + "/api/orders"))[0] for _ in range(30)]
    assert statuses == [200] * 30


async def test_a_service_that_is_down_answers_503_json(gateway: Gateway) -> None:
    base = await gateway(order_port=free_port())
    for method in ("GET", "POST"):
        status, headers, body = await get(base + "/api/orders", method)
        assert status == 503 and body["error"] == "unavailable"
        assert "not applied" in body["message"]
        assert headers["Retry-After"] == "1"


@contextlib.asynccontextmanager
async def hanging_up_service() -> AsyncIterator[int]:
    """A service that reads the request and drops the connection without an answer: the
    request reached it, and may have been applied."""
    received: list[bytes] = []

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(65536))
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
    assert received and all(b"POST /api/seckill/" in r for r in received)


async def test_a_request_the_service_never_answered_is_outcome_unknown_not_retry_shortly(
    gateway: Gateway,
) -> None:
    async with hanging_up_service() as port:
        base = await gateway(seckill_port=port)
        status, headers, body = await get(
            base + "/api/seckill/activities/7/reservations",
            "POST",
            json={},
            headers={"Idempotency-Key": "k-1"},
        )
    assert status == 503 and headers["Content-Type"] == "application/json"
    assert body["error"] == "outcome_unknown"
    assert "may have been applied" in body["message"]
    assert "same Idempotency-Key" in body["message"]
    assert "retry shortly" not in body["message"]
    assert headers["Retry-After"] == "1"


async def test_stub_status_answers_on_its_own_listener_and_never_on_the_public_one(
    gateway: Gateway,
) -> None:
    status_port = free_port()
    base = await gateway(status_port=status_port)
    await get(base + "/api/orders")
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{status_port}/stub_status") as resp,
    ):
        text = await resp.text()
    assert resp.status == 200
    assert text.startswith("Active connections: ")
    assert "server accepts handled requests" in text
    status, _, body = await get(base + "/stub_status")
    assert (status, body) == (404, {"error": "not_found", "message": "no such route"})


def test_the_kubernetes_gateway_serves_stub_status_on_the_pod_loopback_only() -> None:
    assert K8S_GATEWAY.status_listen.startswith("127.0.0.1:")
    conf = render_nginx_conf(K8S_GATEWAY)
    assert f"listen {K8S_GATEWAY.status_listen};" in conf
    assert conf.count("stub_status;") == 1
    assert "stub_status;" not in render_nginx_conf(local_gateway_values(Settings(), Path("/x")))


async def test_the_idempotency_key_reaches_the_services(gateway: Gateway) -> None:
    base = await gateway()
    key = "0f8fad5b-d9cb-469f-a165-70867728950e:{x}~!"
    for path in (
        "/api/seckill/activities/7/reservations",
        "/api/groupbuy/campaigns/3/groups",
        "/api/groupbuy/groups/3-abc/join",
        "/api/orders/abc/cancel",
    ):
        status, _, body = await get(base + path, "POST", headers={"Idempotency-Key": key})
        assert (status, body["path"], body["idempotency_key"]) == (200, path, key)


async def test_a_services_own_outcome_unknown_passes_through_unchanged(gateway: Gateway) -> None:
    base = await gateway()
    status, _, body = await get(base + "/api/seckill/activities/7/unanswered", "POST")
    assert status == 503
    assert body == {"error": "outcome_unknown", "message": "m", "check": "/api/x", "id": "1"}
