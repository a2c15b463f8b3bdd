"""The nginx gateway, rendered as `make up` renders it, in front of stub upstreams:
routing, admin and ops routes hidden on the public server and served on the admin one,
body size, per-IP and login rate limits, the client address passed on, JSON errors, and
what it says when a service does not answer."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from services.common.settings import Settings
from tests.gateway_process import Urls, running_gateway
from tests.helpers import free_port, parse_answer, raw_exchange
from tools.deploy import K8S_GATEWAY, local_gateway_values, render_nginx_conf
from tools.openapi import admin_document, public_document

NOT_FOUND = {"error": "not_found", "message": "no such route"}
UPSTREAMS = ("seckill", "order", "groupbuy", "notify", "identity", "console", "coupon")
# A live stream's stub sends an event, then pauses longer than the gateway's default
# proxy_read_timeout (10 s) before the next: only the live locations' own timeout keeps
# the stream open that long.
FIRST_EVENT = b"retry: 1000\n\nevent: figures\ndata: {}\n\n"
STREAM_PAUSE_SECONDS = 12.0


Gateway = Callable[..., Any]


def stub(name: str) -> web.Application:
    async def echo(request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/live"):
            # An event, then a pause, then another; no X-Accel-Buffering header: what is
            # tested is the gateway's own configuration.
            stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await stream.prepare(request)
            await stream.write(FIRST_EVENT)
            await asyncio.sleep(STREAM_PAUSE_SECONDS)
            await stream.write(b"event: figures\ndata: {}\n\n")
            return stream
        if request.path.endswith("/whoami"):
            return web.json_response({"x_real_ip": request.headers.get("X-Real-IP")})
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
    """start(**settings overrides) -> Urls of a gateway in front of stub services;
    status_port: serve stub_status there, as the Kubernetes gateway does for its exporter."""
    stubs = {name: TestServer(stub(name)) for name in UPSTREAMS}
    for server in stubs.values():
        await server.start_server()
    async with contextlib.AsyncExitStack() as running:

        async def start(status_port: int | None = None, **overrides: Any) -> Urls:
            ports = {f"{name}_port": server.port for name, server in stubs.items()}
            s = dataclasses.replace(
                Settings(),
                gateway_port=free_port(),
                admin_gateway_port=free_port(),
                **{**ports, **overrides},
            )
            status = f"127.0.0.1:{status_port}" if status_port is not None else None
            run = tmp_path / f"gw{free_port()}"
            return await running.enter_async_context(running_gateway(s, run, status))

        yield start
    for server in stubs.values():
        await server.close()


async def get(url: str | URL, method: str = "GET", **kw: Any) -> tuple[int, dict[str, Any], Any]:
    async with aiohttp.ClientSession() as http, http.request(method, url, **kw) as resp:
        body = await resp.json(content_type=None)
        return resp.status, dict(resp.headers), body


async def test_api_routes_reach_their_service(gateway: Gateway) -> None:
    base = (await gateway()).public
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
        "/api/auth/login": "identity",
        "/api/auth/refresh": "identity",
        "/api/auth/logout": "identity",
    }
    for path, upstream in routes.items():
        post = any(word in path for word in ("reserv", "join", "auth"))
        status, _, body = await get(base + path, "POST" if post else "GET")
        assert (status, body) == (200, {"upstream": upstream, "path": path}), path


async def test_coupon_routes_reach_the_coupon_service_and_the_rest_of_orders_stays_with_order(
    gateway: Gateway,
) -> None:
    base = (await gateway()).public
    routes = {
        ("GET", "/api/coupons"): "coupon",
        ("GET", "/api/coupons?state=available&limit=20"): "coupon",
        ("GET", "/api/coupons/templates/12"): "coupon",
        ("POST", "/api/coupons/templates/12/claims"): "coupon",
        ("POST", "/api/orders/abc/coupon"): "coupon",
        ("POST", "/api/orders/3f2a-77/coupon?x=1"): "coupon",
        # Only the coupon of one order: the order's own routes, and paths that merely
        # look alike, stay with the order service.
        ("GET", "/api/orders/abc"): "order",
        ("POST", "/api/orders/abc/cancel"): "order",
        ("GET", "/api/orders/abc/coupons"): "order",
        ("GET", "/api/orders/abc/coupon/x"): "order",
        ("GET", "/api/orders/coupon"): "order",
        ("GET", "/api/couponsx"): None,
    }
    for (method, path), upstream in routes.items():
        status, _, body = await get(base + path, method)
        if upstream is None:
            assert (status, body) == (404, NOT_FOUND), path
        else:
            assert (status, body) == (200, {"upstream": upstream, "path": path}), path


async def test_an_order_s_coupon_fails_alone_when_the_coupon_service_is_down(
    gateway: Gateway,
) -> None:
    base = (await gateway(coupon_port=free_port())).public
    for path in ("/api/orders/abc/coupon", "/api/coupons/templates/12/claims"):
        status, headers, body = await get(base + path, "POST", json={"coupon_id": "c1"})
        assert (status, body["error"], headers["Retry-After"]) == (503, "unavailable", "1"), path
    status, _, body = await get(base + "/api/orders/abc")
    assert (status, body) == (200, {"upstream": "order", "path": "/api/orders/abc"})


async def test_a_claim_rush_from_one_address_is_held_by_the_per_ip_limit_like_reservations(
    gateway: Gateway,
) -> None:
    base = (await gateway(**ONE_PER_SECOND_PER_IP)).public
    body = await held_by_the_per_ip_limit(base + "/api/coupons/templates/12/claims", "POST")
    assert body == {"error": "rate_limited", "message": "too many requests from this address"}
    # One zone per address for every route: the rush leaves it no reservations either.
    status, _, _ = await get(base + "/api/seckill/activities/7/reservations", "POST")
    assert status == 429


async def test_admin_ops_and_unknown_routes_are_not_exposed(gateway: Gateway) -> None:
    base = (await gateway()).public
    hidden = [
        "/api/seckill/admin/activities",
        "/api/groupbuy/admin/campaigns",
        "/api/orders/admin/orders",
        "/api/notify/admin/messages",
        "/api/coupons/admin/templates",
        "/api/coupons/admin/templates/3/end",
        "/api/coupons/admin",
        "/api/orders/admin/coupon",
        "/api/auth/admin/login",
        "/api/auth/admin",
        "/console/",
        "/console",
        "/console/v/0123/app.js",
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
        assert body == NOT_FOUND


async def test_admin_routes_spelled_otherwise_are_still_not_exposed(gateway: Gateway) -> None:
    base = (await gateway()).public
    for path in (
        "/api/seckill/%61dmin/activities",
        "/api/auth/%61dmin/login",
        "/api/seckill//admin/activities",
        "/api/groupbuy/x/../admin/campaigns",
        "/api/coupons/%61dmin/templates",
        "/api/coupons//admin/templates",
        "/api/coupons/templates/../admin/templates",
    ):
        status, _, body = await get(URL(base + path, encoded=True), "POST")
        assert (status, body) == (404, NOT_FOUND), path


async def test_the_admin_server_routes_every_service_s_admin_routes_and_auth(
    gateway: Gateway,
) -> None:
    admin = (await gateway()).admin
    routes = {
        "/api/seckill/admin/activities": "seckill",
        "/api/orders/admin/orders?state=paid": "order",
        "/api/groupbuy/admin/campaigns": "groupbuy",
        "/api/notify/admin/messages": "notify",
        "/api/coupons/admin/templates": "coupon",
        "/api/coupons/admin/templates/3/grant-rules?limit=5": "coupon",
        "/api/auth/admin/login": "identity",
        "/api/auth/refresh": "identity",
        "/api/auth/logout": "identity",
        "/console/": "console",
        "/console": "console",
        "/console/v/0123/pages/board.js": "console",
    }
    for path, upstream in routes.items():
        status, _, body = await get(admin + path, "POST")
        assert (status, body) == (200, {"upstream": upstream, "path": path}), path
    # Nothing else: the shoppers' routes and the ops endpoints are not on the admin side.
    for path in (
        "/api/seckill/activities",
        "/api/orders",
        "/api/coupons",
        "/api/coupons/templates/3",
        "/api/orders/abc/coupon",
        "/metrics",
        "/healthz",
        "/",
        "/consoles",
    ):
        status, headers, body = await get(admin + path)
        assert (status, headers["Content-Type"], body) == (404, "application/json", NOT_FOUND)


async def test_each_server_serves_its_own_merged_openapi_document(gateway: Gateway) -> None:
    urls = await gateway()
    status, headers, public = await get(urls.public + "/api/openapi.json")
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert headers["Cache-Control"] == "no-cache"
    assert public == public_document()
    assert not [path for path in public["paths"] if "/admin" in path or "console" in path]
    status, headers, admin = await get(urls.admin + "/api/openapi.json")
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert admin == admin_document()
    assert "/api/seckill/admin/activities/{id}/live" in admin["paths"]
    assert "/api/auth/admin/login" in admin["paths"]
    # Served by the gateway from its files: no service was asked.
    assert "upstream" not in public and "upstream" not in admin


async def test_the_admin_server_answers_the_same_json_errors(gateway: Gateway) -> None:
    urls = await gateway(seckill_port=free_port(), gateway_max_body_bytes=1024)
    status, headers, body = await get(urls.admin + "/api/seckill/admin/activities", "POST")
    assert (status, body["error"], headers["Retry-After"]) == (503, "unavailable", "1")
    url = urls.admin + "/api/groupbuy/admin/campaigns"
    status, _, body = await get(url, "POST", data=b"x" * 2048)
    assert (status, body["error"]) == (413, "payload_too_large")


def test_the_rendered_configs_route_auth_to_identity_and_keep_admin_off_the_public_server() -> None:
    local = render_nginx_conf(
        local_gateway_values(dataclasses.replace(Settings(), http_host="0.0.0.0"), Path("/x"))
    )
    # Locally the admin server is on the loopback whatever address the services use.
    assert "listen 127.0.0.1:8088;" in local and "listen 127.0.0.1:8080;" in local
    assert "server 127.0.0.1:8086;" in local
    k8s = render_nginx_conf(K8S_GATEWAY)
    assert "listen 8088;" in k8s and "server identity:8086;" in k8s
    for conf in (local, k8s):
        assert "zone=login_per_ip:10m rate=120r/m;" in conf
        assert conf.count("limit_req zone=login_per_ip burst=60 nodelay;") == 5
        assert conf.count("proxy_pass http://identity;") == 7
        public, admin = conf.split("# The admin server")
        assert "location ~ ^/api/[^/]+/admin(/|$) { return 404" in public
        assert "/admin/ { proxy_pass" not in public
        assert "location /api/seckill/admin/ {\n            proxy_pass http://seckill;" in admin
        assert "location = /api/auth/admin/login {" in admin
        assert "location /console/ { proxy_pass http://console; }" in admin
        assert "console" not in public.split("# The public server.")[1]
        assert admin.count("proxy_buffering off;") == 3
    assert "server 127.0.0.1:8089;" in local and "server console:8089;" in k8s
    assert "server 127.0.0.1:8091;" in local and "server coupon:8091;" in k8s


def test_the_rendered_configs_send_coupons_and_an_order_s_coupon_to_the_coupon_service() -> None:
    local = render_nginx_conf(local_gateway_values(Settings(), Path("/x")))
    for conf in (local, render_nginx_conf(K8S_GATEWAY)):
        public, admin = conf.split("# The admin server")
        public = public.split("# The public server.")[1]
        assert public.count("proxy_pass http://coupon;") == 3
        assert "location ~ ^/api/orders/[^/]+/coupon$ { proxy_pass http://coupon; }" in public
        # The admin refusal is the first regular expression: nginx tries them in order.
        assert public.index("/admin(/|$)") < public.index("/coupon$")
        # No limit of its own: the claims count in the server's per-IP zone.
        claims = public[public.index("location /api/coupons/") :].split("\n", 1)[0]
        assert claims == "location /api/coupons/ { proxy_pass http://coupon; }"
        assert admin.count("proxy_pass http://coupon;") == 1
        assert "location /api/coupons/admin/ { proxy_pass http://coupon; }" in admin


async def test_a_body_over_the_limit_is_refused_with_413(gateway: Gateway) -> None:
    base = (await gateway(gateway_max_body_bytes=1024)).public
    url = base + "/api/seckill/activities/1/reservations"
    status, _, body = await get(url, "POST", data=b"x" * 2048)
    assert status == 413 and body["error"] == "payload_too_large"
    status, _, _ = await get(url, "POST", data=b"x" * 512)
    assert status == 200


# 1 request/s and a burst of 2 per address, none exempt.
ONE_PER_SECOND_PER_IP: dict[str, Any] = dict(
    gateway_rate_limit_per_second=1, gateway_rate_limit_burst=2, gateway_rate_limit_exempt=""
)


async def held_by_the_per_ip_limit(url: str, method: str = "GET") -> Any:
    """Ten requests in a row from one address under ONE_PER_SECOND_PER_IP: at most the burst
    and a freed slot pass, the rest are 429 with Retry-After 1. The body of a 429."""
    results = [await get(url, method) for _ in range(10)]
    statuses = [s for s, _, _ in results]
    assert statuses.count(200) <= 4 and statuses.count(429) >= 6
    _, headers, body = next(r for r in results if r[0] == 429)
    assert headers["Retry-After"] == "1"
    return body


async def test_a_client_over_the_per_ip_rate_is_answered_429(gateway: Gateway) -> None:
    base = (await gateway(**ONE_PER_SECOND_PER_IP)).public
    body = await held_by_the_per_ip_limit(base + "/api/seckill/activities")
    assert body["error"] == "rate_limited"


async def test_loopback_is_exempt_by_default_so_a_local_load_test_is_not_throttled(
    gateway: Gateway,
) -> None:
    base = (
        await gateway(
            gateway_rate_limit_per_second=1,
            gateway_rate_limit_burst=1,
            gateway_login_rate_limit_per_minute=1,
            gateway_login_rate_limit_burst=0,
        )
    ).public
    statuses = [(await get(base + "/api/orders"))[0] for _ in range(30)]
    assert statuses == [200] * 30
    logins = [(await get(base + "/api/auth/login", "POST"))[0] for _ in range(10)]
    assert logins == [200] * 10


async def test_login_routes_have_a_stricter_per_ip_limit_of_their_own(gateway: Gateway) -> None:
    base = (
        await gateway(
            gateway_rate_limit_exempt="",
            gateway_rate_limit_per_second=1000,
            gateway_rate_limit_burst=1000,
            gateway_login_rate_limit_per_minute=6,
            gateway_login_rate_limit_burst=2,
        )
    ).public
    logins = [await get(base + "/api/auth/login", "POST", json={"code": "c"}) for _ in range(6)]
    # One request now and a burst of two; the next is due in 60 / 6 = 10 s.
    assert [status for status, _, _ in logins] == [200, 200, 200, 429, 429, 429]
    _, headers, body = logins[-1]
    assert headers["Retry-After"] == "10"
    assert body == {"error": "rate_limited", "message": "too many requests from this address"}
    # The refresh route counts in the same zone; the other routes only in the per-IP one.
    assert (await get(base + "/api/auth/refresh", "POST"))[0] == 429
    others = ["/api/auth/logout", "/api/seckill/activities", "/api/orders"]
    assert [(await get(base + path))[0] for path in others * 5] == [200] * 15


async def test_the_admin_login_is_limited_like_the_shoppers_login(gateway: Gateway) -> None:
    admin = (
        await gateway(
            gateway_rate_limit_exempt="",
            gateway_login_rate_limit_per_minute=60,
            gateway_login_rate_limit_burst=1,
        )
    ).admin
    statuses = [(await get(admin + "/api/auth/admin/login", "POST"))[0] for _ in range(5)]
    assert statuses == [200, 200, 429, 429, 429]


async def test_with_every_limit_off_nothing_is_refused(gateway: Gateway) -> None:
    urls = await gateway(
        gateway_rate_limit_exempt="",
        gateway_rate_limit_per_second=0,
        gateway_login_rate_limit_per_minute=0,
    )
    for url in (urls.public + "/api/auth/login", urls.admin + "/api/auth/admin/login"):
        assert [(await get(url, "POST"))[0] for _ in range(40)] == [200] * 40


async def test_the_services_learn_the_client_address_never_one_the_client_claims(
    gateway: Gateway,
) -> None:
    urls = await gateway()
    forged = {"X-Real-IP": "203.0.113.9"}
    for base in (urls.public, urls.admin):
        status, _, body = await get(base + "/api/auth/whoami", headers=forged)
        assert (status, body) == (200, {"x_real_ip": "127.0.0.1"})


async def test_a_service_that_is_down_answers_503_json(gateway: Gateway) -> None:
    base = (await gateway(order_port=free_port())).public
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
        base = (await gateway(seckill_port=port)).public
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
    base = (await gateway(status_port=status_port)).public
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
    base = (await gateway()).public
    key = "0f8fad5b-d9cb-469f-a165-70867728950e:{x}~!"
    for path in (
        "/api/seckill/activities/7/reservations",
        "/api/groupbuy/campaigns/3/groups",
        "/api/groupbuy/groups/3-abc/join",
        "/api/orders/abc/cancel",
        "/api/coupons/templates/12/claims",
        "/api/orders/abc/coupon",
    ):
        status, _, body = await get(base + path, "POST", headers={"Idempotency-Key": key})
        assert (status, body["path"], body["idempotency_key"]) == (200, path, key)


async def test_a_services_own_outcome_unknown_passes_through_unchanged(gateway: Gateway) -> None:
    base = (await gateway()).public
    status, _, body = await get(base + "/api/seckill/activities/7/unanswered", "POST")
    assert status == 503
    assert body == {"error": "outcome_unknown", "message": "m", "check": "/api/x", "id": "1"}


LIVE_PATHS = (
    "/api/seckill/admin/activities/7/live",
    "/api/groupbuy/admin/campaigns/3/live",
    "/api/orders/admin/live?source=seckill&sale_id=7",
)


async def test_live_streams_reach_the_console_as_sent_and_outlast_the_usual_read_timeout(
    gateway: Gateway,
) -> None:
    admin = (await gateway()).admin

    async def follow(path: str) -> tuple[bytes, float, bytes]:
        async with aiohttp.ClientSession() as http, http.get(admin + path) as resp:
            assert resp.status == 200, path
            assert resp.headers["Content-Type"] == "text/event-stream"
            started = asyncio.get_running_loop().time()
            first = await asyncio.wait_for(resp.content.readexactly(len(FIRST_EVENT)), 10)
            waited = asyncio.get_running_loop().time() - started
            return first, waited, await resp.read()

    # Together: one pause for the three.
    for path, (first, waited, rest) in zip(
        LIVE_PATHS, await asyncio.gather(*(follow(p) for p in LIVE_PATHS)), strict=True
    ):
        assert first == FIRST_EVENT, path
        assert waited < STREAM_PAUSE_SECONDS / 4, f"{path}: held back {waited:.1f} s"
        assert rest == b"event: figures\ndata: {}\n\n", path


async def test_a_live_route_is_still_admin_only(gateway: Gateway) -> None:
    base = (await gateway()).public
    status, _, body = await get(base + "/api/seckill/admin/activities/7/live")
    assert (status, body) == (404, NOT_FOUND)


HOST = b"Host: x\r\n"
# Requests nginx refuses itself, before any location: (bytes, status, error).
REFUSED_BY_NGINX = {
    "a NUL in the path": (b"GET /api/orders/%00 HTTP/1.1\r\n" + HOST + b"\r\n", 400, "bad_request"),
    "a raw NUL in the path": (b"GET /api/a\x00b HTTP/1.1\r\n" + HOST + b"\r\n", 400, "bad_request"),
    "a garbage request line": (b"GARBAGE\r\n\r\n", 400, "bad_request"),
    "a method of symbols": (b"G{T / HTTP/1.1\r\n" + HOST + b"\r\n", 400, "bad_request"),
    "TLS on the plain port": (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 400, "bad_request"),
    "no Host header": (b"GET /api/orders HTTP/1.1\r\n\r\n", 400, "bad_request"),
    "two Host headers": (b"GET / HTTP/1.1\r\n" + HOST + b"Host: y\r\n\r\n", 400, "bad_request"),
    "a path above the root": (
        b"GET /../etc/passwd HTTP/1.1\r\n" + HOST + b"\r\n",
        400,
        "bad_request",
    ),
    "a NUL in a header": (
        b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\x00b\r\n\r\n",
        400,
        "bad_request",
    ),
    "a Content-Length that is no number": (
        b"POST /api/orders HTTP/1.1\r\n" + HOST + b"Content-Length: x\r\n\r\n",
        400,
        "bad_request",
    ),
    "invalid chunked encoding": (
        b"POST /api/orders HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
        "bad_request",
    ),
    "an unknown transfer encoding": (
        b"POST /api/orders HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: gzip\r\n\r\n",
        501,
        "not_implemented",
    ),
    "TRACE": (b"TRACE /api/orders HTTP/1.1\r\n" + HOST + b"\r\n", 405, "method_not_allowed"),
    "an unknown HTTP version": (
        b"GET / HTTP/9.9\r\n" + HOST + b"\r\n",
        505,
        "http_version_not_supported",
    ),
    "a request line over the buffers": (
        b"GET /api/" + b"a" * 9000 + b" HTTP/1.1\r\n" + HOST + b"\r\n",
        414,
        "uri_too_long",
    ),
    "a header over the buffers": (
        b"GET / HTTP/1.1\r\n" + HOST + b"X-A: " + b"a" * 9000 + b"\r\n\r\n",
        431,
        "request_header_fields_too_large",
    ),
    "headers over the buffers together": (
        b"GET / HTTP/1.1\r\n"
        + HOST
        + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 4000) for i in range(40))
        + b"\r\n",
        431,
        "request_header_fields_too_large",
    ),
    "an error page asked for by name": (
        b"GET /__errors/500 HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n",
        404,
        "not_found",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED_BY_NGINX))
async def test_what_nginx_refuses_itself_is_answered_in_json_without_its_version(
    gateway: Gateway, case: str
) -> None:
    request, expected_status, expected_error = REFUSED_BY_NGINX[case]
    urls = await gateway()
    for base in (urls.public, urls.admin):
        answer = await raw_exchange(URL(base).port or 0, request)
        status, headers, body = parse_answer(answer)
        assert (status, headers["Content-Type"]) == (expected_status, "application/json")
        assert set(orjson.loads(body)) == {"error", "message"}
        assert orjson.loads(body)["error"] == expected_error
        # Debian's nginx has no module to drop the header: server_tokens off leaves the
        # bare name, never the version (docs/operations.md, "Hostile input").
        assert headers["Server"] == "nginx"
        assert b"<html" not in answer and b"nginx" not in body


async def test_the_services_server_header_never_passes_the_gateway(gateway: Gateway) -> None:
    # The stubs are plain aiohttp apps: they send "Server: Python/3.x aiohttp/3.x".
    status, headers, _ = await get((await gateway()).public + "/api/orders")
    assert (status, headers["Server"]) == (200, "nginx")


async def test_a_client_that_stops_sending_is_dropped_without_an_html_page(
    gateway: Gateway,
) -> None:
    port = URL((await gateway()).public).port or 0
    started = asyncio.get_running_loop().time()
    headers_cut = b"GET /api/orders HTTP/1.1\r\n" + HOST
    body_cut = b"POST /api/orders HTTP/1.1\r\n" + HOST + b"Content-Length: 10\r\n\r\nab"
    answers = await asyncio.gather(
        raw_exchange(port, headers_cut, within=20.0), raw_exchange(port, body_cut, within=20.0)
    )
    # client_header_timeout / client_body_timeout (10 s): nginx closes without answering.
    assert answers == [b"", b""]
    assert 9.0 < asyncio.get_running_loop().time() - started < 15.0


def test_every_error_nginx_makes_itself_has_a_json_page_in_both_servers() -> None:
    for conf in (
        render_nginx_conf(K8S_GATEWAY),
        render_nginx_conf(local_gateway_values(Settings(), Path("/x"))),
    ):
        public, admin = conf.split("# The admin server")
        for code, status in (
            (400, 400),
            (404, 404),
            (405, 405),
            (408, 408),
            (411, 411),
            (414, 414),
            (494, 431),
            (500, 500),
            (501, 501),
            (505, 505),
        ):
            assert f"error_page {code} ={status} /__errors/{status};" in conf
            for server in (public, admin):
                assert (
                    f'location = /__errors/{status} {{ internal; return {status} \'{{"error":'
                    in server
                )
        for named in ("@payload_too_large", "@rate_limited", "@unavailable"):
            assert public.count(f"location {named} {{") == admin.count(f"location {named} {{") == 1
