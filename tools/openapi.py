"""The gateway's OpenAPI documents: every service's operations in one document, rendered
with the gateway's config (tools/deploy.py) into static files that nginx serves at
/api/openapi.json. docs/api.md says why it is a file and not a service.

    python -m tools.openapi public    # the public server's document (no admin operation)
    python -m tools.openapi admin     # the admin server's: every operation
    python -m tools.openapi seckill   # one service's own (as it serves it)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from services.common.openapi.spec import (
    ADMIN_PATH,
    OPENAPI_PATH,
    Operation,
    ServiceSpec,
    build_document,
)
from services.console.openapi import SPEC as CONSOLE
from services.coupon.openapi import SPEC as COUPON
from services.groupbuy.openapi import SPEC as GROUPBUY
from services.identity.openapi import SPEC as IDENTITY
from services.notify.openapi import SPEC as NOTIFY
from services.order.openapi import SPEC as ORDER
from services.seckill.openapi import SPEC as SECKILL

SERVICES: dict[str, ServiceSpec] = {
    spec.tag: spec for spec in (SECKILL, ORDER, GROUPBUY, NOTIFY, IDENTITY, CONSOLE, COUPON)
}
PUBLIC_FILE = "openapi-public.json"
ADMIN_FILE = "openapi-admin.json"


def on_public_server(op: Operation) -> bool:
    """What the public server routes (nginx.conf.template): /api/..., never admin."""
    return op.path.startswith("/api/") and not ADMIN_PATH.match(op.path)


def on_admin_server(op: Operation) -> bool:
    """What the admin server routes: the console, every admin route and /api/auth/."""
    return (
        op.path.startswith("/console")
        or bool(ADMIN_PATH.match(op.path))
        or op.path.startswith("/api/auth/")
        or op.path == OPENAPI_PATH
    )


def _mark_servers(document: dict[str, Any]) -> None:
    """x-gateway-servers on each operation: which of the gateway's servers routes it
    (the admin document lists shopper routes the admin server does not route)."""
    by_route = {(op.path, op.method): op for spec in SERVICES.values() for op in spec.operations}
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            op = by_route.get((path, method))
            if op is None:  # GET /api/openapi.json: both, each its own document
                operation["x-gateway-servers"] = ["public", "admin"]
                continue
            operation["x-gateway-servers"] = [
                name
                for name, routed in (("public", on_public_server), ("admin", on_admin_server))
                if routed(op)
            ]


def public_document() -> dict[str, Any]:
    return _gateway_document(
        "Flash-sale platform: public API",
        "Every operation the public gateway routes: shoppers' mini-programs and the "
        "payment provider. Admin operations are on the admin server only.",
        on_public_server,
    )


def admin_document() -> dict[str, Any]:
    return _gateway_document(
        "Flash-sale platform: complete API",
        "Every operation of every service. `x-gateway-servers` says which server of the "
        "gateway routes each: `admin` (this one, internal) or `public`.",
        lambda _: True,
    )


def _gateway_document(
    title: str, description: str, include: Callable[[Operation], bool]
) -> dict[str, Any]:
    document = build_document(
        list(SERVICES.values()),
        title=title,
        description=description,
        include=include,
        gateway=True,
    )
    _mark_servers(document)
    return document


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def gateway_files() -> dict[str, str]:
    """The files the gateway serves, by name."""
    return {PUBLIC_FILE: dumps(public_document()), ADMIN_FILE: dumps(admin_document())}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.openapi", description=__doc__)
    parser.add_argument("which", choices=["public", "admin", *SERVICES])
    args = parser.parse_args(argv)
    if args.which == "public":
        document = public_document()
    elif args.which == "admin":
        document = admin_document()
    else:
        document = SERVICES[args.which].document()
    sys.stdout.write(dumps(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
