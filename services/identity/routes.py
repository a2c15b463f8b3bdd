"""HTTP views of the identity service: parse, call, map. Every route here is public: a
login has no token yet, and refresh and logout are authenticated by the refresh token."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from services.common.errors import DomainError
from services.common.http import json_response, read_json_object
from services.common.openapi.spec import OPENAPI_PATH
from services.common.settings import Settings
from services.identity.domain import (
    SHOPPER,
    SHOPPER_ROLES,
    Networks,
    RefreshVerdict,
    client_ip,
    parse_login,
    parse_refresh_token,
    refresh_refusal,
    refresh_token_hash,
    session_from_answer,
)
from services.identity.metrics import IdentityMetrics
from services.identity.provider import WeChatApi
from services.identity.repository import IdentityRepository
from services.identity.throttle import LoginThrottle
from services.identity.tokens import TokenIssuer

LOGIN = "/api/auth/login"
REFRESH = "/api/auth/refresh"
LOGOUT = "/api/auth/logout"
ADMIN_LOGIN_PATH = "/api/auth/admin/login"  # served by admin_routes.py
PUBLIC_PATHS = frozenset({LOGIN, REFRESH, LOGOUT, ADMIN_LOGIN_PATH, OPENAPI_PATH})


@dataclass(frozen=True, slots=True)
class ShopperAuth:
    """What the shopper routes use; built once per app from its resources."""

    settings: Settings
    repo: IdentityRepository
    api: WeChatApi
    issuer: TokenIssuer
    throttle: LoginThrottle
    metrics: IdentityMetrics
    announce: Callable[[], None]  # a new user's event is in the outbox: publish now
    trusted: Networks  # the proxies whose X-Real-IP names the client


AUTH: web.AppKey[ShopperAuth] = web.AppKey("identity_auth", ShopperAuth)


def request_ip(request: web.Request, trusted: Networks) -> str:
    """The client's address as the gateway reports it (domain.client_ip)."""
    return client_ip(request.remote, request.headers.get("X-Real-IP"), trusted)


async def counted(
    metrics: IdentityMetrics, kind: str, answer: Awaitable[web.Response]
) -> web.Response:
    """Run a login, counting it by outcome (ok or the refusal's error code) and timing it."""
    started = time.perf_counter()
    try:
        response = await answer
    except DomainError as exc:
        metrics.logins.labels(kind, exc.code).inc()
        raise
    except Exception:
        # PostgreSQL down, a bug: answered 503 or 500 by the middleware.
        metrics.logins.labels(kind, "error").inc()
        raise
    finally:
        metrics.login_seconds.labels(kind).observe(time.perf_counter() - started)
    metrics.logins.labels(kind, "ok").inc()
    return response


async def login(request: web.Request) -> web.Response:
    """A mini-program's wx.login() code -> our access token and a refresh token."""
    auth = request.app[AUTH]
    return await counted(auth.metrics, SHOPPER, _login(request, auth))


async def _login(request: web.Request, auth: ShopperAuth) -> web.Response:
    code = parse_login(await read_json_object(request))
    await auth.throttle.check(request_ip(request, auth.trusted))
    session = session_from_answer(await auth.api.code2session(code))
    refresh = auth.issuer.new_refresh(SHOPPER)
    user = await auth.repo.login_shopper(
        auth.settings.wechat_appid, session, refresh.hash, refresh.ttl_seconds
    )
    if user.created:
        auth.metrics.registered.inc()
        auth.announce()
    pair = auth.issuer.pair(SHOPPER, user.user_id, SHOPPER_ROLES, refresh.token)
    return json_response(pair.view(user={"id": user.user_id, "new": user.created}))


async def refresh(request: web.Request) -> web.Response:
    """Rotate a refresh token: the presented one is used up, a new pair is issued. A token
    presented a second time revokes its whole login (the newer token too)."""
    auth = request.app[AUTH]
    presented = parse_refresh_token(await read_json_object(request))
    # The next token's life follows the login's kind, known once the presented one is found.
    issued = auth.issuer.new_refresh(SHOPPER)
    rotation = await auth.repo.rotate(
        refresh_token_hash(presented), issued.hash, auth.issuer.refresh_ttl
    )
    auth.metrics.refreshes.labels(rotation.verdict.value).inc()
    if rotation.verdict is not RefreshVerdict.ROTATE:
        raise refresh_refusal(rotation.verdict)
    kind = rotation.kind
    roles = SHOPPER_ROLES if kind == SHOPPER else rotation.roles
    return json_response(auth.issuer.pair(kind, rotation.subject, roles, issued.token).view())


async def logout(request: web.Request) -> web.Response:
    """Revoke the login a refresh token belongs to. 204 whether or not it was live: a
    logout repeated after a lost answer succeeds too. Access tokens already issued stay
    valid until they expire (access_token_ttl_seconds): they are checked without I/O."""
    auth = request.app[AUTH]
    presented = parse_refresh_token(await read_json_object(request))
    await auth.repo.revoke(refresh_token_hash(presented), "logout")
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post(LOGIN, login)
    app.router.add_post(REFRESH, refresh)
    app.router.add_post(LOGOUT, logout)
