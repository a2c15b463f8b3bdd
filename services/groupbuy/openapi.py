"""The groupbuy service's OpenAPI document: every route of routes.add_routes, with the
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
from services.groupbuy.domain import (
    CANCELLED_STATUS,
    EDITABLE_FIELDS,
    MAX_GROUP_SIZE,
    MAX_PAYMENT_TIMEOUT_SECONDS,
    MAX_PER_USER_LIMIT,
    MAX_PRICE_CENTS,
    MAX_STOCK,
    MAX_WINDOW_SECONDS,
)

ADMIN = "/api/groupbuy/admin/campaigns"
CAMPAIGN_ID = path_param(
    "id", bigint_id(), "The campaign id (anything else is answered 404 not_found)."
)
GROUP_ID = path_param("id", owned_id(), "`<campaign id>-<32 hex>` (anything else: 404 not_found)")

_FIELDS: dict[str, Schema] = {
    "sku": text(64),
    "title": text(200),
    "group_price_cents": integer(0, MAX_PRICE_CENTS, description="below single_price_cents"),
    "single_price_cents": integer(1, MAX_PRICE_CENTS),
    "group_size": integer(2, MAX_GROUP_SIZE),
    "stock": integer(2, MAX_STOCK, description="at least group_size"),
    "starts_at": timestamp(description="RFC 3339 with a zone"),
    "ends_at": timestamp(description="after starts_at, in the future"),
    "group_window_seconds": integer(
        1, MAX_WINDOW_SECONDS, description="how long a group stays open"
    ),
    "per_user_limit": integer(1, MAX_PER_USER_LIMIT, default=1),
    "virtual_completion": boolean(
        default=False, description="complete an expired group with at least min_real_members"
    ),
    "min_real_members": integer(
        1, MAX_GROUP_SIZE - 1, description="1 to group_size - 1, only with virtual_completion"
    ),
    "payment_timeout_seconds": integer(1, MAX_PAYMENT_TIMEOUT_SECONDS, default=900),
}

_CAMPAIGN_VIEW: dict[str, Schema] = {
    "id": bigint_id(),
    "sku": string(),
    "title": string(),
    "group_price_cents": integer(0),
    "single_price_cents": integer(0),
    "group_size": integer(2),
    "stock": integer(0),
    "remaining_stock": integer(0),
    "starts_at": timestamp(),
    "ends_at": timestamp(),
    "group_window_seconds": integer(1),
    "per_user_limit": integer(1),
    "virtual_completion": boolean(),
    "min_real_members": integer(1),
    "payment_timeout_seconds": integer(1),
    "status": enum([*Status, CANCELLED_STATUS]),
}
_ADMIN_VIEW: dict[str, Schema] = {
    **_CAMPAIGN_VIEW,
    "state": enum(SaleState),
    "ended_early": boolean(),
    "cancelled_at": nullable(timestamp()),
    "warm_up": enum(["pending", "done"]),
    "created_at": nullable(timestamp()),
}
_EMPTY = obj({}, [], description="No fields: `{}` or no body at all.")

SCHEMAS: dict[str, Schema] = {
    "NewCampaign": obj(
        _FIELDS,
        [
            "sku",
            "title",
            "group_price_cents",
            "single_price_cents",
            "group_size",
            "stock",
            "starts_at",
            "ends_at",
            "group_window_seconds",
        ],
        description="Cross-field rules answered 400 naming the field: group price below "
        "the single price, stock at least one group, ends_at after starts_at and in the "
        "future, min_real_members only with virtual_completion.",
        examples=[
            {
                "sku": "tea-5",
                "title": "Tea for five",
                "group_price_cents": 4900,
                "single_price_cents": 9900,
                "group_size": 5,
                "stock": 50,
                "starts_at": "2030-06-01T10:00:00Z",
                "ends_at": "2030-06-02T10:00:00Z",
                "group_window_seconds": 3600,
            }
        ],
    ),
    "CampaignEdit": obj(
        {name: _FIELDS[name] for name in EDITABLE_FIELDS},
        [],
        description="Any subset of the editable fields, validated on the campaign as it "
        "would become; `sku`, `group_size`, `virtual_completion`, `min_real_members` "
        "cannot change (400 naming them).",
    ),
    "Campaign": obj(_CAMPAIGN_VIEW),
    "CampaignWarmUpPending": obj(
        {**_CAMPAIGN_VIEW, "warm_up": const("pending"), "message": string()},
        description="Recorded, not yet in Redis: loaded as soon as Redis answers.",
    ),
    "AdminCampaign": obj(_ADMIN_VIEW),
    "AdminCampaignWithFigures": obj({**_ADMIN_VIEW, "figures": ref("CampaignFigures")}),
    "CampaignFigures": obj(
        {
            "campaign_id": bigint_id(),
            "state": enum(SaleState),
            "stock": integer(0),
            "remaining": nullable(integer(0)),
            "reserved_units": nullable(integer()),
            "groups_open": integer(0),
            "groups_completed": integer(0),
            "groups_failed": integer(0),
            "members": integer(0),
            "at": timestamp(),
        }
    ),
    "OpenedGroup": obj(
        {
            "id": owned_id(),
            "campaign_id": bigint_id(),
            "state": const("open"),
            "position": const(1),
            "deadline": timestamp(),
        }
    ),
    "JoinedGroup": obj(
        {
            "id": owned_id(),
            "campaign_id": bigint_id(),
            "state": enum(["open", "completed"]),
            "position": integer(2, MAX_GROUP_SIZE),
            "slots_left": integer(0, MAX_GROUP_SIZE),
        }
    ),
    "Group": obj(
        {
            "id": owned_id(),
            "campaign_id": bigint_id(),
            "state": enum(["open", "completed", "failed"]),
            "members": array(
                obj(
                    {
                        "position": integer(1),
                        "role": enum(["leader", "member"]),
                        "user_id": nullable(
                            string(description="shown to the group's members and admins")
                        ),
                        "you": boolean(),
                    }
                )
            ),
            "joined": integer(0),
            "size": integer(2),
            "slots_left": integer(0),
            "opened_at": timestamp(),
            "deadline": timestamp(),
            "completion": string(description="how it completed: full or virtual"),
        },
        [
            "id",
            "campaign_id",
            "state",
            "members",
            "joined",
            "size",
            "slots_left",
            "opened_at",
            "deadline",
        ],
    ),
}

_NOT_FOUND = "`not_found`: no such campaign"
_WARM = "`warm_up_pending`: not loaded into Redis yet"
_SEAT = {"Location": "Location", "Idempotent-Replayed": "IdempotentReplayed"}
_UNANSWERED = (
    "`outcome_unknown`: Redis did not answer, it may have been applied (`check` names the "
    "group to read, `group_id` its id)"
)


def _admin_change(
    method: str, suffix: str, operation_id: str, summary: str, conflicts: str, **kw: Any
) -> Operation:
    return Operation(
        method,
        ADMIN + "/{id}" + suffix,
        operation_id,
        summary,
        Access.OPERATOR,
        {200: json_answer("The campaign as it is now (admin view).", ref("AdminCampaign"))},
        {404: _NOT_FOUND, 409: f"{conflicts}; {_WARM}"},
        parameters=[CAMPAIGN_ID],
        **kw,
    )


OPERATIONS = [
    Operation(
        "post",
        ADMIN,
        "groupbuy_create_campaign",
        "Create a group-buy campaign",
        Access.OPERATOR,
        {
            201: json_answer(
                "Created, its stock in Redis.",
                ref("Campaign"),
                headers={"Location": "Location"},
                links={
                    "open_group": link(
                        "groupbuy_open_group", "Open a group.", id="$response.body#/id"
                    )
                },
            ),
            202: json_answer(
                "Created; its stock reaches Redis as soon as Redis answers.",
                ref("CampaignWarmUpPending"),
                headers={"Location": "Location"},
            ),
        },
        description="Audited as `campaign.create`.",
        body=ref("NewCampaign"),
    ),
    Operation(
        "get",
        ADMIN,
        "groupbuy_admin_list_campaigns",
        "List campaigns, newest start first",
        Access.VIEWER,
        {
            200: json_answer(
                "One page.", page_view("campaigns", ref("AdminCampaign"), MAX_LIMIT, MAX_OFFSET)
            )
        },
        {400: "`invalid_request`: a bad or unknown query parameter (`field` names it)"},
        description=UNKNOWN_QUERY,
        parameters=[
            filter_param("state", enum(SaleState), "only campaigns in this state"),
            *paging_parameters(),
        ],
    ),
    Operation(
        "get",
        ADMIN + "/{id}",
        "groupbuy_admin_get_campaign",
        "One campaign with its live figures",
        Access.VIEWER,
        {200: json_answer("The admin view and `figures`.", ref("AdminCampaignWithFigures"))},
        {404: _NOT_FOUND},
        parameters=[CAMPAIGN_ID],
    ),
    _admin_change(
        "patch",
        "",
        "groupbuy_admin_edit_campaign",
        "Edit an upcoming campaign",
        "`already_started`, `sale_closed`",
        body=ref("CampaignEdit"),
        description="Audited as `campaign.edit` with the changed fields only.",
    ),
    _admin_change(
        "put",
        "/stock",
        "groupbuy_admin_set_stock",
        "Set the campaign's total stock",
        "`below_reserved` (with `reserved_units`), `sale_closed`",
        body=obj({"stock": integer(2, MAX_STOCK, description="at least group_size")}),
        description="The same total again changes nothing. Audited as `campaign.stock`.",
    ),
    _admin_change(
        "post",
        "/end",
        "groupbuy_admin_end_campaign",
        "End a live campaign now (no new groups)",
        "`not_live`",
        body=_EMPTY,
        body_required=False,
    ),
    _admin_change(
        "post",
        "/cancel",
        "groupbuy_admin_cancel_campaign",
        "Cancel a campaign: its open groups fail at once",
        "`sale_closed`",
        body=_EMPTY,
        body_required=False,
    ),
    Operation(
        "get",
        ADMIN + "/{id}/audit",
        "groupbuy_admin_campaign_audit",
        "The campaign's audit log, newest first",
        Access.VIEWER,
        {200: json_answer("At most 200 entries.", audit_log())},
        {404: _NOT_FOUND},
        parameters=[CAMPAIGN_ID],
    ),
    Operation(
        "get",
        ADMIN + "/{id}/live",
        "groupbuy_admin_campaign_live",
        "The campaign's figures as Server-Sent Events",
        Access.VIEWER,
        {
            200: event_stream(
                "`retry: 1000`, then `event: figures` (data: CampaignFigures) at once and "
                "every 0.25 s; `event: unavailable` (data: Error) when a reading failed.",
                ref("CampaignFigures"),
            )
        },
        {
            404: _NOT_FOUND,
            503: "`too_many_streams`: this process serves as many boards as it may",
        },
        parameters=[CAMPAIGN_ID],
    ),
    Operation(
        "get",
        "/api/groupbuy/campaigns/{id}",
        "groupbuy_get_campaign",
        "One campaign",
        Access.SHOPPER,
        {200: json_answer("The campaign with its remaining stock.", ref("Campaign"))},
        {404: _NOT_FOUND},
        parameters=[CAMPAIGN_ID],
    ),
    Operation(
        "post",
        "/api/groupbuy/campaigns/{id}/groups",
        "groupbuy_open_group",
        "Open a group (the caller leads it)",
        Access.SHOPPER,
        {
            201: json_answer(
                "Opened: a group's worth of stock is held until it completes or fails.",
                ref("OpenedGroup"),
                headers=_SEAT,
                links={
                    "join": link(
                        "groupbuy_join_group", "Another shopper joins.", id="$response.body#/id"
                    ),
                    "get": link("groupbuy_get_group", "The share card.", id="$response.body#/id"),
                },
            )
        },
        {
            404: _NOT_FOUND,
            409: "`not_started`; `limit_reached`",
            410: "`sold_out`: not a group's worth left; `campaign_ended`; `sale_cancelled`",
            503: f"`retry`: a group id collision, try again; {_UNANSWERED}",
        },
        parameters=[CAMPAIGN_ID],
        body=_EMPTY,
        body_required=False,
        idempotency_key=True,
        unavailable=REDIS_UNAVAILABLE,
    ),
    Operation(
        "post",
        "/api/groupbuy/groups/{id}/join",
        "groupbuy_join_group",
        "Join a group",
        Access.SHOPPER,
        {
            201: json_answer(
                "Joined; the join that fills the last slot completes the group.",
                ref("JoinedGroup"),
                headers=_SEAT,
            )
        },
        {
            404: "`not_found`: no such group",
            409: "`already_member`; `limit_reached`; `group_full`; `group_completed`; "
            "`not_started`",
            410: "`group_expired`; `campaign_ended`; `sale_cancelled`",
            503: _UNANSWERED,
        },
        parameters=[GROUP_ID],
        body=_EMPTY,
        body_required=False,
        idempotency_key=True,
        unavailable=REDIS_UNAVAILABLE,
    ),
    Operation(
        "get",
        "/api/groupbuy/groups/{id}",
        "groupbuy_get_group",
        "A group's share card",
        Access.SHOPPER,
        {200: json_answer("Members in joining order, slots left, deadline.", ref("Group"))},
        {404: "`not_found`: no such group"},
        parameters=[GROUP_ID],
    ),
]


SPEC = ServiceSpec(
    title="Group buying (groupbuy)",
    tag="groupbuy",
    description="Campaigns, groups (open, join, share card) and the merchant's campaign admin.",
    operations=OPERATIONS,
    schemas=SCHEMAS,
    unavailable=BOTH_UNAVAILABLE,
)
