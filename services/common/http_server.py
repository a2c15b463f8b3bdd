"""The HTTP server every service and ops app is served by: aiohttp's, with two changes.

1. No `Server` header (aiohttp sends "Python/3.x aiohttp/3.x": versions an attacker can
   look up vulnerabilities for).
2. Requests aiohttp's parser refuses before any middleware runs (a bad request line, an
   unknown method, a header too long or too many, invalid chunked encoding) are answered
   with the JSON error shape {"error", "message"} of every other error, and a fixed
   message: aiohttp's own text echoes the offending bytes back.

aiohttp has no public hook for either: the parser's errors are answered by
RequestHandler.handle_error, and StreamResponse adds `Server` while preparing the headers.
ServiceRunner (an AppRunner) builds its server's connection handlers from
JsonErrorRequestHandler; every answer of a routed request loses `Server` in the app's
on_response_prepare signal, which runs after aiohttp set it, and the parser's answers,
which no app signal sees, are an AnonymousResponse. tests/integration/test_http_edge.py
checks both on the wire, so an aiohttp upgrade that changes either fails there.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import hdrs, web
from aiohttp.http_exceptions import BadHttpMethod, LineTooLong
from aiohttp.web_protocol import RequestHandler

# aiohttp's default limits, kept; they differ by two bytes on purpose: LineTooLong carries
# the limit it hit, which tells a request line too long (414) from a header (431).
MAX_REQUEST_LINE = 8190
MAX_HEADER_FIELD = 8192
MAX_HEADERS = 128


class AnonymousResponse(web.Response):
    """A response that never names the server software, even outside an app's signals."""

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        self.headers.popall(hdrs.SERVER, None)


async def drop_server_header(_: web.Request, response: web.StreamResponse) -> None:
    # on_response_prepare runs after aiohttp set the header: removing it here sticks.
    response.headers.popall(hdrs.SERVER, None)


def parser_refusal(status: int, exc: BaseException | None) -> tuple[int, str, str]:
    """(status, code, message) of a request aiohttp could not parse or serve: fixed words,
    never the request's bytes."""
    if isinstance(exc, LineTooLong):
        if exc.args[1:2] == (MAX_REQUEST_LINE,):
            return 414, "uri_too_long", f"the request line exceeds {MAX_REQUEST_LINE} bytes"
        return (
            431,
            "request_header_fields_too_large",
            f"a header exceeds {MAX_HEADER_FIELD} bytes",
        )
    if isinstance(exc, BadHttpMethod):
        return 400, "bad_request", "the request line is not HTTP/1.x (method, target, version)"
    if status == 400 and exc is not None and "Too many headers" in str(exc):
        return (
            431,
            "request_header_fields_too_large",
            f"the request has more than {MAX_HEADERS} headers",
        )
    if status == 400:
        return 400, "bad_request", "the request is not valid HTTP/1.1"
    if status == 504:
        return 504, "timeout", "the request took too long"
    return 500, "internal", "internal error"


class JsonErrorRequestHandler(RequestHandler):
    __slots__ = ()

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own: logs, refuses when a response was already started, closes.
        super().handle_error(request, status, exc, message)
        status, code, text = parser_refusal(status, exc)
        body = orjson.dumps({"error": code, "message": text})
        response = AnonymousResponse(status=status, body=body, content_type="application/json")
        response.force_close()
        return response


class JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        # Same slots, no state of its own: only handle_error differs.
        handler.__class__ = JsonErrorRequestHandler
        return handler


class ServiceRunner(web.AppRunner):
    """web.AppRunner serving with JsonErrorRequestHandler and without a Server header."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        app.on_response_prepare.append(drop_server_header)
        kwargs.setdefault("max_line_size", MAX_REQUEST_LINE)
        kwargs.setdefault("max_field_size", MAX_HEADER_FIELD)
        kwargs.setdefault("max_headers", MAX_HEADERS)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = JsonErrorServer
        return server
