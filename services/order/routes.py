"""HTTP views of the order service: parse, call, map."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from services.common.auth import OPERATOR_ROLE, VIEWER_ROLE
from services.common.errors import DomainError, NotFound
from services.common.http import (
    json_response,
    principal,
    read_body,
    read_json_object,
    require_role,
)
from services.common.idempotency import IDEMPOTENCY_KEY_HEADER, parse_idempotency_key
from services.common.live import FiguresCache, stream_figures
from services.common.settings import Settings
from services.common.validation import parse_empty_body
from services.order.domain import (
    SaleRef,
    admin_order_detail,
    admin_order_view,
    figures_view,
    order_view,
    parse_list_limit,
    parse_order_id,
    parse_order_search,
    parse_refund_id,
    parse_sale_ref,
    payment_view,
)
from services.order.payments import (
    SIGNATURE_HEADER,
    PaymentOutcome,
    is_transaction_id,
    parse_notice,
    verify_signature,
)
from services.order.repository import OrderRepository

log = logging.getLogger(__name__)

ORDERS: web.AppKey[OrderRepository] = web.AppKey("orders", OrderRepository)
PAYMENT_CALLBACK = "/api/payments/callback"


class PaymentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.callbacks = Counter(
            "order_payment_callbacks_total",
            "Payment callbacks by result (paid, refund_requested, replayed, invalid_signature, "
            "amount_mismatch, ...).",
            ["result"],
            registry=registry,
        )
        self.late = Counter(
            "order_late_payments_total",
            "Payments for orders already cancelled or paid: refunded, never applied.",
            ["reason"],
            registry=registry,
        )


@dataclass(frozen=True)
class PaymentCallbackContext:
    settings: Settings
    metrics: PaymentMetrics


PAYMENTS: web.AppKey[PaymentCallbackContext] = web.AppKey("payments", PaymentCallbackContext)
# One reading per sale per interval, shared by every live board open on this process.
FIGURES: web.AppKey[FiguresCache[SaleRef]] = web.AppKey("figures", FiguresCache)


async def get_order(request: web.Request) -> web.Response:
    order_id = parse_order_id(request.match_info["id"])
    order = None if order_id is None else await request.app[ORDERS].get(order_id)
    who = principal(request)
    # Another user's order is answered like a missing one: order ids do not leak.
    if order is None or (order.user_id != who.user_id and not who.is_admin):
        raise NotFound("order")
    return json_response(order_view(order))


async def list_orders(request: web.Request) -> web.Response:
    limit = parse_list_limit(request.query.get("limit"))
    orders = await request.app[ORDERS].list_for_user(principal(request).user_id, limit)
    return json_response({"orders": [order_view(o) for o in orders]})


async def cancel_order(request: web.Request) -> web.Response:
    """Idempotent by nature: cancelling a cancelled order answers it as it is, and its
    cancellation (and order.cancelled) happened once. An Idempotency-Key is checked like
    everywhere else, so a client can send one on every POST, and needs no record: the
    retry's answer is the order's current state (docs/idempotency.md)."""
    parse_idempotency_key(request.headers.getall(IDEMPOTENCY_KEY_HEADER, []))
    order_id = parse_order_id(request.match_info["id"])
    if order_id is None:
        raise NotFound("order")
    parse_empty_body(await read_json_object(request))
    order = await request.app[ORDERS].cancel_by_user(order_id, principal(request).user_id)
    return json_response(order_view(order))


async def payment_callback(request: web.Request) -> web.Response:
    """The payment provider's notification. Authenticated by its HMAC signature (no JWT);
    idempotent on the provider's transaction id, its own idempotency key: an
    Idempotency-Key header is ignored, never a reason to refuse a payment."""
    ctx = request.app[PAYMENTS]
    raw = await read_body(request)
    try:
        verify_signature(
            ctx.settings.payment_webhook_secret,
            request.headers.get(SIGNATURE_HEADER),
            raw,
            datetime.now(UTC),
            ctx.settings.payment_signature_max_age_seconds,
        )
    except DomainError as exc:
        ctx.metrics.callbacks.labels(exc.code).inc()
        log.warning("payment callback refused: %s", exc.message)
        raise
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        ctx.metrics.callbacks.labels("invalid_json").inc()
        raise DomainError(400, "invalid_json", "the body must be a JSON object")
    try:
        notice = parse_notice(body)
        outcome, replayed = await request.app[ORDERS].apply_payment(notice)
    except DomainError as exc:
        ctx.metrics.callbacks.labels(exc.code).inc()
        log.warning("payment callback refused: %s %s", exc.code, exc.message)
        raise
    ctx.metrics.callbacks.labels("replayed" if replayed else outcome.value).inc()
    if outcome is PaymentOutcome.REFUND_REQUESTED and not replayed:
        ctx.metrics.late.labels("order_not_payable").inc()
        log.warning(
            "payment %s for order %s not applied: refund requested",
            notice.transaction_id,
            notice.order_id,
        )
    return json_response(
        {
            "order_id": str(notice.order_id),
            "transaction_id": notice.transaction_id,
            "result": outcome.value,
            "replayed": replayed,
        }
    )


# --- the merchant console (docs/admin-api.md, "Orders") --------------------------------


async def admin_search_orders(request: web.Request) -> web.Response:
    require_role(request, VIEWER_ROLE)
    search = parse_order_search(request.query)
    orders, total = await request.app[ORDERS].search(search)
    return json_response(search.page.view("orders", [admin_order_view(o) for o in orders], total))


async def admin_get_order(request: web.Request) -> web.Response:
    require_role(request, VIEWER_ROLE)
    order_id = parse_order_id(request.match_info["id"])
    found = None if order_id is None else await request.app[ORDERS].with_payments(order_id)
    if found is None:
        raise NotFound("order")
    return json_response(admin_order_detail(*found))


async def admin_mark_refunded(request: web.Request) -> web.Response:
    """An operator confirmed at the payment provider that this payment was refunded."""
    who = require_role(request, OPERATOR_ROLE)
    transaction_id = request.match_info["transaction_id"]
    if not is_transaction_id(transaction_id):
        raise NotFound("payment")
    refund_id = parse_refund_id(await read_json_object(request))
    payment, order = await request.app[ORDERS].mark_refunded(transaction_id, refund_id, who.user_id)
    return json_response(payment_view(payment, order))


async def read_figures(orders: OrderRepository, sale: SaleRef) -> dict[str, Any]:
    return figures_view(sale, await orders.sale_counts(sale), datetime.now(UTC))


async def admin_figures(request: web.Request) -> web.Response:
    require_role(request, VIEWER_ROLE)
    sale = parse_sale_ref(request.query)
    return json_response(await read_figures(request.app[ORDERS], sale))


async def admin_live(request: web.Request) -> web.StreamResponse:
    require_role(request, VIEWER_ROLE)
    sale = parse_sale_ref(request.query)
    figures = request.app[FIGURES]
    return await stream_figures(request, lambda: figures.get(sale))


def add_routes(app: web.Application) -> None:
    # Before /api/orders/{id}...: "admin" is not an order id.
    app.router.add_get("/api/orders/admin/orders", admin_search_orders)
    app.router.add_get("/api/orders/admin/orders/{id}", admin_get_order)
    app.router.add_post("/api/orders/admin/payments/{transaction_id}/refund", admin_mark_refunded)
    app.router.add_get("/api/orders/admin/figures", admin_figures)
    app.router.add_get("/api/orders/admin/live", admin_live)
    app.router.add_get("/api/orders", list_orders)
    app.router.add_get("/api/orders/{id}", get_order)
    app.router.add_post("/api/orders/{id}/cancel", cancel_order)
    app.router.add_post(PAYMENT_CALLBACK, payment_callback)
