"""The order service's OpenAPI document: every route of routes.add_routes, with the
bounds of domain.py's and payments.py's parsing (docs/api.md)."""

from __future__ import annotations

from services.common.openapi.schemas import (
    Schema,
    array,
    bigint_id,
    boolean,
    const,
    enum,
    integer,
    nullable,
    obj,
    page_view,
    ref,
    string,
    timestamp,
)
from services.common.openapi.spec import (
    DATABASE_UNAVAILABLE,
    UNKNOWN_QUERY,
    Access,
    Operation,
    ServiceSpec,
    event_stream,
    filter_param,
    json_answer,
    paging_parameters,
    path_param,
    query_param,
)
from services.common.paging import MAX_LIMIT, MAX_OFFSET
from services.common.validation import MAX_BIGINT
from services.order.domain import (
    MAX_LIST_LIMIT,
    MAX_REFUND_ID,
    MAX_USER_ID,
    CancelReason,
    GroupState,
    RefundState,
    Source,
    State,
)
from services.order.payments import PaymentOutcome

ADMIN = "/api/orders/admin"
UUID = string(format="uuid")
ORDER_ID = path_param("id", UUID, "The order id (anything else is answered 404 not_found).")

_ORDER: dict[str, Schema] = {
    "id": UUID,
    "reservation_id": string(description="the reservation, or `<group id>:<user>`"),
    "activity_id": bigint_id(description="the flash sale or the group-buy campaign"),
    "sku": string(),
    "quantity": integer(1),
    "unit_price_cents": integer(0),
    "amount_cents": integer(
        0, description="what the order costs: the price times the quantity, less discount_cents"
    ),
    "state": enum(State),
    "cancel_reason": nullable(enum(CancelReason)),
    "reserved_at": timestamp(),
    "pay_before": timestamp(),
    "created_at": timestamp(),
    "paid_at": nullable(timestamp()),
    "cancelled_at": nullable(timestamp()),
    "source": enum(Source),
    "group_id": nullable(string()),
    "group_state": nullable(enum(GroupState)),
    "discount_cents": integer(0, description="what its coupon takes off (0: no coupon)"),
    "coupon_id": nullable(string(description="the coupon applied to the order (docs/coupons.md)")),
}
_ADMIN_ORDER: dict[str, Schema] = {**_ORDER, "user_id": string()}
_SALE_PARAMS = [
    query_param("source", enum(Source), "seckill or groupbuy", required=True),
    query_param("sale_id", bigint_id(), "the activity or campaign id", required=True),
]
_SALE_ERRORS = {
    400: "`invalid_request`: `source` or `sale_id` missing or bad, or an unknown "
    "parameter (`field` names it)"
}

SCHEMAS: dict[str, Schema] = {
    "Order": obj(_ORDER),
    "AdminOrder": obj(_ADMIN_ORDER),
    "AdminOrderDetail": obj(
        {
            **_ADMIN_ORDER,
            "history": array(
                obj(
                    {
                        "at": timestamp(),
                        "event": enum(
                            ["created", "paid", "cancelled", "payment_refund_requested", "refunded"]
                        ),
                        "transaction_id": string(),
                        "reason": nullable(string()),
                        "refund_id": nullable(string()),
                        "by": nullable(string()),
                    },
                    ["at", "event"],
                ),
                description="oldest first",
            ),
            "payments": array(ref("Payment"), description="oldest first"),
        }
    ),
    "Payment": obj(
        {
            "transaction_id": string(),
            "order_id": UUID,
            "amount_cents": integer(1),
            "outcome": enum(["applied", "refund_requested"]),
            "received_at": timestamp(),
            "refund_state": enum(RefundState),
            "refund_reason": nullable(string()),
            "refund_id": nullable(string()),
            "refunded_at": nullable(timestamp()),
            "refunded_by": nullable(string()),
        }
    ),
    "OrderFigures": obj(
        {
            "source": enum(Source),
            "sale_id": bigint_id(),
            "created": integer(0),
            **{state.value: integer(0) for state in State},
            "at": timestamp(),
        }
    ),
    "PaymentNotice": obj(
        {
            "transaction_id": string(minLength=1, maxLength=64),
            "order_id": UUID,
            "amount_cents": integer(1, MAX_BIGINT),
            "status": const("success"),
            "paid_at": timestamp(),
        }
    ),
    "PaymentResult": obj(
        {
            "order_id": UUID,
            "transaction_id": string(),
            "result": enum(PaymentOutcome),
            "replayed": boolean(description="this transaction was recorded before"),
        }
    ),
}

OPERATIONS = [
    Operation(
        "get",
        ADMIN + "/orders",
        "order_admin_search_orders",
        "Search orders, newest first",
        Access.VIEWER,
        {
            200: json_answer(
                "One page.", page_view("orders", ref("AdminOrder"), MAX_LIMIT, MAX_OFFSET)
            )
        },
        {400: "`invalid_request`: a bad or unknown query parameter (`field` names it)"},
        description="Every filter optional; they combine. " + UNKNOWN_QUERY,
        parameters=[
            filter_param("order_id", UUID, "one order"),
            filter_param("user_id", string(maxLength=MAX_USER_ID), "one shopper's"),
            filter_param("source", enum(Source), "seckill or groupbuy"),
            filter_param("sale_id", bigint_id(), "the activity or campaign"),
            filter_param("state", enum(State), "orders in this state"),
            *paging_parameters(),
        ],
    ),
    Operation(
        "get",
        ADMIN + "/orders/{id}",
        "order_admin_get_order",
        "One order with its history and payments",
        Access.VIEWER,
        {200: json_answer("The order.", ref("AdminOrderDetail"))},
        {404: "`not_found`: no such order"},
        parameters=[ORDER_ID],
    ),
    Operation(
        "post",
        ADMIN + "/payments/{transaction_id}/refund",
        "order_admin_mark_refunded",
        "Mark a requested refund as paid out by the provider",
        Access.OPERATOR,
        {200: json_answer("The payment (the same marking again: unchanged).", ref("Payment"))},
        {
            404: "`not_found`: no payment with this transaction id",
            409: "`already_refunded`: marked with another refund_id; "
            "`refund_not_requested`: the payment stands",
        },
        description="Audited as `payment.refund`.",
        parameters=[path_param("transaction_id", string(), "the provider's transaction id")],
        body=obj(
            {
                "refund_id": string(
                    minLength=1,
                    maxLength=MAX_REFUND_ID,
                    pattern=r"^\S(.*\S)?$",
                    description="the provider's refund reference: printable, no surrounding spaces",
                )
            }
        ),
    ),
    Operation(
        "get",
        ADMIN + "/figures",
        "order_admin_figures",
        "Order counts of one sale by state",
        Access.VIEWER,
        {200: json_answer("`created` counts every order of the sale.", ref("OrderFigures"))},
        _SALE_ERRORS,
        parameters=_SALE_PARAMS,
    ),
    Operation(
        "get",
        ADMIN + "/live",
        "order_admin_live",
        "Order counts of one sale as Server-Sent Events",
        Access.VIEWER,
        {
            200: event_stream(
                "`retry: 1000`, then `event: figures` (data: OrderFigures) at once and "
                "every 0.25 s; `event: unavailable` (data: Error) when a reading failed.",
                ref("OrderFigures"),
            )
        },
        {
            **_SALE_ERRORS,
            503: "`too_many_streams`: this process serves as many boards as it may",
        },
        parameters=_SALE_PARAMS,
    ),
    Operation(
        "get",
        "/api/orders",
        "order_list_orders",
        "The caller's orders, newest first",
        Access.SHOPPER,
        {200: json_answer("At most `limit`.", obj({"orders": array(ref("Order"))}))},
        {400: "`invalid_request`: `limit` out of range"},
        parameters=[
            query_param("limit", integer(1, MAX_LIST_LIMIT, default=20), "how many"),
        ],
    ),
    Operation(
        "get",
        "/api/orders/{id}",
        "order_get_order",
        "One of the caller's orders",
        Access.SHOPPER,
        {200: json_answer("The order.", ref("Order"))},
        {404: "`not_found`: no such order, or another user's"},
        parameters=[ORDER_ID],
    ),
    Operation(
        "post",
        "/api/orders/{id}/cancel",
        "order_cancel_order",
        "Cancel one of the caller's unpaid orders",
        Access.SHOPPER,
        {200: json_answer("The order, cancelled (also when it already was).", ref("Order"))},
        {
            404: "`not_found`: no such order, or another user's",
            409: "`not_cancellable`: paid; `group_open`: its group has not completed",
        },
        description="Safe to repeat; an Idempotency-Key is checked but needs no record. "
        "The body is ignored.",
        parameters=[ORDER_ID],
        idempotency_key=True,
    ),
    Operation(
        "post",
        "/api/payments/callback",
        "order_payment_callback",
        "The payment provider's notification",
        Access.SIGNED,
        {
            200: json_answer(
                "Applied, refund requested, or a replay of either.", ref("PaymentResult")
            )
        },
        {
            401: "`invalid_signature`: missing, malformed or not of this body; "
            "`stale_signature`: too old or in the future",
            404: "`not_found`: no such order",
            409: "`amount_mismatch`: not the order's amount (with a coupon, the discounted "
            "one); `transaction_reused`: this transaction paid another order",
        },
        description="Idempotent on `transaction_id`. A payment of a cancelled or already "
        "paid order is never applied: its refund is requested. The signature covers the "
        "raw body, so its media type is not checked.",
        body=ref("PaymentNotice"),
        json_body=False,
    ),
]


SPEC = ServiceSpec(
    title="Orders (order)",
    tag="order",
    description="The shopper's orders, the payment callback and the merchant's order "
    "search, refunds and figures.",
    operations=OPERATIONS,
    schemas=SCHEMAS,
    unavailable=DATABASE_UNAVAILABLE,
)
