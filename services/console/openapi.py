"""The console service's OpenAPI document: its page and assets (app.create_app). They
need no token: the page logs in with the admin API, and the gateway serves it on the
admin side only."""

from __future__ import annotations

from typing import Any

from services.common.openapi.schemas import string
from services.common.openapi.spec import Access, Operation, ServiceSpec, path_param
from services.console.domain import ASSET_PREFIX, CONTENT_TYPES, PREFIX

_ETAG = {"ETag": {"description": "the version of the answer", "schema": string()}}
_NOT_MODIFIED = {"description": "Unchanged since the If-None-Match ETag.", "headers": _ETAG}


def _body(description: str, media_types: list[str]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": _ETAG,
        # The media types without their charset parameter, as clients compare them.
        "content": {media.split(";")[0]: {"schema": string()} for media in media_types},
    }


OPERATIONS = [
    Operation(
        "get",
        PREFIX.rstrip("/"),
        "console_to_index",
        "Redirect to the console's page",
        Access.PUBLIC,
        {
            301: {
                "description": "To /console/.",
                "headers": {"Location": {"$ref": "#/components/headers/Location"}},
            }
        },
        static=True,
    ),
    Operation(
        "get",
        PREFIX,
        "console_index",
        "The merchant console's page",
        Access.PUBLIC,
        {
            200: _body("The page (no-cache: revalidated on every load).", [CONTENT_TYPES[".html"]]),
            304: _NOT_MODIFIED,
        },
        static=True,
    ),
    Operation(
        "get",
        ASSET_PREFIX + "{version}/{name}",
        "console_asset",
        "A module, the stylesheet or an image of the page",
        Access.PUBLIC,
        {
            200: _body(
                "The asset (immutable under this release's version).",
                sorted(set(CONTENT_TYPES.values())),
            ),
            304: _NOT_MODIFIED,
        },
        {404: "`not_found`: no such asset"},
        parameters=[
            path_param(
                "version",
                string(pattern="^[0-9a-f]{1,64}$"),
                "a digest of every asset (index.html names the current one)",
            ),
            path_param("name", string(), "the asset's path, e.g. app.js or pages/sales.js"),
        ],
        static=True,
    ),
]


SPEC = ServiceSpec(
    title="Merchant console (console)",
    tag="console",
    description="The console's page and assets; it calls the admin API from the browser.",
    operations=OPERATIONS,
    schemas={},
    unavailable="",
)
