"""The OpenAPI documents: valid OpenAPI 3.1, route for route and method for method the
same as each service's router, and merged for the gateway without leaking admin routes."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from services.common.openapi.spec import (
    ADMIN_PATH,
    Access,
    Operation,
    ServiceSpec,
    build_document,
    json_answer,
    link,
)
from services.common.settings import Settings
from tools.openapi import SERVICES, admin_document, public_document


def _seckill() -> web.Application:
    from services.seckill.app import create_app

    return create_app(Settings())


def _order() -> web.Application:
    from services.order.app import create_app

    return create_app(Settings())


def _groupbuy() -> web.Application:
    from services.groupbuy.app import create_app

    return create_app(Settings())


def _notify() -> web.Application:
    from services.notify.app import create_app

    return create_app(Settings())


def _identity() -> web.Application:
    from services.identity.app import create_app

    return create_app(Settings())


def _console() -> web.Application:
    from services.console.app import create_app

    return create_app(Settings())


def _coupon() -> web.Application:
    from services.coupon.app import create_app

    return create_app(Settings())


APPS: dict[str, Callable[[], web.Application]] = {
    "seckill": _seckill,
    "order": _order,
    "groupbuy": _groupbuy,
    "notify": _notify,
    "identity": _identity,
    "console": _console,
    "coupon": _coupon,
}
# aiohttp adds HEAD beside every GET; nothing here answers OPTIONS.
IMPLICIT = {"HEAD", "OPTIONS"}


def routed(app: web.Application) -> set[tuple[str, str]]:
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method not in IMPLICIT and route.resource is not None
    }


def described(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path) for path, methods in document["paths"].items() for method in methods
    }


def validate(document: dict[str, Any]) -> None:
    """openapi-spec-validator (requirements-dev.txt): fails in CI, skips elsewhere when
    it is not installed yet."""
    try:
        from openapi_spec_validator import validate as check
    except ImportError:
        message = "openapi-spec-validator is not installed: make install"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    check(document)


def test_every_service_is_described() -> None:
    assert set(SERVICES) == set(APPS)


@pytest.mark.parametrize("name", sorted(APPS))
def test_each_service_s_document_is_valid_openapi_3_1(name: str) -> None:
    document = SERVICES[name].document()
    assert document["openapi"] == "3.1.0"
    validate(document)


@pytest.mark.parametrize("build", [public_document, admin_document])
def test_the_gateway_s_merged_documents_are_valid_openapi_3_1(
    build: Callable[[], dict[str, Any]],
) -> None:
    validate(build())


@pytest.mark.parametrize("name", sorted(APPS))
def test_the_router_and_the_document_agree_route_for_route(name: str) -> None:
    """A route served but not described, or described but not served, fails here."""
    on_router = routed(APPS[name]())
    in_document = described(SERVICES[name].document())
    assert on_router - in_document == set(), f"{name}: routed but not in its document"
    assert in_document - on_router == set(), f"{name}: in its document but not routed"


def test_the_parity_check_names_a_route_missing_from_the_document() -> None:
    async def unsubscribe(_: web.Request) -> web.Response:
        return web.Response()

    app = _notify()
    app.router.add_delete("/api/notify/subscriptions/{id}", unsubscribe)
    missing = routed(app) - described(SERVICES["notify"].document())
    assert missing == {("DELETE", "/api/notify/subscriptions/{id}")}


def test_every_operation_id_is_unique_across_services() -> None:
    ids = [
        op["operationId"]
        for methods in admin_document()["paths"].values()
        for op in methods.values()
    ]
    assert len(ids) == len(set(ids)) == 65


def test_the_public_document_lists_no_admin_operation_and_every_public_one() -> None:
    public, admin = public_document(), admin_document()
    assert [path for path in public["paths"] if ADMIN_PATH.match(path)] == []
    assert [path for path in public["paths"] if path.startswith("/console")] == []
    expected = {
        path for path in admin["paths"] if path.startswith("/api/") and not ADMIN_PATH.match(path)
    }
    assert set(public["paths"]) == expected
    # No schema only admin operations use (the admin views) is left in it.
    assert "AdminActivity" not in public["components"]["schemas"]
    assert "AdminActivity" in admin["components"]["schemas"]


def test_admin_operations_need_a_role_and_public_ones_no_token() -> None:
    paths = admin_document()["paths"]
    reserve = paths["/api/seckill/activities/{id}/reservations"]["post"]
    assert reserve["security"] == [{"bearerAuth": []}]
    assert set(reserve["responses"]) >= {"201", "400", "401", "404", "409", "410", "413"}
    assert set(reserve["responses"]) >= {"415", "422", "429", "503"}
    assert "403" not in reserve["responses"]
    edit = paths["/api/seckill/admin/activities/{id}"]["patch"]
    assert edit["x-required-role"] == "operator"
    assert {"401", "403"} <= set(edit["responses"])
    assert paths["/api/auth/login"]["post"]["security"] == []
    assert paths["/api/openapi.json"]["get"]["security"] == []
    assert paths["/api/payments/callback"]["post"]["security"] == [{"paymentSignature": []}]
    live = paths["/api/orders/admin/live"]["get"]["responses"]["200"]
    assert list(live["content"]) == ["text/event-stream"]


def test_the_stateful_links_name_operations_of_the_merged_document() -> None:
    paths = admin_document()["paths"]
    ids = {op["operationId"] for methods in paths.values() for op in methods.values()}
    chains = {
        ("/api/seckill/admin/activities", "post", "201"): {"seckill_reserve"},
        ("/api/seckill/activities/{id}/reservations", "post", "201"): {
            "seckill_get_reservation",
            "order_get_order",
        },
        ("/api/seckill/reservations/{id}", "get", "200"): {"order_get_order"},
        ("/api/groupbuy/campaigns/{id}/groups", "post", "201"): {"groupbuy_join_group"},
        ("/api/auth/login", "post", "200"): {"identity_refresh"},
    }
    for (path, method, status), wanted in chains.items():
        links = paths[path][method]["responses"][status]["links"]
        targets = {one["operationId"] for one in links.values()}
        assert wanted <= targets <= ids, path


def test_a_link_to_an_operation_left_out_is_dropped() -> None:
    ping = Operation(
        "get",
        "/api/x/ping",
        "x_ping",
        "ping",
        Access.PUBLIC,
        {200: json_answer("pong", {"type": "object"}, links={"y": link("y_pong", "y")})},
    )
    spec = ServiceSpec("x", "x", "x", [ping], {}, "")
    answer = build_document([spec], title="x", description="x")["paths"]["/api/x/ping"]
    assert "links" not in answer["get"]["responses"]["200"]


def test_a_schema_defined_twice_differently_is_refused() -> None:
    one = ServiceSpec("a", "a", "a", [], {"Thing": {"type": "string"}}, "")
    other = ServiceSpec("b", "b", "b", [], {"Thing": {"type": "integer"}}, "")
    with pytest.raises(ValueError, match="Thing"):
        build_document([one, other], title="x", description="x")


def test_the_gateway_adds_its_own_answers_to_every_merged_operation() -> None:
    for methods in public_document()["paths"].values():
        for op in methods.values():
            assert {"429", "503"} <= set(op["responses"]), op["operationId"]
    own = SERVICES["seckill"].document()["paths"]["/api/seckill/activities"]["get"]
    assert "429" not in own["responses"]
