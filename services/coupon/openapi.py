"""The coupon service's OpenAPI document: every route of routes.add_routes, with the
bounds of domain.py's parsing (docs/api.md, docs/coupons.md)."""

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
    DATABASE_UNAVAILABLE,
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
from services.common.validation import MAX_BIGINT
from services.coupon.domain import (
    CLAIM_STATUSES,
    COUPON_STATES,
    EDITABLE_FIELDS,
    MAX_CENTS,
    MAX_NAME_LENGTH,
    MAX_PER_USER_LIMIT,
    MAX_QUANTITY,
    MAX_SCOPE_IDS,
    MAX_SKU_LENGTH,
    MAX_VALID_DAYS,
    NOT_CLAIMABLE_STATUS,
    TEMPLATE_STATES,
    Validity,
)
from services.coupon.lifecycle_openapi import OPERATIONS as LIFECYCLE_OPERATIONS
from services.coupon.lifecycle_openapi import SCHEMAS as LIFECYCLE_SCHEMAS
from services.coupon.routes import ADMIN_PATH, COUPONS_PATH, TEMPLATE_PATH
from services.coupon.terms import Kind, Scope

TEMPLATE_ID = path_param(
    "id", bigint_id(), "The template id (anything else is answered 404 not_found)."
)

_FIELDS: dict[str, Schema] = {
    "name": text(MAX_NAME_LENGTH),
    "kind": enum(Kind, description="amount_off (满减), percent_off (折扣), no_threshold (无门槛)"),
    "threshold_cents": integer(
        0,
        MAX_CENTS,
        description="amount_off: required, above amount_off_cents; percent_off: "
        "optional (0); no_threshold: not taken",
    ),
    "amount_off_cents": integer(1, MAX_CENTS, description="amount_off and no_threshold only"),
    "percent_off": integer(1, 99, description="percent_off only"),
    "max_discount_cents": integer(1, MAX_CENTS, description="percent_off only"),
    "validity": enum(Validity),
    "valid_from": timestamp(description="fixed validity only"),
    "valid_until": timestamp(description="fixed validity only: after valid_from, in the future"),
    "valid_days": integer(
        1, MAX_VALID_DAYS, description="relative validity only: days from the coupon's issue"
    ),
    "quantity": integer(1, MAX_QUANTITY, description="issued by claims and grants together"),
    "per_user_limit": integer(1, MAX_PER_USER_LIMIT, default=1, description="claims per shopper"),
    "claimable": boolean(default=True, description="false: only granted by rules"),
    "claim_starts_at": timestamp(description="claimable only"),
    "claim_ends_at": timestamp(
        description="claimable only: after claim_starts_at, in the future, not after valid_until"
    ),
    "scope": enum(Scope, default=Scope.ANY.value),
    "scope_ids": array(
        {
            "anyOf": [
                integer(1, MAX_BIGINT),
                string(minLength=1, maxLength=max(MAX_SKU_LENGTH, len(str(MAX_BIGINT)))),
            ]
        },
        minItems=1,
        maxItems=MAX_SCOPE_IDS,
        description="with scope activities / campaigns (ids, as numbers or digit strings) or "
        f"skus (1 to {MAX_SKU_LENGTH} characters); not with scope any",
    ),
    "usable_on_flash_sales": boolean(default=False),
}

_TERMS: dict[str, Schema] = {
    "kind": enum(Kind),
    "threshold_cents": integer(0),
    "amount_off_cents": nullable(integer(1)),
    "percent_off": nullable(integer(1, 99)),
    "max_discount_cents": nullable(integer(1)),
    "scope": enum(Scope),
    "scope_ids": array(string()),
    "usable_on_flash_sales": boolean(),
}
_TEMPLATE_VIEW: dict[str, Schema] = {
    "id": bigint_id(),
    "name": string(),
    **_TERMS,
    "validity": enum(Validity),
    "valid_from": nullable(timestamp()),
    "valid_until": nullable(timestamp()),
    "valid_days": nullable(integer(1, MAX_VALID_DAYS)),
    "quantity": integer(1),
    "remaining": integer(0),
    "per_user_limit": integer(1),
    "claimable": boolean(),
    "claim_starts_at": nullable(timestamp()),
    "claim_ends_at": nullable(timestamp()),
    "status": enum([*CLAIM_STATUSES, NOT_CLAIMABLE_STATUS]),
}
_ADMIN_VIEW: dict[str, Schema] = {
    **_TEMPLATE_VIEW,
    "state": enum(sorted(TEMPLATE_STATES)),
    "ended_early_at": nullable(timestamp()),
    "warm_up": enum(["pending", "done"]),
    "created_by": string(),
    "created_at": nullable(timestamp()),
}
_EMPTY = obj({}, [], description="No fields: `{}` or no body at all.")

SCHEMAS: dict[str, Schema] = {
    "NewCouponTemplate": obj(
        _FIELDS,
        ["name", "kind", "validity", "quantity"],
        description="Which fields each kind, validity and claimability takes is above; a "
        "field that does not apply is refused (400 naming it), never ignored.",
        examples=[
            {
                "name": "30 off 200",
                "kind": "amount_off",
                "amount_off_cents": 3000,
                "threshold_cents": 20000,
                "validity": "relative",
                "valid_days": 7,
                "quantity": 500,
                "claim_starts_at": "2030-06-01T10:00:00Z",
                "claim_ends_at": "2030-06-01T12:00:00Z",
            }
        ],
    ),
    "CouponTemplateEdit": obj(
        {name: _FIELDS[name] for name in EDITABLE_FIELDS},
        [],
        description="Any non-empty subset of the editable fields, validated on the template "
        "as it would become; `kind`, `validity` and `claimable` cannot change (400 naming "
        "them). A new `scope` without `scope_ids` drops the old ids.",
    ),
    "CouponTemplate": obj(_TEMPLATE_VIEW),
    "CouponTemplateWarmUpPending": obj(
        {**_TEMPLATE_VIEW, "warm_up": const("pending"), "message": string()},
        description="Recorded, not yet in Redis: loaded as soon as Redis answers.",
    ),
    "AdminCouponTemplate": obj(_ADMIN_VIEW),
    "AdminCouponTemplateWithFigures": obj({**_ADMIN_VIEW, "figures": ref("CouponFigures")}),
    "CouponFigures": obj(
        {
            "template_id": bigint_id(),
            "state": enum(sorted(TEMPLATE_STATES)),
            "quantity": integer(1),
            "remaining": nullable(integer(0)),
            "issued": nullable(integer(0)),
            "claimed": integer(0),
            "granted": integer(0),
            "available": integer(0),
            "locked": integer(0),
            "used": integer(0),
            "expired": integer(0),
            "revoked": integer(0),
            "at": timestamp(),
        }
    ),
    "ClaimedCoupon": obj(
        {
            "coupon_id": owned_id(),
            "template_id": bigint_id(),
            "valid_from": timestamp(),
            "valid_until": timestamp(),
            "state": const("available"),
        }
    ),
    "HeldCoupon": obj(
        {
            "coupon_id": owned_id(),
            "template_id": bigint_id(),
            "name": string(),
            "state": enum(COUPON_STATES),
            "origin": enum(["claim", "grant"]),
            "valid_from": timestamp(),
            "valid_until": timestamp(),
            "issued_at": timestamp(),
            "order_id": nullable(string(format="uuid")),
            "discount_cents": nullable(integer(1)),
            **_TERMS,
        }
    ),
}

_NOT_FOUND = "`not_found`: no such template"
_WARM = "`warm_up_pending`: not loaded into Redis yet"
_CLAIM_UNANSWERED = (
    "`outcome_unknown`: Redis did not answer, the claim may have been made (`coupon_id` "
    "names the coupon it would be; retry with the same Idempotency-Key)"
)


def _admin_change(
    method: str, suffix: str, operation_id: str, summary: str, conflicts: str, **kw: Any
) -> Operation:
    return Operation(
        method,
        ADMIN_PATH + "/{id}" + suffix,
        operation_id,
        summary,
        Access.OPERATOR,
        {200: json_answer("The template as it is now (admin view).", ref("AdminCouponTemplate"))},
        {404: _NOT_FOUND, 409: f"{conflicts}; {_WARM}"},
        parameters=[TEMPLATE_ID],
        **kw,
    )


OPERATIONS = [
    Operation(
        "post",
        ADMIN_PATH,
        "coupon_create_template",
        "Create a coupon template",
        Access.OPERATOR,
        {
            201: json_answer(
                "Created, its quantity in Redis.",
                ref("CouponTemplate"),
                headers={"Location": "Location"},
                links={
                    "claim": link("coupon_claim", "Claim one.", id="$response.body#/id"),
                    "get": link("coupon_get_template", "Read it.", id="$response.body#/id"),
                },
            ),
            202: json_answer(
                "Created; its quantity reaches Redis as soon as Redis answers.",
                ref("CouponTemplateWarmUpPending"),
                headers={"Location": "Location"},
            ),
        },
        description="Audited as `template.create`.",
        body=ref("NewCouponTemplate"),
    ),
    Operation(
        "get",
        ADMIN_PATH,
        "coupon_admin_list_templates",
        "List coupon templates, newest first",
        Access.VIEWER,
        {
            200: json_answer(
                "One page.",
                page_view("templates", ref("AdminCouponTemplate"), MAX_LIMIT, MAX_OFFSET),
            )
        },
        {400: "`invalid_request`: a bad or unknown query parameter (`field` names it)"},
        description=UNKNOWN_QUERY,
        parameters=[
            filter_param("state", enum(sorted(TEMPLATE_STATES)), "only templates in this state"),
            *paging_parameters(),
        ],
    ),
    Operation(
        "get",
        ADMIN_PATH + "/{id}",
        "coupon_admin_get_template",
        "One template with its figures",
        Access.VIEWER,
        {200: json_answer("The admin view and `figures`.", ref("AdminCouponTemplateWithFigures"))},
        {404: _NOT_FOUND},
        parameters=[TEMPLATE_ID],
    ),
    _admin_change(
        "patch",
        "",
        "coupon_admin_edit_template",
        "Edit a template before its claims open, while nothing is issued",
        "`already_started`; `already_issued` (with `issued_units`); `sale_closed`",
        body=ref("CouponTemplateEdit"),
        description="Audited as `template.edit` with the changed fields only.",
    ),
    _admin_change(
        "put",
        "/quantity",
        "coupon_admin_set_quantity",
        "Set the template's quantity",
        "`below_issued` (with `issued_units`); `sale_closed`",
        body=obj({"quantity": integer(1, MAX_QUANTITY)}),
        description="The same quantity again changes nothing. Audited as `template.quantity`.",
    ),
    _admin_change(
        "post",
        "/end",
        "coupon_admin_end_template",
        "End a template now: no claim and no grant from now",
        "(none but warm-up)",
        body=_EMPTY,
        body_required=False,
        description="A repeat answers the template unchanged. Audited as `template.end`.",
    ),
    Operation(
        "get",
        ADMIN_PATH + "/{id}/audit",
        "coupon_admin_template_audit",
        "The template's audit log, newest first",
        Access.VIEWER,
        {200: json_answer("At most 200 entries.", audit_log())},
        {404: _NOT_FOUND},
        parameters=[TEMPLATE_ID],
    ),
    Operation(
        "get",
        ADMIN_PATH + "/{id}/live",
        "coupon_admin_template_live",
        "The template's figures as Server-Sent Events",
        Access.VIEWER,
        {
            200: event_stream(
                "`retry: 1000`, then `event: figures` (data: CouponFigures) at once and "
                "every 0.25 s; `event: unavailable` (data: Error) when a reading failed.",
                ref("CouponFigures"),
            )
        },
        {
            404: _NOT_FOUND,
            503: "`too_many_streams`: this process serves as many boards as it may",
        },
        parameters=[TEMPLATE_ID],
    ),
    Operation(
        "get",
        TEMPLATE_PATH + "/{id}",
        "coupon_get_template",
        "One claimable template",
        Access.SHOPPER,
        {
            200: json_answer(
                "Its terms, validity, claim window and what is left.", ref("CouponTemplate")
            )
        },
        {404: f"{_NOT_FOUND} (or one only granted by rules)"},
        parameters=[TEMPLATE_ID],
    ),
    Operation(
        "post",
        TEMPLATE_PATH + "/{id}/claims",
        "coupon_claim",
        "Claim a coupon (抢券)",
        Access.SHOPPER,
        {
            201: json_answer(
                "Claimed: the coupon is the caller's, available within its validity.",
                ref("ClaimedCoupon"),
                headers={"Idempotent-Replayed": "IdempotentReplayed"},
                links={"mine": link("coupon_my_coupons", "The caller's coupons (once recorded).")},
            )
        },
        {
            404: f"{_NOT_FOUND} (or one only granted by rules)",
            409: "`not_started`; `limit_reached`",
            410: "`claim_ended`; `exhausted`",
            429: "`rate_limited`: claims too fast (Retry-After)",
            503: _CLAIM_UNANSWERED,
        },
        parameters=[TEMPLATE_ID],
        body=_EMPTY,
        body_required=False,
        idempotency_key=True,
        unavailable=REDIS_UNAVAILABLE,
    ),
    Operation(
        "get",
        COUPONS_PATH,
        "coupon_my_coupons",
        "The caller's coupons in one state, the soonest to end first",
        Access.SHOPPER,
        {
            200: json_answer(
                "One page, each coupon with its template's name and terms.",
                page_view("coupons", ref("HeldCoupon"), MAX_LIMIT, MAX_OFFSET),
            )
        },
        {400: "`invalid_request`: a bad or unknown query parameter (`field` names it)"},
        description="An available coupon past its end is listed as expired. " + UNKNOWN_QUERY,
        parameters=[
            filter_param("state", enum(COUPON_STATES), "coupons in this state (default available)"),
            *paging_parameters(),
        ],
        unavailable=DATABASE_UNAVAILABLE,
    ),
]


SPEC = ServiceSpec(
    title="Coupons (coupon)",
    tag="coupon",
    description="Coupon templates, claims (抢券) and the shopper's coupons, redemption on a "
    "pending order, and the merchant's template and 下单返券 rule admin.",
    operations=[*OPERATIONS, *LIFECYCLE_OPERATIONS],
    schemas={**SCHEMAS, **LIFECYCLE_SCHEMAS},
    unavailable=BOTH_UNAVAILABLE,
)
