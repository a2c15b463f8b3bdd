"""Flash-sale rules: activity validation, status, the merchant's changes (edit, stock,
end, cancel), reservation requests and outcomes.

Pure functions and dataclasses: no I/O, so tests call them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from services.common.errors import DomainError, ValidationError
from services.common.events import (
    SECKILL_CANCELLED,
    SECKILL_RELEASED,
    SECKILL_RESERVED,
    Envelope,
    event_id_for,
    order_id_for,
    rfc3339,
    rfc3339_ms,
)
from services.common.sales import (
    SaleState,
    Status,
    already_started,
    not_live,
    sale_closed,
    sale_status,
    warm_up_pending,
)
from services.common.sales import sale_state as state_of
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
MAX_PER_USER_LIMIT = 100
MAX_PAYMENT_TIMEOUT_SECONDS = 7 * 24 * 3600
MAX_PRICE_CENTS = 10**12

# How the merchant's refusals name a flash-sale activity (services.common.sales).
WHAT = "sale"


@dataclass(frozen=True, slots=True)
class NewActivity:
    sku: str
    title: str
    price_cents: int
    stock: int
    starts_at: datetime
    ends_at: datetime
    per_user_limit: int
    payment_timeout_seconds: int


@dataclass(frozen=True, slots=True)
class Activity:
    id: int
    sku: str
    title: str
    price_cents: int
    stock: int
    starts_at: datetime
    ends_at: datetime
    per_user_limit: int
    payment_timeout_seconds: int
    # Set when a merchant ended the sale early or cancelled it (the moment Redis closed it).
    ended_early_at: datetime | None = None
    cancelled_at: datetime | None = None
    created_at: datetime | None = None
    # Set once its stock is in Redis (warm-up done).
    warmed_at: datetime | None = None

    @property
    def closes_at(self) -> datetime:
        """When presses stop being taken: the end, or the moment it was ended early."""
        if self.ended_early_at is not None and self.ended_early_at < self.ends_at:
            return self.ended_early_at
        return self.ends_at


def sale_state(activity: Activity, now: datetime) -> SaleState:
    return state_of(
        activity.starts_at, activity.ends_at, activity.ended_early_at, activity.cancelled_at, now
    )


def activity_status(activity: Activity, remaining: int, now: datetime) -> Status:
    # A cancelled sale is over for a shopper: "ended" (the shoppers' list hides it).
    if activity.cancelled_at is not None:
        return Status.ENDED
    return sale_status(activity.starts_at, activity.closes_at, remaining, now)


def activity_view(activity: Activity, remaining: int, now: datetime) -> dict[str, Any]:
    return {
        "id": activity.id,
        "sku": activity.sku,
        "title": activity.title,
        "price_cents": activity.price_cents,
        "stock": activity.stock,
        "remaining_stock": max(remaining, 0),
        "starts_at": rfc3339(activity.starts_at),
        "ends_at": rfc3339(activity.ends_at),
        "per_user_limit": activity.per_user_limit,
        "payment_timeout_seconds": activity.payment_timeout_seconds,
        "status": activity_status(activity, remaining, now).value,
    }


def admin_view(activity: Activity, remaining: int, now: datetime) -> dict[str, Any]:
    """What the merchant console shows: the shoppers' view plus the sale's state."""
    return {
        **activity_view(activity, remaining, now),
        "state": sale_state(activity, now).value,
        "ended_early": activity.ended_early_at is not None,
        "cancelled_at": None if activity.cancelled_at is None else rfc3339(activity.cancelled_at),
        "warm_up": "pending" if activity.warmed_at is None else "done",
        "created_at": None if activity.created_at is None else rfc3339(activity.created_at),
    }


def redis_meta(activity: Activity) -> dict[str, str | int]:
    """The settings the reserve script reads, as the activity's Redis meta hash holds them.
    A sale ended early or cancelled keeps that in its settings, so a rebuild of its Redis
    state from PostgreSQL (services/reconcile) does not open it again."""
    meta: dict[str, str | int] = {
        "starts_ms": _ms(activity.starts_at),
        "ends_ms": _ms(activity.closes_at),
        "limit": activity.per_user_limit,
        "pay_ms": activity.payment_timeout_seconds * 1000,
        "price": activity.price_cents,
        "sku": activity.sku,
        "total": activity.stock,
    }
    if activity.ended_early_at is not None:
        meta["ended_early"] = _ms(activity.ended_early_at)
    if activity.cancelled_at is not None:
        meta["cancelled"] = _ms(activity.cancelled_at)
    return meta


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# --- input validation -----------------------------------------------------------------

_ACTIVITY_FIELDS = {
    "sku",
    "title",
    "price_cents",
    "stock",
    "starts_at",
    "ends_at",
    "per_user_limit",
    "payment_timeout_seconds",
}
_ACTIVITY_DEFAULTS = {"per_user_limit": 1, "payment_timeout_seconds": 900}


def parse_new_activity(body: dict[str, Any], now: datetime) -> NewActivity:
    reject_unknown(body, _ACTIVITY_FIELDS)
    body = {**_ACTIVITY_DEFAULTS, **body}
    new = NewActivity(
        sku=text_field(body, "sku", 64),
        title=text_field(body, "title", 200),
        price_cents=int_field(body, "price_cents", 0, MAX_PRICE_CENTS),
        stock=int_field(body, "stock", 1, MAX_STOCK),
        starts_at=time_field(body, "starts_at"),
        ends_at=time_field(body, "ends_at"),
        per_user_limit=int_field(body, "per_user_limit", 1, MAX_PER_USER_LIMIT),
        payment_timeout_seconds=int_field(
            body, "payment_timeout_seconds", 1, MAX_PAYMENT_TIMEOUT_SECONDS
        ),
    )
    if new.ends_at <= new.starts_at:
        raise ValidationError("ends_at", "must be after starts_at")
    if new.ends_at <= now:
        raise ValidationError("ends_at", "must be in the future")
    return new


# --- the merchant's changes -----------------------------------------------------------

EDITABLE_FIELDS = (
    "title",
    "price_cents",
    "starts_at",
    "ends_at",
    "stock",
    "per_user_limit",
    "payment_timeout_seconds",
)


def editable_view(activity: Activity) -> dict[str, Any]:
    """The editable fields as the API shows them (what the audit log compares)."""
    return {
        "title": activity.title,
        "price_cents": activity.price_cents,
        "starts_at": rfc3339(activity.starts_at),
        "ends_at": rfc3339(activity.ends_at),
        "stock": activity.stock,
        "per_user_limit": activity.per_user_limit,
        "payment_timeout_seconds": activity.payment_timeout_seconds,
    }


def created_view(activity: Activity) -> dict[str, Any]:
    """The fields a create set, for its audit entry."""
    return {"sku": activity.sku, **editable_view(activity)}


def parse_edit(body: dict[str, Any]) -> dict[str, Any]:
    """A PATCH body: any non-empty subset of the editable fields, each validated as on
    create. The sku names the product the orders are for: it cannot change."""
    if "sku" in body:
        raise ValidationError("sku", "cannot be changed: create another sale instead")
    reject_unknown(body, set(EDITABLE_FIELDS))
    if not body:
        raise ValidationError("body", f"name at least one of {', '.join(EDITABLE_FIELDS)}")
    return {name: _editable_field(body, name) for name in EDITABLE_FIELDS if name in body}


def _editable_field(body: dict[str, Any], name: str) -> Any:
    """One editable field, validated as create validates it."""
    match name:
        case "title":
            return text_field(body, name, 200)
        case "price_cents":
            return int_field(body, name, 0, MAX_PRICE_CENTS)
        case "starts_at" | "ends_at":
            return time_field(body, name)
        case "stock":
            return parse_stock_value(body)
        case "per_user_limit":
            return int_field(body, name, 1, MAX_PER_USER_LIMIT)
        case "payment_timeout_seconds":
            return int_field(body, name, 1, MAX_PAYMENT_TIMEOUT_SECONDS)
    raise ValueError(f"{name} is not editable")


def apply_edit(activity: Activity, changes: dict[str, Any], now: datetime) -> Activity:
    """The activity as the edit leaves it: the window checked as on create. Whether the
    sale may still be edited is check_editable's (the state) and edit.lua's (the start,
    against Redis's clock)."""
    edited = replace(activity, **changes)
    if edited.ends_at <= edited.starts_at:
        field = "ends_at" if "ends_at" in changes else "starts_at"
        raise ValidationError(
            field, "must be after starts_at" if field == "ends_at" else "must be before ends_at"
        )
    if edited.ends_at <= now:
        raise ValidationError("ends_at", "must be in the future")
    return edited


def check_editable(activity: Activity, now: datetime) -> None:
    """An edit is allowed only before the start, on a sale loaded into Redis."""
    state = sale_state(activity, now)
    if state in (SaleState.ENDED, SaleState.CANCELLED):
        raise sale_closed(WHAT)
    if state is SaleState.LIVE:
        raise already_started(WHAT)
    if activity.warmed_at is None:
        raise warm_up_pending(WHAT)


def parse_stock_value(body: dict[str, Any]) -> int:
    return int_field(body, "stock", 1, MAX_STOCK)


def parse_set_stock(body: dict[str, Any]) -> int:
    """A PUT .../stock body: {"stock": N}."""
    reject_unknown(body, {"stock"})
    return parse_stock_value(body)


def check_stock_settable(activity: Activity, now: datetime) -> None:
    """The total can be set while the sale is upcoming or live."""
    if sale_state(activity, now) in (SaleState.ENDED, SaleState.CANCELLED):
        raise sale_closed(WHAT)
    if activity.warmed_at is None:
        raise warm_up_pending(WHAT)


def stock_after(total: int, remaining: int, wanted: int) -> int | None:
    """The remaining stock once the total becomes `wanted`: the units taken (total minus
    remaining) stay taken. None when `wanted` is below them (set_total.lua decides the
    same against Redis; this is its rule, for the tests and the docs)."""
    reserved = total - remaining
    if wanted < reserved:
        return None
    return remaining + wanted - total


class Closing(StrEnum):
    END = "end"
    CANCEL = "cancel"


def check_closable(activity: Activity, closing: Closing, now: datetime) -> bool:
    """Whether to close the sale now (True), or answer it unchanged (False: a repeat of
    the same end or cancel). End: live only; cancel: upcoming or live."""
    state = sale_state(activity, now)
    if closing is Closing.END:
        if activity.ended_early_at is not None:
            return False
        if state is not SaleState.LIVE:
            raise not_live(WHAT)
    else:
        if state is SaleState.CANCELLED:
            return False
        if state is SaleState.ENDED:
            raise sale_closed(WHAT)
    if activity.warmed_at is None:
        raise warm_up_pending(WHAT)
    return True


def change_unanswered() -> DomainError:
    """A change whose Redis script got no reply: PostgreSQL rolled back, Redis may or may
    not have applied it. Every admin change is safe to repeat (the scripts set values,
    a cancellation's outbox entry is appended once), so the answer is: send it again."""
    return DomainError(
        503,
        "redis_unavailable",
        "Redis did not answer: nothing was recorded; send the same request again "
        "(it is safe to repeat)",
        {"Retry-After": "1"},
    )


def live_figures(
    activity: Activity,
    total: int | None,
    remaining: int,
    reservations: int,
    presses: int,
    sold_out_answers: int,
    now: datetime,
) -> dict[str, Any]:
    """The board's figures of one activity (docs/admin-api.md). `total` is the stock the
    Redis settings hold (None: not recorded there; PostgreSQL's is the same then)."""
    stock = activity.stock if total is None else total
    return {
        "activity_id": activity.id,
        "state": sale_state(activity, now).value,
        "stock": stock,
        "remaining": max(remaining, 0),
        "reserved_units": stock - max(remaining, 0),
        "reservations": reservations,
        "presses": presses,
        "sold_out_answers": sold_out_answers,
        "at": rfc3339(now),
    }


def parse_quantity(body: dict[str, Any]) -> int:
    """A reservation body: {} or {"quantity": n}."""
    reject_unknown(body, {"quantity"})
    if "quantity" not in body:
        return 1
    return int_field(body, "quantity", 1, MAX_PER_USER_LIMIT)


def parse_activity_id(raw: str) -> int | None:
    """A path id, or None when it cannot name an activity (answered as 404)."""
    return parse_id(raw)


# --- reservations ---------------------------------------------------------------------


def new_reservation_id(activity_id: int) -> str:
    # The activity id prefix lets a lookup find the reservation's Redis hash slot.
    return new_owned_id(activity_id)


def activity_of_reservation(reservation_id: str) -> int | None:
    return owner_of(reservation_id)


class Outcome(StrEnum):
    """What the reservation script answered (its first reply element)."""

    RESERVED = "ok"
    NOT_FOUND = "not_found"
    NOT_STARTED = "not_started"
    ENDED = "ended"
    RATE_LIMITED = "rate_limited"
    LIMIT_REACHED = "limit_reached"
    SOLD_OUT = "sold_out"
    # The press's Idempotency-Key was first used for a press with another quantity.
    KEY_REUSED = "key_reused"
    # A merchant cancelled the sale (close.lua's flag in its settings).
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Reservation:
    reservation_id: str
    activity_id: int
    quantity: int
    pay_before_ms: int

    def view(self) -> dict[str, Any]:
        return {
            "reservation_id": self.reservation_id,
            "activity_id": self.activity_id,
            "quantity": self.quantity,
            "pay_before": rfc3339_ms(self.pay_before_ms),
            "order_id": str(order_id_for(self.reservation_id)),
        }


class Decision(NamedTuple):
    """What the reservation script decided for one press. replayed: the answer is the
    recorded first outcome of the press's Idempotency-Key; nothing changed now."""

    outcome: Outcome
    reservation: Reservation | None
    replayed: bool = False


def refusal(outcome: Outcome) -> DomainError:
    """The HTTP refusal for every outcome but RESERVED."""
    match outcome:
        case Outcome.NOT_FOUND:
            return DomainError(404, "not_found", "activity not found")
        case Outcome.NOT_STARTED:
            return DomainError(409, "not_started", "the sale has not started yet")
        case Outcome.ENDED:
            return DomainError(410, "sale_ended", "the sale has ended")
        case Outcome.CANCELLED:
            return DomainError(410, "sale_cancelled", "the sale was cancelled")
        case Outcome.RATE_LIMITED:
            return DomainError(
                429, "rate_limited", "too many presses, slow down", {"Retry-After": "1"}
            )
        case Outcome.LIMIT_REACHED:
            return DomainError(
                409, "limit_reached", "you already hold the most this sale allows per person"
            )
        case Outcome.SOLD_OUT:
            return DomainError(410, "sold_out", "sold out")
        case Outcome.KEY_REUSED:
            return DomainError(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was first sent with another quantity: "
                "a new press needs a new key",
            )
    raise ValueError(f"{outcome} is not a refusal")


def reservation_state_view(reservation_id: str, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "reservation_id": reservation_id,
        "activity_id": activity_of_reservation(reservation_id),
        "state": record["state"],
        "quantity": int(record["qty"]),
        "reserved_at": rfc3339_ms(int(record["at"])),
        "pay_before": rfc3339_ms(int(record["deadline"])),
        # The order the reservation becomes (the order service creates it within moments).
        "order_id": str(order_id_for(reservation_id)),
        **({"release_reason": record["reason"]} if "reason" in record else {}),
    }


def sale_key(activity_id: int) -> str:
    """The partition key of the events about a whole sale (not one shopper's)."""
    return f"a{activity_id}"


def outbox_event(activity_id: int, fields: dict[str, str]) -> Envelope:
    """The Kafka event for one outbox stream entry written by reserve.lua / release.lua /
    close.lua.

    The event id is derived from the reservation id (a cancellation: the activity, which
    is cancelled once), so re-publishing an entry (relay retry, reclaim after a crash)
    yields the same event and consumers dedupe on it.
    """
    kind = fields["type"]
    if kind == SECKILL_CANCELLED:
        at = rfc3339_ms(int(fields["at"]))
        key = sale_key(activity_id)
        return Envelope(
            id=event_id_for(kind, key),
            type=kind,
            key=key,
            data={"activity_id": activity_id, "cancelled_at": at},
            at=at,
        )
    rid = fields["rid"]
    at = rfc3339_ms(int(fields["at"]))
    data: dict[str, Any] = {
        "reservation_id": rid,
        "activity_id": activity_id,
        "user_id": fields["user"],
        "quantity": int(fields["qty"]),
    }
    if kind == SECKILL_RESERVED:
        data |= {
            "sku": fields["sku"],
            "unit_price_cents": int(fields["price"]),
            "reserved_at": at,
            "pay_before": rfc3339_ms(int(fields["deadline"])),
        }
    elif kind == SECKILL_RELEASED:
        data |= {"reason": fields["reason"], "released_at": at}
    else:
        raise ValueError(f"unknown outbox entry type {kind!r}")
    return Envelope(id=event_id_for(kind, rid), type=kind, key=fields["user"], data=data, at=at)
