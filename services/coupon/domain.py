"""Coupon rules (docs/coupons.md): template validation, state and views, the merchant's
changes, claim outcomes and their HTTP meaning, the Redis settings the scripts read, the
events of the outbox and the coupons they record.

Pure functions and dataclasses: no I/O, so tests call them directly. What a coupon takes
off an order is in terms.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from services.common.errors import DomainError, ValidationError
from services.common.events import (
    COUPON_CLAIMED,
    COUPON_GRANTED,
    Envelope,
    event_id_for,
    rfc3339,
    rfc3339_ms,
)
from services.common.sales import SaleState, Status, sale_closed, sale_state, sale_status
from services.common.validation import (
    MAX_BIGINT,
    int_field,
    new_owned_id,
    owner_of,
    parse_id,
    reject_unknown,
    storable,
    text_field,
    time_field,
)
from services.coupon.terms import Kind, Scope, Terms

MAX_QUANTITY = 10_000_000
MAX_PER_USER_LIMIT = 100
MAX_VALID_DAYS = 3650
MAX_CENTS = 10**12
MAX_SCOPE_IDS = 100
MAX_SKU_LENGTH = 64
MAX_NAME_LENGTH = 100
DAY_MS = 24 * 3600 * 1000

# How the merchant's refusals name a template (services.common.sales).
WHAT = "template"


class Validity(StrEnum):
    FIXED = "fixed"  # valid_from .. valid_until
    RELATIVE = "relative"  # valid_days from the moment the coupon is issued


@dataclass(frozen=True, slots=True)
class NewTemplate:
    """A template's terms as a merchant sets them (create, or an edit's result)."""

    name: str
    kind: Kind
    threshold_cents: int
    amount_off_cents: int | None
    percent_off: int | None
    max_discount_cents: int | None
    validity: Validity
    valid_from: datetime | None
    valid_until: datetime | None
    valid_days: int | None
    quantity: int
    per_user_limit: int
    claimable: bool
    claim_starts_at: datetime | None
    claim_ends_at: datetime | None
    scope: Scope
    scope_ids: tuple[str, ...]
    usable_on_flash_sales: bool

    @property
    def terms(self) -> Terms:
        return Terms(
            kind=self.kind,
            threshold_cents=self.threshold_cents,
            amount_off_cents=self.amount_off_cents,
            percent_off=self.percent_off,
            max_discount_cents=self.max_discount_cents,
            scope=self.scope,
            scope_ids=self.scope_ids,
            usable_on_flash_sales=self.usable_on_flash_sales,
        )


@dataclass(frozen=True, slots=True)
class Template(NewTemplate):
    id: int
    created_by: str = ""
    created_at: datetime | None = None
    # Set once its quantity is in Redis (warm-up done).
    warmed_at: datetime | None = None
    # Set when a merchant ended it: no claim and no grant from that moment.
    ended_early_at: datetime | None = None


NEW_TEMPLATE_FIELDS = tuple(f.name for f in fields(NewTemplate))


def with_terms(template: Template, new: NewTemplate) -> Template:
    """The template with the terms of `new` (an edit's result)."""
    return replace(template, **{name: getattr(new, name) for name in NEW_TEMPLATE_FIELDS})


# --- state and views ------------------------------------------------------------------

# A template is never cancelled: ending it is the one way to stop it early.
TEMPLATE_STATES = frozenset({SaleState.UPCOMING.value, SaleState.LIVE.value, SaleState.ENDED.value})
# What a shopper sees of a claimable template (the claim window and what is left).
EXHAUSTED_STATUS = "exhausted"
CLAIM_STATUSES = ("upcoming", "live", EXHAUSTED_STATUS, "ended")
NOT_CLAIMABLE_STATUS = "not_claimable"


def template_state(template: Template, now: datetime) -> SaleState:
    """The merchant's view: a claimable template's window is its claim window; one only
    granted by rules is live from its creation until a merchant ends it."""
    if template.ended_early_at is not None:
        return SaleState.ENDED
    if not template.claimable:
        return SaleState.LIVE
    assert template.claim_starts_at is not None and template.claim_ends_at is not None
    return sale_state(template.claim_starts_at, template.claim_ends_at, None, None, now)


def claim_status(template: Template, remaining: int, now: datetime) -> str:
    """What a shopper sees: upcoming, live, exhausted or ended (not_claimable for a
    template only granted by rules)."""
    if not template.claimable:
        return NOT_CLAIMABLE_STATUS
    if template.ended_early_at is not None:
        return Status.ENDED.value
    assert template.claim_starts_at is not None and template.claim_ends_at is not None
    status = sale_status(template.claim_starts_at, template.claim_ends_at, remaining, now)
    return EXHAUSTED_STATUS if status is Status.SOLD_OUT else status.value


def _moment(value: datetime | None) -> str | None:
    return None if value is None else rfc3339(value)


def terms_view(terms: Terms) -> dict[str, Any]:
    """What a coupon takes off and from which orders, as every view shows it."""
    return {
        "kind": terms.kind.value,
        "threshold_cents": terms.threshold_cents,
        "amount_off_cents": terms.amount_off_cents,
        "percent_off": terms.percent_off,
        "max_discount_cents": terms.max_discount_cents,
        "scope": terms.scope.value,
        "scope_ids": list(terms.scope_ids),
        "usable_on_flash_sales": terms.usable_on_flash_sales,
    }


def template_view(template: Template, remaining: int, now: datetime) -> dict[str, Any]:
    """The shoppers' view of a template: its terms, validity, claim window and what is
    left."""
    return {
        "id": template.id,
        "name": template.name,
        **terms_view(template.terms),
        "validity": template.validity.value,
        "valid_from": _moment(template.valid_from),
        "valid_until": _moment(template.valid_until),
        "valid_days": template.valid_days,
        "quantity": template.quantity,
        "remaining": max(remaining, 0),
        "per_user_limit": template.per_user_limit,
        "claimable": template.claimable,
        "claim_starts_at": _moment(template.claim_starts_at),
        "claim_ends_at": _moment(template.claim_ends_at),
        "status": claim_status(template, remaining, now),
    }


def admin_view(template: Template, remaining: int, now: datetime) -> dict[str, Any]:
    """What a shopper sees, plus what only the merchant needs."""
    return {
        **template_view(template, remaining, now),
        "state": template_state(template, now).value,
        "ended_early_at": _moment(template.ended_early_at),
        "warm_up": "done" if template.warmed_at is not None else "pending",
        "created_by": template.created_by,
        "created_at": _moment(template.created_at),
    }


@dataclass(frozen=True, slots=True)
class CouponCounts:
    """A template's coupons as PostgreSQL records them (the record the coupons consumer
    keeps: it follows the Redis gate by the relay's lag)."""

    claimed: int = 0
    granted: int = 0
    available: int = 0
    locked: int = 0
    used: int = 0
    expired: int = 0
    revoked: int = 0


def figures_view(
    template: Template,
    total: int | None,
    remaining: int | None,
    counts: CouponCounts,
    now: datetime,
) -> dict[str, Any]:
    """The board's figures. total and remaining come from Redis (None when the template is
    not there: warm-up pending, or Redis lost it); the quantity falls back to PostgreSQL's.
    issued: coupons taken from the quantity (claims and grants), exact; the rest are the
    record's counts."""
    quantity = template.quantity if total is None else total
    return {
        "template_id": template.id,
        "state": template_state(template, now).value,
        "quantity": quantity,
        "remaining": None if remaining is None else max(remaining, 0),
        "issued": None if remaining is None else quantity - max(remaining, 0),
        "claimed": counts.claimed,
        "granted": counts.granted,
        "available": counts.available,
        "locked": counts.locked,
        "used": counts.used,
        "expired": counts.expired,
        "revoked": counts.revoked,
        "at": rfc3339(now),
    }


def _ms(moment: datetime | None) -> int:
    return 0 if moment is None else int(moment.timestamp() * 1000)


def redis_meta(template: Template) -> dict[str, str | int]:
    """The settings the claim and grant scripts read, as the template's Redis meta hash
    holds them (services/coupon/keys.py names each field). An ended template keeps
    closed=ended, so a rebuild of its Redis state does not open it again."""
    meta: dict[str, str | int] = {
        "claimable": "1" if template.claimable else "0",
        "starts_ms": _ms(template.claim_starts_at),
        "ends_ms": _ms(template.claim_ends_at),
        "limit": template.per_user_limit,
        "validity": template.validity.value,
        "total": template.quantity,
        "closed": "" if template.ended_early_at is None else SaleState.ENDED.value,
    }
    if template.validity is Validity.FIXED:
        meta |= {"from_ms": _ms(template.valid_from), "until_ms": _ms(template.valid_until)}
    else:
        assert template.valid_days is not None
        meta["days"] = template.valid_days
    return meta


# --- input validation -----------------------------------------------------------------

_TEMPLATE_FIELDS = set(NEW_TEMPLATE_FIELDS)
_DEFAULTS: dict[str, Any] = {
    "per_user_limit": 1,
    "claimable": True,
    "scope": Scope.ANY.value,
    "usable_on_flash_sales": False,
}
# Which amount fields each kind takes; any other is refused (naming it), never ignored.
_KIND_FIELDS = {
    Kind.AMOUNT_OFF: {"amount_off_cents", "threshold_cents"},
    Kind.PERCENT_OFF: {"percent_off", "max_discount_cents", "threshold_cents"},
    Kind.NO_THRESHOLD: {"amount_off_cents"},
}
_AMOUNT_FIELDS = {"amount_off_cents", "threshold_cents", "percent_off", "max_discount_cents"}
_VALIDITY_FIELDS = {
    Validity.FIXED: {"valid_from", "valid_until"},
    Validity.RELATIVE: {"valid_days"},
}


def _choice(body: dict[str, Any], name: str, choices: type[StrEnum]) -> Any:
    value = body.get(name)
    if value is None:
        raise ValidationError(name, "is required")
    allowed = [c.value for c in choices]
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(name, f"must be one of {', '.join(allowed)}")
    return choices(value)


def _bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if not isinstance(value, bool):
        raise ValidationError(name, "must be true or false")
    return value


def _not_applicable(body: dict[str, Any], names: set[str], why: str) -> None:
    for name in sorted(names & set(body)):
        raise ValidationError(name, why)


def _optional_int(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    return int_field(body, name, low, high) if name in body else None


def _window(body: dict[str, Any], start: str, end: str, now: datetime) -> tuple[datetime, datetime]:
    """Two times: the end after the start, and in the future."""
    starts, ends = time_field(body, start), time_field(body, end)
    if ends <= starts:
        raise ValidationError(end, f"must be after {start}")
    if ends <= now:
        raise ValidationError(end, "must be in the future")
    return starts, ends


def parse_scope_ids(body: dict[str, Any], scope: Scope) -> tuple[str, ...]:
    """1 to 100 ids: activity or campaign ids (positive integers, as numbers or digit
    strings, kept as text) or skus (1 to 64 characters). A repeated id counts once."""
    raw = body.get("scope_ids")
    if raw is None:
        raise ValidationError("scope_ids", f"is required with scope {scope.value}")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_SCOPE_IDS:
        raise ValidationError("scope_ids", f"must be a list of 1 to {MAX_SCOPE_IDS} ids")
    ids: list[str] = []
    for item in raw:
        if scope is Scope.SKUS:
            ok = (
                isinstance(item, str)
                and bool(item.strip())
                and len(item) <= MAX_SKU_LENGTH
                and storable(item)
            )
            if not ok:
                raise ValidationError(
                    "scope_ids", f"each sku must be 1 to {MAX_SKU_LENGTH} characters"
                )
            ids.append(item.strip())
            continue
        number = None
        if isinstance(item, int) and not isinstance(item, bool):
            number = item if 1 <= item <= MAX_BIGINT else None
        elif isinstance(item, str):
            number = parse_id(item)
        if number is None:
            raise ValidationError(
                "scope_ids", f"each {scope.value[:-1]} id must be an integer from 1 to {MAX_BIGINT}"
            )
        ids.append(str(number))
    return tuple(dict.fromkeys(ids))


def parse_new_template(body: dict[str, Any], now: datetime) -> NewTemplate:
    """A template as POST .../admin/templates gives it; every refusal is a 400 naming the
    field (docs/coupons.md, "Templates")."""
    reject_unknown(body, _TEMPLATE_FIELDS)
    body = {**_DEFAULTS, **body}
    name = text_field(body, "name", MAX_NAME_LENGTH)

    kind = _choice(body, "kind", Kind)
    _not_applicable(body, _AMOUNT_FIELDS - _KIND_FIELDS[kind], f"does not apply to kind {kind}")
    amount_off = _optional_int(body, "amount_off_cents", 1, MAX_CENTS)
    percent_off = _optional_int(body, "percent_off", 1, 99)
    max_discount = _optional_int(body, "max_discount_cents", 1, MAX_CENTS)
    threshold = _optional_int(body, "threshold_cents", 0, MAX_CENTS) or 0
    if kind is Kind.AMOUNT_OFF:
        amount_off = int_field(body, "amount_off_cents", 1, MAX_CENTS)
        threshold = int_field(body, "threshold_cents", 0, MAX_CENTS)
        if threshold <= amount_off:
            raise ValidationError("threshold_cents", "must be above amount_off_cents")
    elif kind is Kind.PERCENT_OFF:
        percent_off = int_field(body, "percent_off", 1, 99)
        max_discount = int_field(body, "max_discount_cents", 1, MAX_CENTS)
    else:
        amount_off = int_field(body, "amount_off_cents", 1, MAX_CENTS)

    validity = _choice(body, "validity", Validity)
    other = Validity.RELATIVE if validity is Validity.FIXED else Validity.FIXED
    _not_applicable(body, _VALIDITY_FIELDS[other], f"does not apply to {validity} validity")
    valid_from = valid_until = None
    valid_days = None
    if validity is Validity.FIXED:
        valid_from, valid_until = _window(body, "valid_from", "valid_until", now)
    else:
        valid_days = int_field(body, "valid_days", 1, MAX_VALID_DAYS)

    claimable = _bool(body, "claimable")
    starts = ends = None
    if claimable:
        starts, ends = _window(body, "claim_starts_at", "claim_ends_at", now)
        if valid_until is not None and ends > valid_until:
            raise ValidationError("claim_ends_at", "must not be after valid_until")
    else:
        _not_applicable(
            body, {"claim_starts_at", "claim_ends_at"}, "applies only to a claimable template"
        )

    scope = _choice(body, "scope", Scope)
    if scope is Scope.ANY:
        _not_applicable(body, {"scope_ids"}, "does not apply to scope any")
        scope_ids: tuple[str, ...] = ()
    else:
        scope_ids = parse_scope_ids(body, scope)

    return NewTemplate(
        name=name,
        kind=kind,
        threshold_cents=threshold,
        amount_off_cents=amount_off,
        percent_off=percent_off,
        max_discount_cents=max_discount,
        validity=validity,
        valid_from=valid_from,
        valid_until=valid_until,
        valid_days=valid_days,
        quantity=int_field(body, "quantity", 1, MAX_QUANTITY),
        per_user_limit=int_field(body, "per_user_limit", 1, MAX_PER_USER_LIMIT),
        claimable=claimable,
        claim_starts_at=starts,
        claim_ends_at=ends,
        scope=scope,
        scope_ids=scope_ids,
        usable_on_flash_sales=_bool(body, "usable_on_flash_sales"),
    )


def creation_values(template: NewTemplate) -> dict[str, Any]:
    """The template as a create body would give it (what an edit is applied to, and what
    the create's audit entry records)."""
    values: dict[str, Any] = {
        "name": template.name,
        "kind": template.kind.value,
        "validity": template.validity.value,
        "quantity": template.quantity,
        "per_user_limit": template.per_user_limit,
        "claimable": template.claimable,
        "scope": template.scope.value,
        "usable_on_flash_sales": template.usable_on_flash_sales,
    }
    optional = {
        "threshold_cents": template.threshold_cents
        if template.kind is not Kind.NO_THRESHOLD
        else None,
        "amount_off_cents": template.amount_off_cents,
        "percent_off": template.percent_off,
        "max_discount_cents": template.max_discount_cents,
        "valid_from": _moment(template.valid_from),
        "valid_until": _moment(template.valid_until),
        "valid_days": template.valid_days,
        "claim_starts_at": _moment(template.claim_starts_at),
        "claim_ends_at": _moment(template.claim_ends_at),
        "scope_ids": list(template.scope_ids) or None,
    }
    return values | {k: v for k, v in optional.items() if v is not None}


# --- the merchant's changes -----------------------------------------------------------

# What defines the template: another kind, validity or claimability is another template.
FIXED_FIELDS = ("kind", "validity", "claimable")
EDITABLE_FIELDS = tuple(f for f in NEW_TEMPLATE_FIELDS if f not in FIXED_FIELDS)


def check_edit_fields(body: dict[str, Any]) -> None:
    """Only editable fields, at least one: refused before anything is read or locked."""
    for name in sorted(body):
        if name in FIXED_FIELDS:
            raise ValidationError(name, "cannot be changed: create another template")
    reject_unknown(body, set(EDITABLE_FIELDS))
    if not body:
        raise ValidationError("body", f"name at least one of {', '.join(EDITABLE_FIELDS)}")


def parse_edit(template: Template, body: dict[str, Any], now: datetime) -> NewTemplate:
    """The template as a PATCH would leave it, validated as a new one (the cross-field
    rules included): an edit cannot make a template create would refuse. A new scope
    without scope_ids drops the old ids (scope any takes none)."""
    check_edit_fields(body)
    base = creation_values(template)
    if "scope" in body and "scope_ids" not in body:
        base.pop("scope_ids", None)
    return parse_new_template({**base, **body}, now)


def already_started() -> DomainError:
    return DomainError(
        409,
        "already_started",
        "the template's claims have opened (or it is only granted, live since its creation): "
        "only its quantity can be changed now (or end it)",
    )


def already_issued(issued: int) -> DomainError:
    return DomainError(
        409,
        "already_issued",
        f"{issued} coupons of the template were already issued: its terms cannot change now "
        "(create another template)",
        issued_units=issued,
    )


def below_issued(issued: int) -> DomainError:
    return DomainError(
        409,
        "below_issued",
        f"{issued} coupons of the template were already issued: its quantity cannot be set "
        "below that",
        issued_units=issued,
    )


def template_ended() -> DomainError:
    return sale_closed(WHAT)


def check_editable(template: Template, now: datetime) -> None:
    """An edit is allowed only before the claims open (Redis decides it again, with
    whether anything was issued, in edit.lua)."""
    state = template_state(template, now)
    if state is SaleState.ENDED:
        raise template_ended()
    if state is SaleState.LIVE:
        raise already_started()


def parse_quantity(body: dict[str, Any]) -> int:
    """PUT .../quantity {"quantity": N}."""
    reject_unknown(body, {"quantity"})
    return int_field(body, "quantity", 1, MAX_QUANTITY)


def parse_template_id(raw: str) -> int | None:
    """A path id, or None when it cannot name a template (answered as 404)."""
    return parse_id(raw)


def change_unanswered() -> DomainError:
    """An admin change whose Redis script got no reply: PostgreSQL rolled back, Redis may
    or may not have applied it. Every admin script is safe to repeat."""
    return DomainError(
        503,
        "redis_unavailable",
        "Redis did not answer: nothing was recorded; send the same request again "
        "(it is safe to repeat)",
        {"Retry-After": "1"},
    )


# --- claims ---------------------------------------------------------------------------


def new_coupon_id(template_id: int) -> str:
    # The template prefix names the Redis hash slot of the coupon's template; the id is
    # chosen before the script runs, so a re-published event records the same row.
    return new_owned_id(template_id)


def template_of_coupon(coupon_id: str) -> int | None:
    return owner_of(coupon_id)


class Outcome(StrEnum):
    """What claim.lua answered for one claim (its first reply element)."""

    CLAIMED = "ok"
    NOT_FOUND = "not_found"  # unknown, not in Redis yet, or only granted (not claimable)
    NOT_STARTED = "not_started"
    ENDED = "ended"  # the claim window is over, or a merchant ended the template
    RATE_LIMITED = "rate_limited"
    LIMIT_REACHED = "limit_reached"
    EXHAUSTED = "exhausted"


def claim_result(outcome: Outcome) -> str:
    """coupon_claims_total{result}: the answer's error code, or claimed."""
    if outcome is Outcome.CLAIMED:
        return "claimed"
    return refusal(outcome).code


def refusal(outcome: Outcome) -> DomainError:
    """The HTTP answer to a refused claim (docs/coupons.md, "Errors"); nothing changed."""
    match outcome:
        case Outcome.NOT_FOUND:
            return DomainError(404, "not_found", "coupon template not found")
        case Outcome.NOT_STARTED:
            return DomainError(409, "not_started", "claims of this coupon have not opened yet")
        case Outcome.ENDED:
            return DomainError(410, "claim_ended", "claims of this coupon are over")
        case Outcome.EXHAUSTED:
            return DomainError(410, "exhausted", "no coupon of this template is left")
        case Outcome.LIMIT_REACHED:
            return DomainError(
                409, "limit_reached", "you already hold as many of this coupon as one may claim"
            )
        case Outcome.RATE_LIMITED:
            return DomainError(
                429, "rate_limited", "too many claims, slow down", {"Retry-After": "1"}
            )
    raise ValueError(f"{outcome} is not a refusal")


# Results of coupon_claims_total besides the outcomes: a claim whose Redis call got no
# answer (it may have run) or was never sent.
UNANSWERED_RESULTS = ("outcome_unknown", "redis_unavailable")
CLAIM_RESULTS = (*(claim_result(o) for o in Outcome), *UNANSWERED_RESULTS)


def claim_outcome_unknown(coupon_id: str) -> DomainError:
    """A claim whose script may have run (its reply was lost). A claim's coupon shows in
    GET /api/coupons once recorded, a moment later; a retry with the same Idempotency-Key
    answers the first outcome at once."""
    return DomainError(
        503,
        "outcome_unknown",
        "the claim may or may not have been made: retry with the same Idempotency-Key to "
        "get its outcome, or look for coupon_id in GET /api/coupons in a moment",
        {"Retry-After": "1"},
        check="/api/coupons?state=available",
        coupon_id=coupon_id,
    )


@dataclass(frozen=True, slots=True)
class Claimed:
    coupon_id: str
    template_id: int
    valid_from_ms: int
    valid_until_ms: int

    def view(self) -> dict[str, Any]:
        return {
            "coupon_id": self.coupon_id,
            "template_id": self.template_id,
            "valid_from": rfc3339_ms(self.valid_from_ms),
            "valid_until": rfc3339_ms(self.valid_until_ms),
            "state": "available",
        }


class ClaimDecision(NamedTuple):
    """What claim.lua decided for one claim. replayed: the answer is the recorded first
    outcome of the claim's Idempotency-Key; nothing changed now."""

    outcome: Outcome
    claimed: Claimed | None
    replayed: bool = False


# --- events and the coupons they record -----------------------------------------------

ISSUE_EVENTS = (COUPON_CLAIMED, COUPON_GRANTED)


def outbox_event(template_id: int, fields: dict[str, str]) -> Envelope:
    """The Kafka event for one outbox entry of claim.lua (coupon.claimed) or grant.lua
    (coupon.granted: also order and rule). The id is derived from the coupon id, so a
    re-published entry keeps it; the key is the user, so one user's coupon events stay
    in order on one partition."""
    kind = fields["type"]
    if kind not in ISSUE_EVENTS:
        raise ValueError(f"unknown outbox entry type {kind!r}")
    coupon_id, user = fields["cid"], fields["user"]
    issued_at = rfc3339_ms(int(fields["at"]))
    data: dict[str, Any] = {
        "coupon_id": coupon_id,
        "template_id": template_id,
        "user_id": user,
        "valid_from": rfc3339_ms(int(fields["from"])),
        "valid_until": rfc3339_ms(int(fields["until"])),
        "issued_at": issued_at,
    }
    if kind == COUPON_GRANTED:
        data |= {"order_id": fields["order"], "rule_id": int(fields["rule"])}
    return Envelope(id=event_id_for(kind, coupon_id), type=kind, key=user, data=data, at=issued_at)


@dataclass(frozen=True, slots=True)
class IssuedCoupon:
    """One coupon.coupons row as a coupon.claimed / coupon.granted event gives it."""

    coupon_id: str
    template_id: int
    user_id: str
    origin: str  # claim | grant
    grant_order_id: uuid.UUID | None
    grant_rule_id: int | None
    valid_from: datetime
    valid_until: datetime
    issued_at: datetime


def _time(data: dict[str, Any], name: str) -> datetime:
    value = data[name]
    if not isinstance(value, str):
        raise ValueError(f"{name} is not a time")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{name} has no time zone")
    return moment


def issued_coupon(event: Envelope) -> IssuedCoupon:
    """The row of a coupon.claimed or coupon.granted event; ValueError (or KeyError,
    TypeError) when the event cannot be one: bad data, never retried."""
    d = event.data
    coupon_id, template_id, user_id = d["coupon_id"], d["template_id"], d["user_id"]
    if not isinstance(coupon_id, str) or not isinstance(user_id, str) or not user_id:
        raise ValueError("coupon_id and user_id must be strings")
    if type(template_id) is not int or template_of_coupon(coupon_id) != template_id:
        raise ValueError(f"coupon {coupon_id!r} is not of template {template_id!r}")
    if not storable(user_id):
        raise ValueError("user_id cannot be stored")
    valid_from, valid_until = _time(d, "valid_from"), _time(d, "valid_until")
    if valid_until <= valid_from:
        raise ValueError("valid_until is not after valid_from")
    order_id = rule_id = None
    if event.type == COUPON_GRANTED:
        order_id = uuid.UUID(d["order_id"])
        rule_id = d["rule_id"]
        if type(rule_id) is not int or not 1 <= rule_id <= MAX_BIGINT:
            raise ValueError("rule_id must be a positive integer")
    elif event.type != COUPON_CLAIMED:
        raise ValueError(f"{event.type} issues no coupon")
    return IssuedCoupon(
        coupon_id=coupon_id,
        template_id=template_id,
        user_id=user_id,
        origin="grant" if event.type == COUPON_GRANTED else "claim",
        grant_order_id=order_id,
        grant_rule_id=rule_id,
        valid_from=valid_from,
        valid_until=valid_until,
        issued_at=_time(d, "issued_at"),
    )


# --- the shopper's coupons ------------------------------------------------------------

COUPON_STATES = ("available", "locked", "used", "expired", "revoked")


@dataclass(frozen=True, slots=True)
class HeldCoupon:
    """One of a shopper's coupons, with its template's name and terms."""

    id: str
    template_id: int
    name: str
    state: str
    origin: str
    valid_from: datetime
    valid_until: datetime
    issued_at: datetime
    order_id: uuid.UUID | None
    discount_cents: int | None
    terms: Terms


def held_state(recorded: str, valid_until: datetime, now: datetime) -> str:
    """The state a shopper sees: an available coupon past its end is expired, whether or
    not the sweeper has recorded it yet."""
    return "expired" if recorded == "available" and valid_until <= now else recorded


def coupon_view(coupon: HeldCoupon) -> dict[str, Any]:
    return {
        "coupon_id": coupon.id,
        "template_id": coupon.template_id,
        "name": coupon.name,
        "state": coupon.state,
        "origin": coupon.origin,
        "valid_from": rfc3339(coupon.valid_from),
        "valid_until": rfc3339(coupon.valid_until),
        "issued_at": rfc3339(coupon.issued_at),
        "order_id": None if coupon.order_id is None else str(coupon.order_id),
        "discount_cents": coupon.discount_cents,
        **terms_view(coupon.terms),
    }
