"""Wiring of the console service: the pages and assets, read once at start-up from
services/console/static/ and answered from memory with the security headers every
answer carries. No Redis, PostgreSQL or Kafka: the browser talks to the admin API."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from services.common.http import HttpMetrics, errors_and_metrics_middleware
from services.common.observability import create_ops_app
from services.common.openapi.serve import add_openapi_route
from services.common.settings import Settings
from services.console.domain import (
    ASSET_PREFIX,
    CACHE_INDEX,
    CACHE_NONE,
    PREFIX,
    SECURITY_HEADERS,
    Asset,
    Bundle,
    etag_matches,
    is_asset_name,
)
from services.console.openapi import SPEC as OPENAPI

STATIC_DIR = Path(__file__).resolve().parent / "static"

REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("registry", CollectorRegistry)
BUNDLE: web.AppKey[Bundle] = web.AppKey("bundle", Bundle)


def read_static(root: Path = STATIC_DIR) -> dict[str, bytes]:
    """Every file under root that is an asset name (relative, '/'-separated)."""
    files = {}
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.is_file() and is_asset_name(name):
            files[name] = path.read_bytes()
    return files


def _answer(request: web.Request, asset: Asset, cache_control: str) -> web.Response:
    headers = {"Cache-Control": cache_control, "ETag": asset.etag}
    if etag_matches(request.headers.get("If-None-Match"), asset.etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, headers={**headers, "Content-Type": asset.content_type})


async def index(request: web.Request) -> web.Response:
    return _answer(request, request.app[BUNDLE].index, CACHE_INDEX)


async def to_index(_: web.Request) -> web.Response:
    # Returned, not raised: the errors middleware turns raised HTTP errors into JSON.
    return web.Response(status=301, headers={"Location": PREFIX})


async def asset(request: web.Request) -> web.Response:
    found = request.app[BUNDLE].lookup(request.match_info["version"], request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    return _answer(request, *found)


async def security_headers(_: web.Request, response: web.StreamResponse) -> None:
    # on_response_prepare: errors and redirects carry them too.
    response.headers.update(SECURITY_HEADERS)
    response.headers.setdefault("Cache-Control", CACHE_NONE)


def create_app(settings: Settings, static_files: dict[str, bytes] | None = None) -> web.Application:
    registry = CollectorRegistry()
    app = web.Application(
        middlewares=[errors_and_metrics_middleware(HttpMetrics(registry))],
        client_max_size=1024,
    )
    app[REGISTRY] = registry
    # A console without its pages must not start (and report ready) at all.
    app[BUNDLE] = Bundle.of(read_static() if static_files is None else static_files)
    app.on_response_prepare.append(security_headers)
    app.router.add_get(PREFIX.rstrip("/"), to_index)
    app.router.add_get(PREFIX, index)
    app.router.add_get(ASSET_PREFIX + "{version:[0-9a-f]{1,64}}/{name:.+}", asset)
    add_openapi_route(app, OPENAPI.document())
    return app


def create_ops(api: web.Application) -> web.Application:
    # Nothing to wait for: the pages are in memory from the start.
    return create_ops_app(api[REGISTRY], {})
