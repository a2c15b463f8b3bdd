"""The seckill service's OpenAPI document: every route of routes.add_routes, with the
bounds of domain.py's parsing (docs/api.md)."""

from __future__ import annotations

from typing import Any

from services.common.openapi.schemas import (
    Schema,
    array,
    audit_log,
    bigint_id,
    boolean,
    const,
    enum,
    integer,
    nullable,
    obj,
    owned_id,
    page_view,
    ref,
    string,
    text,
    timestamp,
)
from services.common.openapi.spec import (
    BOTH_UNAVAILABLE,
    REDIS_UNAVAILABLE,
    UNKNOWN_QUERY,
    Access,
    Operation,
    ServiceSpec,
    event_stream,
    filter_param,
    json_answer,
    link,
    paging_parameters,
    path_param,
)
from services.common.paging import MAX_LIMIT, MAX_OFFSET
from services.common.sales import SaleState, Status
from services.seckill.domain import (
    EDITABLE_FIELDS,
    MAX_PAYMENT_TIMEOUT_SECONDS,
    MAX_PER_USER_LIMIT,
    MAX_PRICE_CENTS,
    MAX_STOCK,
)

ADMIN = "/api/seckill/admin/activities"
ACTIVITY_ID = path_param(
    "id", bigint_id(), "The activity id (anything else is answered 404 not_found)."
)

_FIELDS: dict[str, Schema] = {
    "sku": text(64, description="the product the orders are for"),
    "title": text(200),
    "price_cents": integer(0, MAX_PRICE_CENTS),
    "stock": integer(1, MAX_STOCK),
    "starts_at": timestamp(description="RFC 3339 with a zone, e.g. 2030-06-01T12:00:00Z"),
    "ends_at": timestamp(description="after starts_at, in the future"),
    "per_user_limit": integer(1, MAX_PER_USER_LIMIT, default=1),
    "payment_timeout_seconds": integer(1, MAX_PAYMENT_TIMEOUT_SECONDS, default=900),
}

NEW_ACTIVITY = obj(
    _FIELDS,
    ["sku", "title", "price_cents", "stock", "starts_at", "ends_at"],
    description="`ends_at` must be after `starts_at` and in the future (400 naming `ends_at`).",
    examples=[
        {
            "sku": "tea-set-01",
            "title": "Limited tea set",
            "price_cents": 8900,
            "stock": 120,
            "starts_at": "2030-06-01T12:00:00Z",
            "ends_at": "2030-06-01T13:00:00Z",
            "per_user_limit": 1,
            "payment_timeout_seconds": 900,
        }
    ],
)
EDIT = obj(
    {name: _FIELDS[name] for name in EDITABLE_FIELDS},
    [],
    minProperties=1,
    description="Any non-empty subset of the editable fields, each checked as on create; "
    "`sku` cannot change (400 naming it), `{}` is a 400 naming `body`.",
)

_ACTIVITY_VIEW: dict[str, Schema] = {
    "id": bigint_id(),
    "sku": string(),
    "title": string(),
    "price_cents": integer(0),
    "stock": integer(0),
    "remaining_stock": integer(0),
    "starts_at": timestamp(),
    "ends_at": timestamp(),
    "per_user_limit": integer(1),
    "payment_timeout_seconds": integer(1),
    "status": enum(Status, description="what a shopper sees (ended also when cancelled)"),
}
_ADMIN_VIEW: dict[str, Schema] = {
    **_ACTIVITY_VIEW,
    "state": enum(SaleState),
    "ended_early": boolean(),
    "cancelled_at": nullable(timestamp()),
    "warm_up": enum(["pending", "done"]),
    "created_at": nullable(timestamp()),
}
FIGURES = obj(
    {
        "activity_id": bigint_id(),
        "state": enum(SaleState),
        "stock": integer(0),
        "remaining": integer(0),
        "reserved_units": integer(),
        "reservations": integer(0),
        "presses": integer(0),
        "sold_out_answers": integer(0),
        "at": timestamp(),
    }
)

SCHEMAS: dict[str, Schema] = {
    "NewActivity": NEW_ACTIVITY,
    "ActivityEdit": EDIT,
    "Activity": obj(_ACTIVITY_VIEW),
    "ActivityWarmUpPending": obj(
        {
            **_ACTIVITY_VIEW,
            "warm_up": const("pending"),
            "message": string(),
        },
        description="Recorded, its stock not yet in Redis: loaded as soon as Redis "
        "answers. Do not create it again.",
    ),
    "AdminActivity": obj(_ADMIN_VIEW),
    "AdminActivityWithFigures": obj({**_ADMIN_VIEW, "figures": ref("ActivityFigures")}),
    "ActivityFigures": FIGURES,
    "Reservation": obj(
        {
            "reservation_id": owned_id(),
            "activity_id": bigint_id(),
            "quantity": integer(1, MAX_PER_USER_LIMIT),
            "pay_before": timestamp(),
            "order_id": string(format="uuid", description="the order it becomes"),
        }
    ),
    "ReservationState": obj(
        {
            "reservation_id": owned_id(),
            "activity_id": bigint_id(),
            "state": enum(["reserved", "released"]),
            "quantity": integer(1),
            "reserved_at": timestamp(),
            "pay_before": timestamp(),
            "order_id": string(format="uuid", description="the order it becomes"),
            "release_reason": string(description="why its stock was returned"),
        },
        [
            "reservation_id",
            "activity_id",
            "state",
            "quantity",
            "reserved_at",
            "pay_before",
            "order_id",
        ],
    ),
}

_SALE_ERRORS = {
    404: "`not_found`: no such activity",
    409: "`warm_up_pending`: its stock is not in Redis yet, retry shortly",
}


def _admin_change(
    method: str, suffix: str, operation_id: str, summary: str, conflicts: str, **kw: Any
) -> Operation:
    return Operation(
        method,
        ADMIN + "/{id}" + suffix,
        operation_id,
        summary,
        Access.OPERATOR,
        {200: json_answer("The activity as it is now (admin view).", ref("AdminActivity"))},
        {404: _SALE_ERRORS[404], 409: f"{conflicts}; {_SALE_ERRORS[409]}"},
        parameters=[ACTIVITY_ID],
        **kw,
    )


OPERATIONS = [
    Operation(
        "post",
        ADMIN,
        "seckill_create_activity",
        "Create a flash sale",
        Access.OPERATOR,
        {
            201: json_answer(
                "Created, its stock in Redis.",
                ref("Activity"),
                headers={"Location": "Location"},
                links={
                    "reserve": link(
                        "seckill_reserve", "Press on the new sale.", id="$response.body#/id"
                    ),
                    "get": link("seckill_get_activity", "Read it.", id="$response.body#/id"),
                },
            ),
            202: json_answer(
                "Created; its stock reaches Redis as soon as Redis answers.",
                ref("ActivityWarmUpPending"),
                headers={"Location": "Location"},
            ),
        },
        description="Audited as `activity.create`.",
        body=ref("NewActivity"),
    ),
    Operation(
        "get",
        ADMIN,
        "seckill_admin_list_activities",
        "List flash sales, newest start first",
        Access.VIEWER,
        {
            200: json_answer(
                "One page.",
                page_view("activities", ref("AdminActivity"), MAX_LIMIT, MAX_OFFSET),
            )
        },
        {400: "`invalid_request`: a bad or unknown query parameter (`field` names it)"},
        description=UNKNOWN_QUERY,
        parameters=[
            filter_param("state", enum(SaleState), "only sales in this state"),
            *paging_parameters(),
        ],
    ),
    Operation(
        "get",
        ADMIN + "/{id}",
        "seckill_admin_get_activity",
        "One flash sale with its live figures",
        Access.VIEWER,
        {200: json_answer("The admin view and `figures`.", ref("AdminActivityWithFigures"))},
        {404: _SALE_ERRORS[404]},
        parameters=[ACTIVITY_ID],
    ),
    _admin_change(
        "patch",
        "",
        "seckill_admin_edit_activity",
        "Edit an upcoming sale",
        "`already_started`, `sale_closed`",
        body=ref("ActivityEdit"),
        description="Audited as `activity.edit` with the changed fields only.",
    ),
    _admin_change(
        "put",
        "/stock",
        "seckill_admin_set_stock",
        "Set the total stock of an upcoming or live sale",
        "`below_reserved` (with `reserved_units`: the units already taken), `sale_closed`",
        body=obj({"stock": integer(1, MAX_STOCK)}),
        description="The same total again changes nothing. Audited as `activity.stock`.",
    ),
    _admin_change(
        "post",
        "/end",
        "seckill_admin_end_activity",
        "End a live sale now",
        "`not_live`",
        description="Again on a sale ended early: 200, unchanged. The body is ignored.",
    ),
    _admin_change(
        "post",
        "/cancel",
        "seckill_admin_cancel_activity",
        "Cancel an upcoming or live sale now",
        "`sale_closed`",
        description="Publishes `seckill.cancelled` once; again: 200, unchanged. The body "
        "is ignored.",
    ),
    Operation(
        "get",
        ADMIN + "/{id}/audit",
        "seckill_admin_activity_audit",
        "The sale's audit log, newest first",
        Access.VIEWER,
        {200: json_answer("At most 200 entries.", audit_log())},
        {404: _SALE_ERRORS[404]},
        parameters=[ACTIVITY_ID],
    ),
    Operation(
        "get",
        ADMIN + "/{id}/live",
        "seckill_admin_activity_live",
        "The sale's figures as Server-Sent Events",
        Access.VIEWER,
        {
            200: event_stream(
                "`retry: 1000`, then `event: figures` (data: ActivityFigures) at once and "
                "every 0.25 s; `event: unavailable` (data: Error) when a reading failed. "
                "Ends after an hour.",
                ref("ActivityFigures"),
            )
        },
        {
            404: _SALE_ERRORS[404],
            503: "`too_many_streams`: this process serves as many boards as it may",
        },
        parameters=[ACTIVITY_ID],
    ),
    Operation(
        "get",
        "/api/seckill/activities",
        "seckill_list_activities",
        "Sales not yet ended",
        Access.SHOPPER,
        {200: json_answer("At most 100.", obj({"activities": array(ref("Activity"))}))},
    ),
    Operation(
        "get",
        "/api/seckill/activities/{id}",
        "seckill_get_activity",
        "One sale",
        Access.SHOPPER,
        {200: json_answer("The sale with its remaining stock.", ref("Activity"))},
        {404: _SALE_ERRORS[404]},
        parameters=[ACTIVITY_ID],
    ),
    Operation(
        "post",
        "/api/seckill/activities/{id}/reservations",
        "seckill_reserve",
        "Press: reserve units of a sale",
        Access.SHOPPER,
        {
            201: json_answer(
                "Reserved; pay before `pay_before` (the order `order_id` follows).",
                ref("Reservation"),
                headers={"Location": "Location", "Idempotent-Replayed": "IdempotentReplayed"},
                links={
                    "get_reservation": link(
                        "seckill_get_reservation",
                        "Its state.",
                        id="$response.body#/reservation_id",
                    ),
                    "get_order": link(
                        "order_get_order",
                        "Its order (404 until the order service created it).",
                        id="$response.body#/order_id",
                    ),
                },
            )
        },
        {
            404: "`not_found`: no such activity",
            409: "`not_started`; `limit_reached`: the caller holds the most allowed",
            410: "`sold_out`; `sale_ended` (also ended early); `sale_cancelled`",
            422: "`idempotency_key_reused`: the key's first press had another quantity",
            429: "`rate_limited`: too many presses by this user",
            503: "`outcome_unknown`: Redis did not answer, the press may have been applied "
            "(`check` names the reservation to read, `reservation_id` its id)",
        },
        description="One Redis script: sale window, per-user limit and rate, stock. A "
        "refusal with an Idempotency-Key is replayed like a success.",
        parameters=[ACTIVITY_ID],
        body=obj({"quantity": integer(1, MAX_PER_USER_LIMIT, default=1)}, []),
        body_required=False,
        idempotency_key=True,
        unavailable=REDIS_UNAVAILABLE,
    ),
    Operation(
        "get",
        "/api/seckill/reservations/{id}",
        "seckill_get_reservation",
        "One of the caller's reservations",
        Access.SHOPPER,
        {
            200: json_answer(
                "Its state.",
                ref("ReservationState"),
                links={
                    "get_order": link(
                        "order_get_order",
                        "Its order (404 until the order service created it).",
                        id="$response.body#/order_id",
                    )
                },
            )
        },
        {404: "`not_found`: no such reservation, or another user's"},
        parameters=[
            path_param("id", owned_id(), "`<activity id>-<32 hex>` (anything else: 404 not_found)")
        ],
        unavailable=REDIS_UNAVAILABLE,
    ),
]


SPEC = ServiceSpec(
    title="Flash sales (seckill)",
    tag="seckill",
    description="Activities, reservations (the hot path) and the merchant's sale admin.",
    operations=OPERATIONS,
    schemas=SCHEMAS,
    unavailable=BOTH_UNAVAILABLE,
)
