"""GET /api/openapi.json: the service's document, serialized once at start-up."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from services.common.openapi.spec import OPENAPI_PATH


def add_openapi_route(app: web.Application, document: dict[str, Any]) -> None:
    """Serve `document` at OPENAPI_PATH; the app's auth middleware must list the path
    among its public paths (a client reads the contract before it has a token)."""
    body = orjson.dumps(document)

    async def openapi(_: web.Request) -> web.Response:
        return web.Response(
            body=body, content_type="application/json", headers={"Cache-Control": "no-cache"}
        )

    app.router.add_get(OPENAPI_PATH, openapi)
