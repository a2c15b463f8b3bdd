"""The services' HTTP edge on the wire (raw sockets): what aiohttp's parser refuses before
any middleware is answered with the JSON error shape and a fixed message, never the
request's bytes, and no answer of any service or ops app names the server software."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from services.common.settings import Settings
from tests.helpers import parse_answer, raw_exchange, started_client
from tests.integration.test_identity_login import identity_settings
from tools.fake_wechat import FakeWeChat

HOST = b"Host: x\r\n"
SECRET = b"s3cr3t-in-the-request"
# Requests aiohttp's parser refuses: (bytes, status, error). Each carries SECRET, which
# must not come back.
REFUSED = {
    "a garbage request line": (b"GARBAGE" + SECRET + b"\r\n\r\n", 400, "bad_request"),
    "an unknown method": (
        b"FOO /" + SECRET + b" HTTP/1.1\r\n" + HOST + b"\r\n",
        400,
        "bad_request",
    ),
    "a method of symbols": (
        b"G{T /" + SECRET + b" HTTP/1.1\r\n" + HOST + b"\r\n",
        400,
        "bad_request",
    ),
    "TLS on the plain port": (
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + SECRET,
        400,
        "bad_request",
    ),
    "an unknown HTTP version": (
        b"GET /" + SECRET + b" HTTP/9.9\r\n" + HOST + b"\r\n",
        400,
        "bad_request",
    ),
    "a NUL in a header": (
        b"GET / HTTP/1.1\r\n" + HOST + b"X-A: " + SECRET + b"\x00\r\n\r\n",
        400,
        "bad_request",
    ),
    "a header without a colon": (
        b"GET / HTTP/1.1\r\n" + HOST + SECRET + b"\r\n\r\n",
        400,
        "bad_request",
    ),
    "a Content-Length that is no number": (
        b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: " + SECRET + b"\r\n\r\n",
        400,
        "bad_request",
    ),
    "invalid chunked encoding": (
        b"POST /api/x HTTP/1.1\r\n"
        + HOST
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + SECRET
        + b"\r\n",
        400,
        "bad_request",
    ),
    "a request line over 8190 bytes": (
        b"GET /" + SECRET + b"a" * 9000 + b" HTTP/1.1\r\n" + HOST + b"\r\n",
        414,
        "uri_too_long",
    ),
    "a header over 8192 bytes": (
        b"GET / HTTP/1.1\r\n" + HOST + b"X-A: " + SECRET + b"a" * 9000 + b"\r\n\r\n",
        431,
        "request_header_fields_too_large",
    ),
    "more than 128 headers": (
        b"GET / HTTP/1.1\r\n"
        + HOST
        + b"".join(b"X-%d: %s\r\n" % (i, SECRET) for i in range(200))
        + b"\r\n",
        431,
        "request_header_fields_too_large",
    ),
}
SERVICES = ("seckill", "order", "groupbuy", "notify", "identity", "console")


def _api(name: str, settings: Settings) -> Any:
    module = importlib.import_module(f"services.{name}.app")
    quiet = {
        "seckill": {"run_relay": False, "run_stock_return": False},
        "order": {},
        "groupbuy": {"run_relay": False, "run_sweeper": False, "run_consumers": False},
        "notify": {"run_consumers": False, "run_dispatcher": False, "run_reminders": False},
        "identity": {"run_keeper": False, "run_relay": False},
        "console": {},
    }[name]
    return module.create_app(settings, **quiet)


@pytest.fixture(params=SERVICES)
async def service(
    request: pytest.FixtureRequest, settings: Settings, fake: FakeWeChat
) -> AsyncIterator[tuple[TestClient[Any, Any], TestClient[Any, Any]]]:
    """(api, ops) of one service, served as `python -m services.<name>` serves them."""
    name = request.param
    api = await started_client(_api(name, identity_settings(settings, fake)))
    module = importlib.import_module(f"services.{name}.app")
    ops = await started_client(module.create_ops(api.app))
    yield api, ops
    await ops.close()
    await api.close()


def assert_anonymous_json(answer: bytes, status: int, error: str) -> None:
    got_status, headers, body = parse_answer(answer)
    assert (got_status, headers["Content-Type"]) == (status, "application/json"), answer[:300]
    assert "Server" not in headers
    assert set(orjson.loads(body)) == {"error", "message"}
    assert orjson.loads(body)["error"] == error
    assert SECRET not in answer


async def test_what_aiohttp_refuses_before_any_middleware_is_json_and_echoes_nothing(
    service: tuple[TestClient[Any, Any], TestClient[Any, Any]],
) -> None:
    for client in service:
        port = client.port or 0
        for case, (request, status, error) in REFUSED.items():
            answer = await raw_exchange(port, request)
            try:
                assert_anonymous_json(answer, status, error)
            except AssertionError as exc:
                raise AssertionError(f"{case}: {exc}") from exc


async def test_no_answer_of_a_service_or_its_ops_app_names_the_server_software(
    service: tuple[TestClient[Any, Any], TestClient[Any, Any]],
) -> None:
    api, ops = service
    for client, path in ((api, "/nowhere"), (api, "/api/nowhere"), (ops, "/healthz")):
        resp = await client.get(path)
        assert "Server" not in resp.headers, path
        await resp.read()
    resp = await ops.get("/metrics")
    assert (resp.status, "Server" in resp.headers) == (200, False)
    # A 404 of the ops app, which has no errors middleware, and a method it does not take.
    for method, path in (("GET", "/nowhere"), ("DELETE", "/healthz")):
        resp = await ops.request(method, path)
        assert resp.status in (404, 405) and "Server" not in resp.headers


async def test_a_body_broken_mid_way_is_answered_408_not_left_waiting(
    settings: Settings, fake: FakeWeChat, monkeypatch: pytest.MonkeyPatch
) -> None:
    # aiohttp's parser stops feeding a body whose chunked encoding breaks after the
    # handler started reading it, without failing the read: the deadline answers.
    monkeypatch.setattr("services.common.http.BODY_READ_TIMEOUT_SECONDS", 0.5)
    api = await started_client(_api("identity", identity_settings(settings, fake)))
    try:
        head = b"POST /api/auth/login HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\n"
        first = b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n"
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        writer.write(head + first)
        await writer.drain()
        await asyncio.sleep(0.1)  # the handler is reading the body now
        writer.write(b"zz" + SECRET + b"\r\n")
        async with asyncio.timeout(5):
            answer = await reader.read(65536)
        writer.close()
    finally:
        await api.close()
    assert_anonymous_json(answer, 408, "request_timeout")
