"""HTTP edge shared by the services: JSON errors, body parsing, auth and metrics middleware.

Every error leaves as {"error": "<code>", "message": "<text>"}; domain exceptions are
mapped to HTTP here, in one place.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Histogram

from services.common.auth import ADMIN_ROLE, AuthError, KeySet, Principal, TokenVerifier
from services.common.errors import DomainError
from services.common.redis_faults import REDIS_DOWN, unavailable
from services.common.resources import PG_TRANSIENT, REDIS_UNANSWERED

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
# Sub-10 ms hot path: fine buckets below 10 ms, coarse ones up to the client timeouts.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
MAX_BODY_BYTES = 16 * 1024
# A body that has not arrived by then never will: a client trickling bytes, or chunked
# encoding broken mid-body, after which aiohttp's parser stops feeding the body without
# failing it (the read would wait for the connection to close).
BODY_READ_TIMEOUT_SECONDS = 10.0


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    return json_response({"error": code, "message": message, **extra}, status, headers)


async def read_body(request: web.Request) -> bytes:
    """The raw request body, or a 408/413 DomainError."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise DomainError(413, "payload_too_large", f"body exceeds {MAX_BODY_BYTES} bytes")
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_SECONDS):
            return await request.read()
    except TimeoutError:
        raise DomainError(
            408,
            "request_timeout",
            f"the body did not arrive within {BODY_READ_TIMEOUT_SECONDS:g} s",
        ) from None
    except (web.RequestPayloadError, ConnectionResetError):
        # Broken framing (a bad chunk, a body cut short): the client's fault, not a 500.
        raise DomainError(400, "invalid_body", "the body is cut short or badly framed") from None


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400/408/413/415 DomainError."""
    raw = await read_body(request)
    if not raw:
        return {}
    if request.content_type not in ("application/json", "application/octet-stream", ""):
        raise DomainError(415, "unsupported_media_type", "send the body as application/json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise DomainError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise DomainError(400, "invalid_json", "the body must be a JSON object")
    return body


def auth_middleware(keys: KeySet, public_paths: frozenset[str] = frozenset()) -> Middleware:
    """Requires a valid bearer token on every /api route except public_paths."""
    verifier = TokenVerifier(keys)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/api/") and request.path not in public_paths:
            try:
                request[PRINCIPAL] = verifier.principal(request.headers.get("Authorization"))
            except AuthError as exc:
                return error_response(401, "unauthorized", str(exc), {"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return middleware


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def require_admin(request: web.Request) -> Principal:
    return require_role(request, ADMIN_ROLE)


def require_role(request: web.Request, needed: str) -> Principal:
    """The caller, if their roles grant `needed` (docs/identity.md, "Roles"); else 403.
    Admin routes read with VIEWER_ROLE and change things with OPERATOR_ROLE."""
    who = request[PRINCIPAL]
    if not who.may(needed):
        raise DomainError(403, "forbidden", f"this route needs the {needed} role")
    return who


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route template and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


def _route_label(request: web.Request) -> str:
    # The route template, never the raw path: ids in labels would explode cardinality.
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"


def _domain_error_response(exc: DomainError) -> web.Response:
    return error_response(exc.status, exc.code, exc.message, exc.headers or None, **exc.extra)


def errors_and_metrics_middleware(metrics: HttpMetrics) -> Middleware:
    """Maps DomainError, aiohttp's HTTP errors and Redis being unavailable (503
    redis_unavailable, with Retry-After) to JSON bodies, and records RED metrics."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except DomainError as exc:
            response = _domain_error_response(exc)
        except web.HTTPException as exc:
            code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
                exc.status, "http_error"
            )
            # A 405 names the methods the route takes (RFC 9110 requires Allow on it).
            allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            response = error_response(exc.status, code, exc.reason, allow)
        except PG_TRANSIENT as exc:
            # The database is down, restarting or out of connections. A COMMIT whose answer
            # was lost may have applied; the writes behind every route are idempotent (keyed
            # on the order, the payment, the Idempotency-Key) or harmless to repeat (a
            # login), so the retry this invites is safe.
            log.warning("postgres unavailable on %s %s: %r", request.method, request.path, exc)
            response = error_response(
                503,
                "database_unavailable",
                "the database is not reachable: retry shortly",
                {"Retry-After": "1"},
            )
        except REDIS_DOWN as exc:
            # Redis unreachable, loading or not answering: the caller may retry, it is
            # not a fault of ours to answer 500 for. State-changing routes that must say
            # whether their script ran catch it themselves (redis_faults.unanswered_change).
            log.warning("redis unavailable on %s %s: %r", request.method, request.path, exc)
            response = _domain_error_response(unavailable(exc))
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            response = error_response(500, "internal", "internal error")
        route = _route_label(request)
        metrics.requests.labels(route, request.method, str(response.status)).inc()
        metrics.duration.labels(route, request.method).observe(time.perf_counter() - started)
        return response

    return middleware


async def created_sale(
    warm_up: Awaitable[None],
    mark_warmed: Callable[[], Awaitable[None]],
    view: dict[str, Any],
    location: str,
) -> web.Response:
    """The answer to creating a sale (activity, campaign) already recorded in PostgreSQL:
    201 once its stock is in Redis; 202 with "warm_up": "pending" when Redis did not
    answer. The sale is recorded either way and its service warms it in the background as
    soon as Redis answers; a 5xx here would make the operator create it again: a
    duplicate sale."""
    headers = {"Location": location}
    try:
        await warm_up
    except REDIS_UNANSWERED as exc:
        log.warning("%s created, warm-up pending: %r", location, exc)
        pending = {
            **view,
            "warm_up": "pending",
            "message": "created; its stock is loaded into Redis as soon as Redis answers "
            "(do not create it again)",
        }
        return json_response(pending, 202, headers)
    await mark_warmed()
    return json_response(view, 201, headers)
