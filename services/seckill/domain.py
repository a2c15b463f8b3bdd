"""Flash-sale rules: activity validation, status, reservation requests and outcomes.

Pure functions and dataclasses: no I/O, so tests call them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from services.common.errors import DomainError, ValidationError
from services.common.events import (
    SECKILL_RELEASED,
    SECKILL_RESERVED,
    Envelope,
    event_id_for,
    rfc3339,
    rfc3339_ms,
)
from services.common.sales import Status, sale_status
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


def activity_status(activity: Activity, remaining: int, now: datetime) -> Status:
    return sale_status(activity.starts_at, activity.ends_at, remaining, now)


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
        **({"release_reason": record["reason"]} if "reason" in record else {}),
    }


def outbox_event(activity_id: int, fields: dict[str, str]) -> Envelope:
    """The Kafka event for one outbox stream entry written by reserve.lua / release.lua.

    The event id is derived from the reservation id, so re-publishing an entry (relay
    retry, reclaim after a crash) yields the same event and consumers dedupe on it.
    """
    kind = fields["type"]
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
