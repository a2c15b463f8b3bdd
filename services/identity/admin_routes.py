"""HTTP view of the merchant login: parse, call, map. Public (a login has no token yet):
ADMIN_LOGIN_PATH is among routes.PUBLIC_PATHS."""

from __future__ import annotations

import time

from aiohttp import web

from services.common.errors import DomainError
from services.common.http import json_response, read_json_object
from services.identity.merchant_accounts import ADMIN_KIND, AdminLogin
from services.identity.merchants import InvalidCredentials, parse_admin_login
from services.identity.routes import ADMIN_LOGIN_PATH, request_ip

ADMIN_LOGIN: web.AppKey[AdminLogin] = web.AppKey("identity_admin_login", AdminLogin)


async def admin_login(request: web.Request) -> web.Response:
    """{"name", "password"} -> the admin token pair and the account (id, name, roles)."""
    login = request.app[ADMIN_LOGIN]
    started = time.perf_counter()
    try:
        name, password = parse_admin_login(await read_json_object(request))
        address = request_ip(request, login.trusted)
        view = await login.login(name, password, address)
    except DomainError as exc:
        # The outcome label is the error code, except that a disabled account (answered
        # as invalid_credentials) is counted as "disabled".
        outcome = exc.outcome.value if isinstance(exc, InvalidCredentials) else exc.code
        login.metrics.logins.labels(ADMIN_KIND, outcome).inc()
        raise
    finally:
        login.metrics.login_seconds.labels(ADMIN_KIND).observe(time.perf_counter() - started)
    login.metrics.logins.labels(ADMIN_KIND, "ok").inc()
    # RFC 6749 5.1: a token answer is not stored by caches along the way.
    return json_response(view, headers={"Cache-Control": "no-store"})


def add_admin_routes(app: web.Application) -> None:
    app.router.add_post(ADMIN_LOGIN_PATH, admin_login)
