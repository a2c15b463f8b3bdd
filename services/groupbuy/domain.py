"""Group-buying (拼团) rules: campaign validation and views, the admin states and edits,
group ids, script outcomes and their HTTP meaning, the share-card view and the events of
the outbox.

Pure functions and dataclasses: no I/O, so tests call them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson

from services.common.errors import DomainError, ValidationError
from services.common.events import (
    GROUP_COMPLETED,
    GROUP_FAILED,
    GROUP_JOINED,
    GROUP_OPENED,
    Envelope,
    event_id_for,
    from_epoch_ms,
    rfc3339,
)
from services.common.sales import (
    SaleState,
    Status,
    already_started,
    below_reserved,
    not_live,
    sale_closed,
    sale_state,
    sale_status,
    warm_up_pending,
)
from services.common.validation import (
    int_field,
    new_owned_id,
    owner_of,
    parse_id,
    reject_unknown,
    text_field,
    time_field,
)

MAX_STOCK = 10_000_000
MAX_GROUP_SIZE = 100
MAX_PER_USER_LIMIT = 100
MAX_WINDOW_SECONDS = 7 * 24 * 3600
MAX_PAYMENT_TIMEOUT_SECONDS = 7 * 24 * 3600
MAX_PRICE_CENTS = 10**12

# How the merchant's refusals name a group-buy campaign (services.common.sales).
WHAT = "campaign"


@dataclass(frozen=True, slots=True)
class NewCampaign:
    sku: str
    title: str
    group_price_cents: int
    single_price_cents: int
    group_size: int
    stock: int
    starts_at: datetime
    ends_at: datetime
    group_window_seconds: int
    per_user_limit: int
    virtual_completion: bool
    min_real_members: int
    payment_timeout_seconds: int


@dataclass(frozen=True, slots=True)
class Campaign:
    id: int
    sku: str
    title: str
    group_price_cents: int
    single_price_cents: int
    group_size: int
    stock: int
    starts_at: datetime
    ends_at: datetime
    group_window_seconds: int
    per_user_limit: int
    virtual_completion: bool
    min_real_members: int
    payment_timeout_seconds: int
    # Set by the merchant console (docs/admin-api.md); None until then.
    ended_early_at: datetime | None = None
    cancelled_at: datetime | None = None
    created_at: datetime | None = None
    warmed_at: datetime | None = None


def campaign_status(campaign: Campaign, remaining: int, now: datetime) -> Status:
    if campaign.ended_early_at is not None:
        return Status.ENDED
    # A new group needs a whole group's worth of units.
    return sale_status(campaign.starts_at, campaign.ends_at, remaining, now, campaign.group_size)


# What a shopper sees of a cancelled campaign: the orders of its open groups are being
# cancelled, which "ended" would not say.
CANCELLED_STATUS = "cancelled"


def shopper_status(campaign: Campaign, remaining: int, now: datetime) -> str:
    if campaign.cancelled_at is not None:
        return CANCELLED_STATUS
    return campaign_status(campaign, remaining, now).value


def campaign_view(campaign: Campaign, remaining: int, now: datetime) -> dict[str, Any]:
    return {
        "id": campaign.id,
        "sku": campaign.sku,
        "title": campaign.title,
        "group_price_cents": campaign.group_price_cents,
        "single_price_cents": campaign.single_price_cents,
        "group_size": campaign.group_size,
        "stock": campaign.stock,
        "remaining_stock": max(remaining, 0),
        "starts_at": rfc3339(campaign.starts_at),
        "ends_at": rfc3339(campaign.ends_at),
        "group_window_seconds": campaign.group_window_seconds,
        "per_user_limit": campaign.per_user_limit,
        "virtual_completion": campaign.virtual_completion,
        "min_real_members": campaign.min_real_members,
        "payment_timeout_seconds": campaign.payment_timeout_seconds,
        "status": shopper_status(campaign, remaining, now),
    }


# --- the merchant console: admin states, views and figures ----------------------------


def admin_state(campaign: Campaign, now: datetime) -> SaleState:
    return sale_state(
        campaign.starts_at, campaign.ends_at, campaign.ended_early_at, campaign.cancelled_at, now
    )


def _moment(value: datetime | None) -> str | None:
    return None if value is None else rfc3339(value)


def admin_view(campaign: Campaign, remaining: int, now: datetime) -> dict[str, Any]:
    """What a shopper sees, plus what only the merchant needs."""
    return {
        **campaign_view(campaign, remaining, now),
        "state": admin_state(campaign, now).value,
        "ended_early": campaign.ended_early_at is not None,
        "cancelled_at": _moment(campaign.cancelled_at),
        "warm_up": "done" if campaign.warmed_at is not None else "pending",
        "created_at": _moment(campaign.created_at),
    }


def gate_closed(campaign: Campaign) -> str:
    """The meta `closed` flag the scripts read: '' (open), 'ended' or 'cancelled'."""
    if campaign.cancelled_at is not None:
        return SaleState.CANCELLED.value
    if campaign.ended_early_at is not None:
        return SaleState.ENDED.value
    return ""


def gate_ends_at(campaign: Campaign) -> datetime:
    """When opening stops: the end, or the moment a merchant ended the campaign early."""
    if campaign.ended_early_at is not None and campaign.ended_early_at < campaign.ends_at:
        return campaign.ended_early_at
    return campaign.ends_at


@dataclass(frozen=True, slots=True)
class GroupCounts:
    """A campaign's groups by state and their members, as PostgreSQL records them."""

    open: int
    completed: int
    failed: int
    members: int


def figures_view(
    campaign: Campaign,
    total: int | None,
    remaining: int | None,
    counts: GroupCounts,
    now: datetime,
) -> dict[str, Any]:
    """The live board's figures. total and remaining come from Redis (None when the
    campaign is not there: warm-up pending or Redis lost it); the stock falls back to
    PostgreSQL's. reserved_units: units held by groups (all N of an open group, one per
    member of a completed one whose order was not cancelled)."""
    stock = campaign.stock if total is None else total
    return {
        "campaign_id": campaign.id,
        "state": admin_state(campaign, now).value,
        "stock": stock,
        "remaining": remaining,
        "reserved_units": None if remaining is None else stock - remaining,
        "groups_open": counts.open,
        "groups_completed": counts.completed,
        "groups_failed": counts.failed,
        "members": counts.members,
        "at": rfc3339(now),
    }


def require_not_closed(campaign: Campaign, now: datetime) -> None:
    """Edits and stock changes: never on an ended or cancelled campaign."""
    if admin_state(campaign, now) in (SaleState.ENDED, SaleState.CANCELLED):
        raise sale_closed(WHAT)


def require_warm(campaign: Campaign) -> None:
    """A campaign whose Redis state is not there yet cannot be changed there."""
    if campaign.warmed_at is None:
        raise warm_up_pending(WHAT)


class AdminResult(StrEnum):
    """What the admin scripts answered (edit, restock, end, cancel .lua)."""

    OK = "ok"
    ALREADY = "already"  # ended or cancelled before: nothing changed
    NOT_FOUND = "not_found"  # no settings in Redis
    STARTED = "started"  # edit: Redis TIME is past the start
    NOT_STARTED = "not_started"  # end: before the start
    ENDED = "ended"  # past the end, or ended early
    CANCELLED = "cancelled"
    BELOW_RESERVED = "below_reserved"


def admin_refusal(result: AdminResult, reserved: int = 0, *, ending: bool = False) -> DomainError:
    """The HTTP answer to an admin script's refusal; `ending`: the script was end.lua,
    whose refusals all mean the campaign is not live."""
    if result is AdminResult.NOT_FOUND:
        return warm_up_pending(WHAT)
    if ending and result in (AdminResult.NOT_STARTED, AdminResult.ENDED, AdminResult.CANCELLED):
        return not_live(WHAT)
    match result:
        case AdminResult.STARTED:
            return already_started(WHAT)
        case AdminResult.BELOW_RESERVED:
            return below_reserved(WHAT, reserved)
        case AdminResult.ENDED | AdminResult.CANCELLED:
            return sale_closed(WHAT)
    raise ValueError(f"{result} is not a refusal")


# --- input validation -----------------------------------------------------------------

_CAMPAIGN_FIELDS = {
    "sku",
    "title",
    "group_price_cents",
    "single_price_cents",
    "group_size",
    "stock",
    "starts_at",
    "ends_at",
    "group_window_seconds",
    "per_user_limit",
    "virtual_completion",
    "min_real_members",
    "payment_timeout_seconds",
}
_CAMPAIGN_DEFAULTS: dict[str, Any] = {
    "per_user_limit": 1,
    "virtual_completion": False,
    "payment_timeout_seconds": 900,
}


def parse_new_campaign(body: dict[str, Any], now: datetime) -> NewCampaign:
    reject_unknown(body, _CAMPAIGN_FIELDS)
    body = {**_CAMPAIGN_DEFAULTS, **body}
    virtual = body["virtual_completion"]
    if not isinstance(virtual, bool):
        raise ValidationError("virtual_completion", "must be true or false")
    size = int_field(body, "group_size", 2, MAX_GROUP_SIZE)
    if virtual:
        min_real = int_field(body, "min_real_members", 1, size - 1)
    elif "min_real_members" in body:
        raise ValidationError("min_real_members", "only applies with virtual_completion")
    else:
        min_real = size
    new = NewCampaign(
        sku=text_field(body, "sku", 64),
        title=text_field(body, "title", 200),
        group_price_cents=int_field(body, "group_price_cents", 0, MAX_PRICE_CENTS),
        single_price_cents=int_field(body, "single_price_cents", 1, MAX_PRICE_CENTS),
        group_size=size,
        stock=int_field(body, "stock", size, MAX_STOCK),
        starts_at=time_field(body, "starts_at"),
        ends_at=time_field(body, "ends_at"),
        group_window_seconds=int_field(body, "group_window_seconds", 1, MAX_WINDOW_SECONDS),
        per_user_limit=int_field(body, "per_user_limit", 1, MAX_PER_USER_LIMIT),
        virtual_completion=virtual,
        min_real_members=min_real,
        payment_timeout_seconds=int_field(
            body, "payment_timeout_seconds", 1, MAX_PAYMENT_TIMEOUT_SECONDS
        ),
    )
    if new.group_price_cents >= new.single_price_cents:
        raise ValidationError("group_price_cents", "must be below single_price_cents")
    if new.ends_at <= new.starts_at:
        raise ValidationError("ends_at", "must be after starts_at")
    if new.ends_at <= now:
        raise ValidationError("ends_at", "must be in the future")
    return new


# Editable while upcoming (docs/admin-api.md); the rest defines what the campaign IS.
EDITABLE_FIELDS = (
    "title",
    "group_price_cents",
    "single_price_cents",
    "starts_at",
    "ends_at",
    "stock",
    "group_window_seconds",
    "per_user_limit",
    "payment_timeout_seconds",
)
FIXED_FIELDS = frozenset({"sku", "group_size", "virtual_completion", "min_real_members"})


def editable_values(campaign: Campaign | NewCampaign) -> dict[str, Any]:
    """The editable fields as the API shows them (what an edit's audit entry compares)."""
    return {
        "title": campaign.title,
        "group_price_cents": campaign.group_price_cents,
        "single_price_cents": campaign.single_price_cents,
        "starts_at": rfc3339(campaign.starts_at),
        "ends_at": rfc3339(campaign.ends_at),
        "stock": campaign.stock,
        "group_window_seconds": campaign.group_window_seconds,
        "per_user_limit": campaign.per_user_limit,
        "payment_timeout_seconds": campaign.payment_timeout_seconds,
    }


def creation_values(campaign: Campaign) -> dict[str, Any]:
    """Every field the campaign was created with, as a create body would give it."""
    values: dict[str, Any] = {
        "sku": campaign.sku,
        "title": campaign.title,
        "group_price_cents": campaign.group_price_cents,
        "single_price_cents": campaign.single_price_cents,
        "group_size": campaign.group_size,
        "stock": campaign.stock,
        "starts_at": campaign.starts_at.isoformat(),
        "ends_at": campaign.ends_at.isoformat(),
        "group_window_seconds": campaign.group_window_seconds,
        "per_user_limit": campaign.per_user_limit,
        "virtual_completion": campaign.virtual_completion,
        "payment_timeout_seconds": campaign.payment_timeout_seconds,
    }
    if campaign.virtual_completion:
        values["min_real_members"] = campaign.min_real_members
    return values


def created_values(new: NewCampaign, campaign_id: int) -> dict[str, Any]:
    """The audit entry's `after` of a created campaign."""
    return {
        "id": campaign_id,
        "sku": new.sku,
        "group_size": new.group_size,
        "virtual_completion": new.virtual_completion,
        "min_real_members": new.min_real_members,
        **editable_values(new),
    }


def check_edit_fields(body: dict[str, Any]) -> None:
    """Only editable fields: refused before anything is read or locked."""
    for name in sorted(body):
        if name in FIXED_FIELDS:
            raise ValidationError(name, "cannot be changed after creation")
    reject_unknown(body, set(EDITABLE_FIELDS))


def parse_campaign_edit(campaign: Campaign, body: dict[str, Any], now: datetime) -> NewCampaign:
    """The campaign as the edit would leave it, validated as a new one would be (the
    cross-field rules included): a PATCH cannot make a campaign create would refuse."""
    check_edit_fields(body)
    return parse_new_campaign({**creation_values(campaign), **body}, now)


def parse_stock_total(body: dict[str, Any], campaign: Campaign) -> int:
    """PUT .../stock {"stock": N}: the new total, at least one group's worth."""
    reject_unknown(body, {"stock"})
    return int_field(body, "stock", campaign.group_size, MAX_STOCK)


def parse_campaign_id(raw: str) -> int | None:
    """A path id, or None when it cannot name a campaign (answered as 404)."""
    return parse_id(raw)


# --- groups ---------------------------------------------------------------------------


def new_group_id(campaign_id: int) -> str:
    # The campaign prefix finds the group's Redis keys (they carry the campaign's tag).
    return new_owned_id(campaign_id)


def campaign_of_group(group_id: str) -> int | None:
    return owner_of(group_id)


class Outcome(StrEnum):
    """What the open/join scripts answered (their first reply element)."""

    OPENED = "ok"
    JOINED = "joined"
    COMPLETED = "completed"
    NOT_FOUND = "not_found"
    NOT_STARTED = "not_started"
    ENDED = "ended"
    LIMIT_REACHED = "limit_reached"
    SOLD_OUT = "sold_out"
    DUPLICATE_GROUP = "duplicate_group"
    ALREADY_MEMBER = "already_member"
    FULL = "full"
    COMPLETED_ALREADY = "completed_already"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


def refusal(outcome: Outcome, what: str = "group") -> DomainError:
    """The HTTP answer to a refused open or join. Nothing changed in any of these cases."""
    match outcome:
        case Outcome.NOT_FOUND:
            return DomainError(404, "not_found", f"{what} not found")
        case Outcome.NOT_STARTED:
            return DomainError(409, "not_started", "the campaign has not started yet")
        case Outcome.ENDED:
            return DomainError(410, "campaign_ended", "the campaign has ended")
        case Outcome.LIMIT_REACHED:
            return DomainError(
                409, "limit_reached", "you take part in as many groups as this campaign allows"
            )
        case Outcome.SOLD_OUT:
            return DomainError(410, "sold_out", "not enough stock left for a new group")
        case Outcome.ALREADY_MEMBER:
            return DomainError(409, "already_member", "you are already in this group")
        case Outcome.FULL:
            return DomainError(409, "group_full", "the group has no free slot")
        case Outcome.COMPLETED_ALREADY:
            return DomainError(409, "group_completed", "the group is already complete")
        case Outcome.EXPIRED:
            return DomainError(410, "group_expired", "the group expired before it filled")
        case Outcome.CANCELLED:
            return DomainError(410, "sale_cancelled", "the campaign was cancelled")
        case Outcome.DUPLICATE_GROUP:
            return DomainError(503, "retry", "group id collision, try again")
    raise ValueError(f"{outcome} is not a refusal")


def join_metric_result(outcome: Outcome) -> str:
    """groupbuy_joins_total{result}: joined and completed are successes."""
    return "joined" if outcome in (Outcome.JOINED, Outcome.COMPLETED) else outcome.value


def group_view(
    group_id: str,
    state: dict[str, str],
    members: list[str],
    viewer: str,
    viewer_is_admin: bool = False,
) -> dict[str, Any]:
    """The share card: members in joining order, slots left, deadline, state.

    The card travels by link to people outside the group: member user ids are shown only
    to the group's own members and to admins; anyone else sees positions only.
    """
    size = int(state["size"])
    insider = viewer_is_admin or viewer in members
    view: dict[str, Any] = {
        "id": group_id,
        "campaign_id": campaign_of_group(group_id),
        "state": state["state"],
        "members": [
            {
                "position": position,
                "role": "leader" if position == 1 else "member",
                "user_id": user if insider else None,
                "you": user == viewer,
            }
            for position, user in enumerate(members, start=1)
        ],
        "joined": len(members),
        "size": size,
        "slots_left": max(0, size - len(members)) if state["state"] == "open" else 0,
        "opened_at": rfc3339(from_epoch_ms(int(state["opened"]))),
        "deadline": rfc3339(from_epoch_ms(int(state["deadline"]))),
    }
    if state.get("how"):
        view["completion"] = state["how"]
    return view


# --- events ---------------------------------------------------------------------------


def outbox_event(campaign_id: int, fields: dict[str, str]) -> Envelope:
    """The Kafka event for one outbox entry written by open/join/expire.lua.

    Ids are derived from the group (and member), so a re-published entry keeps its id;
    the key is the group id, so a group's events stay in order on one partition.
    """
    kind = fields["type"]
    gid = fields["gid"]
    at = from_epoch_ms(int(fields["at"]))
    data: dict[str, Any] = {
        "group_id": gid,
        "campaign_id": campaign_id,
        "group_size": int(fields["size"]),
        "opened_at": rfc3339(from_epoch_ms(int(fields["opened"]))),
        "deadline": rfc3339(from_epoch_ms(int(fields["deadline"]))),
    }
    if kind in (GROUP_OPENED, GROUP_JOINED):
        user = fields["user"]
        deadline_ms = int(fields["deadline"])
        data |= {
            "user_id": user,
            "role": "leader" if kind == GROUP_OPENED else "member",
            "position": int(fields["pos"]),
            "sku": fields["sku"],
            "unit_price_cents": int(fields["price"]),
            "joined_at": rfc3339(at),
            # Orders of a group are payable until the group's deadline plus the campaign's
            # payment window, whenever the member joined (docs/groupbuy.md, "Payment").
            "pay_before": rfc3339(from_epoch_ms(deadline_ms + int(fields["pay_ms"]))),
        }
        natural = gid if kind == GROUP_OPENED else f"{gid}:{user}"
    elif kind in (GROUP_COMPLETED, GROUP_FAILED):
        data |= {
            "members": list(orjson.loads(fields["members"])),
            "returned_units": int(fields["returned"]),
        }
        if kind == GROUP_COMPLETED:
            data |= {"how": fields["how"], "completed_at": rfc3339(at)}
        else:
            data |= {"failed_at": rfc3339(at)}
        natural = gid
    else:
        raise ValueError(f"unknown outbox entry type {kind!r}")
    return Envelope(id=event_id_for(kind, natural), type=kind, key=gid, data=data, at=rfc3339(at))
