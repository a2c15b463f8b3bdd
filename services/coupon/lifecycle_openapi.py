"""The OpenAPI operations of redemption and the 下单返券 rules' admin (redemption_routes.py,
rule_routes.py), with the bounds of lifecycle_domain.py and rules_domain.py; the
service's document (openapi.py) includes them."""

from __future__ import annotations

from services.common.openapi.schemas import (
    Schema,
    audit_log,
    bigint_id,
    boolean,
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
    DATABASE_UNAVAILABLE,
    UNKNOWN_QUERY,
    Access,
    Operation,
    filter_param,
    json_answer,
    paging_parameters,
    path_param,
)
from services.common.paging import MAX_LIMIT, MAX_OFFSET
from services.common.validation import MAX_BIGINT
from services.coupon.lifecycle_domain import MAX_COUPON_ID, Trigger
from services.coupon.redemption_routes import REDEMPTION_PATH
from services.coupon.rule_routes import RULES_PATH
from services.coupon.rules_domain import MAX_NAME

RULE_ID = path_param("id", bigint_id(), "The rule id (anything else is answered 404 not_found).")
_RULE_NOT_FOUND = "`not_found`: no such rule"

SCHEMAS: dict[str, Schema] = {
    "CouponRedemption": obj(
        {
            "coupon_id": string(
                minLength=1,
                maxLength=MAX_COUPON_ID,
                description="One of the caller's coupons (anything that names none is 404)",
            )
        },
        examples=[{"coupon_id": "7-0123456789abcdef0123456789abcdef"}],
    ),
    "CouponLock": obj(
        {
            "order_id": string(format="uuid"),
            "coupon_id": owned_id(),
            "amount_cents": integer(1, description="the order's price, before the coupon"),
            "discount_cents": integer(1),
            "amount_due_cents": integer(1, description="what the payment must be: at least 1"),
        }
    ),
    "NewGrantRule": obj(
        {
            "name": text(MAX_NAME),
            "trigger": enum(
                Trigger,
                description="any: every paid order; activity: paid orders of one flash sale; "
                "campaign: paid orders of one group-buy campaign",
            ),
            "sale_id": integer(
                1, MAX_BIGINT, description="the activity or campaign id; not with trigger any"
            ),
            "template_id": bigint_id(description="the coupon template granted (must exist)"),
            "active": boolean(default=True),
        },
        ["name", "trigger", "template_id"],
        examples=[
            {
                "name": "10 off after the tea sale",
                "trigger": "activity",
                "sale_id": 42,
                "template_id": 7,
            }
        ],
    ),
    "GrantRuleEdit": obj(
        {"name": text(MAX_NAME), "active": boolean(description="false pauses the rule")},
        [],
        description="name, active or both; the trigger and template of a rule never change.",
        minProperties=1,
    ),
    "GrantRule": obj(
        {
            "id": bigint_id(),
            "name": string(),
            "trigger": enum(Trigger),
            "sale_id": nullable(bigint_id()),
            "template_id": bigint_id(),
            "active": boolean(),
            "created_by": string(),
            "created_at": timestamp(),
            "updated_at": timestamp(),
        }
    ),
}

OPERATIONS = [
    Operation(
        "post",
        REDEMPTION_PATH,
        "coupon_redeem",
        "Lock one of the caller's coupons to their pending order",
        Access.SHOPPER,
        {
            200: json_answer(
                "Locked (or already locked to this order: the same answer). The order "
                "service applies the discount; the payment must be amount_due_cents.",
                ref("CouponLock"),
            )
        },
        {
            404: "`not_found`: no such order or coupon, or someone else's",
            409: "`order_not_pending`; `order_has_coupon`; `coupon_not_available`; "
            "`coupon_not_valid_yet`; `coupon_expired`; `out_of_scope`; `flash_sale_price`; "
            "`below_threshold`",
        },
        description="One PostgreSQL transaction: of two orders racing for one coupon, or "
        "two coupons for one order, exactly one wins.",
        parameters=[path_param("id", string(format="uuid"), "The order id.")],
        body=ref("CouponRedemption"),
        idempotency_key=True,
        unavailable=DATABASE_UNAVAILABLE,
    ),
    Operation(
        "post",
        RULES_PATH,
        "coupon_admin_create_rule",
        "Create a 下单返券 rule: a coupon for every paid order it matches",
        Access.OPERATOR,
        {201: json_answer("Created.", ref("GrantRule"), headers={"Location": "Location"})},
        description="Orders paid from now on are granted one coupon of the template each "
        "(while it lasts). Audited as `rule.create`.",
        body=ref("NewGrantRule"),
        unavailable=DATABASE_UNAVAILABLE,
    ),
    Operation(
        "get",
        RULES_PATH,
        "coupon_admin_list_rules",
        "List 下单返券 rules, newest first",
        Access.VIEWER,
        {
            200: json_answer(
                "One page.", page_view("rules", ref("GrantRule"), MAX_LIMIT, MAX_OFFSET)
            )
        },
        {400: "`invalid_request`: a bad or unknown query parameter (`field` names it)"},
        description=UNKNOWN_QUERY,
        parameters=[
            filter_param("template_id", bigint_id(), "only rules granting this template"),
            filter_param("active", enum(["true", "false"]), "only active or paused rules"),
            *paging_parameters(),
        ],
        unavailable=DATABASE_UNAVAILABLE,
    ),
    Operation(
        "get",
        RULES_PATH + "/{id}",
        "coupon_admin_get_rule",
        "One 下单返券 rule",
        Access.VIEWER,
        {200: json_answer("The rule.", ref("GrantRule"))},
        {404: _RULE_NOT_FOUND},
        parameters=[RULE_ID],
        unavailable=DATABASE_UNAVAILABLE,
    ),
    Operation(
        "patch",
        RULES_PATH + "/{id}",
        "coupon_admin_edit_rule",
        "Rename, pause or resume a 下单返券 rule",
        Access.OPERATOR,
        {200: json_answer("The rule as it is now.", ref("GrantRule"))},
        {404: _RULE_NOT_FOUND},
        description="Audited as `rule.edit` with the changed fields only; an edit that "
        "changes nothing writes nothing.",
        parameters=[RULE_ID],
        body=ref("GrantRuleEdit"),
        unavailable=DATABASE_UNAVAILABLE,
    ),
    Operation(
        "get",
        RULES_PATH + "/{id}/audit",
        "coupon_admin_rule_audit",
        "The rule's audit log, newest first",
        Access.VIEWER,
        {200: json_answer("At most 200 entries.", audit_log())},
        {404: _RULE_NOT_FOUND},
        parameters=[RULE_ID],
        unavailable=DATABASE_UNAVAILABLE,
    ),
]
