"""The notify service's OpenAPI document: every route of routes.add_routes, with the
bounds of domain.py's parsing (docs/api.md)."""

from __future__ import annotations

from services.common.openapi.schemas import (
    Schema,
    array,
    bigint_id,
    enum,
    integer,
    map_of,
    nullable,
    obj,
    ref,
    string,
    timestamp,
)
from services.common.openapi.spec import (
    DATABASE_UNAVAILABLE,
    Access,
    Operation,
    ServiceSpec,
    json_answer,
    path_param,
    query_param,
)
from services.notify.domain import (
    DELIVERY_STATES,
    MAX_LIST_LIMIT,
    MAX_PROVIDER_TEMPLATE_ID,
    TEMPLATES,
    ConsentKind,
)

KINDS = enum(TEMPLATES)
_COUNTS = obj({state: integer(0) for state in DELIVERY_STATES})

SCHEMAS: dict[str, Schema] = {
    "NewSubscription": obj(
        {
            "template": string(
                minLength=1,
                description=f"one of {', '.join(TEMPLATES)} (another name: 400 unknown_template)",
            ),
            "kind": enum(ConsentKind, default=ConsentKind.ONE_TIME.value),
            "activity_id": bigint_id(description="consent for one activity's messages"),
            "group_id": string(
                pattern=r"^[A-Za-z0-9_.:-]{1,100}$",
                description="consent for one group's messages",
            ),
        },
        ["template"],
        description="At most one of activity_id and group_id, matching what the template "
        "is about; sale_starting needs activity_id.",
    ),
    "Subscription": obj(
        {
            "id": integer(1),
            "template": string(),
            "kind": enum(ConsentKind),
            "state": enum(["active", "used", "revoked"]),
            "activity_id": nullable(integer(1)),
            "group_id": nullable(string()),
            "created_at": timestamp(),
        }
    ),
    "Message": obj(
        {
            "id": integer(1),
            "template": string(),
            "event_type": string(),
            "event_id": string(),
            "data": {"type": "object", "description": "what the message said"},
            "page": string(description="the mini-program page it opens"),
            "channel": nullable(string()),
            "event_at": timestamp(),
            "sent_at": timestamp(),
        }
    ),
    "TemplateEntry": obj(
        {
            "kind": KINDS,
            "provider_template_id": string(),
            "source": enum(["set", "default"]),
            "updated_at": nullable(timestamp()),
            "updated_by": nullable(string()),
        }
    ),
}

OPERATIONS = [
    Operation(
        "get",
        "/api/notify/admin/templates",
        "notify_admin_templates",
        "Each message kind's provider template id",
        Access.VIEWER,
        {200: json_answer("Every kind.", obj({"templates": array(ref("TemplateEntry"))}))},
    ),
    Operation(
        "put",
        "/api/notify/admin/templates/{kind}",
        "notify_admin_set_template",
        "Set the provider template id of a message kind",
        Access.OPERATOR,
        {200: json_answer("The kind's entry.", ref("TemplateEntry"))},
        {404: "`not_found`: no such message kind"},
        description="The same id again changes nothing; a change is audited as `template.set`.",
        parameters=[path_param("kind", KINDS, "the message kind")],
        body=obj(
            {
                "provider_template_id": string(
                    pattern=f"^[A-Za-z0-9_-]{{1,{MAX_PROVIDER_TEMPLATE_ID}}}$"
                )
            }
        ),
    ),
    Operation(
        "get",
        "/api/notify/admin/deliveries",
        "notify_admin_deliveries",
        "Delivery counts by state, and by kind and state",
        Access.VIEWER,
        {
            200: json_answer(
                "Every state and every kind, 0 where none.",
                obj({"counts": _COUNTS, "by_kind": map_of(_COUNTS)}),
            )
        },
    ),
    Operation(
        "post",
        "/api/notify/subscriptions",
        "notify_subscribe",
        "Consent to a message template",
        Access.SHOPPER,
        {201: json_answer("The consent.", ref("Subscription"))},
        {400: "`unknown_template` (`field`: template)"},
        body=ref("NewSubscription"),
    ),
    Operation(
        "get",
        "/api/notify/messages",
        "notify_list_messages",
        "The caller's delivered messages, newest first",
        Access.SHOPPER,
        {200: json_answer("At most `limit`.", obj({"messages": array(ref("Message"))}))},
        {400: "`invalid_request`: `limit` out of range"},
        parameters=[
            query_param("limit", integer(1, MAX_LIST_LIMIT, default=20), "how many"),
        ],
    ),
]


SPEC = ServiceSpec(
    title="Notifications (notify)",
    tag="notify",
    description="Consents to subscription messages, the messages sent, and the "
    "merchant's template ids and delivery counts.",
    operations=OPERATIONS,
    schemas=SCHEMAS,
    unavailable=DATABASE_UNAVAILABLE,
)
