"""Notification rules: templates as data, event -> messages, consent requests, the
provider's error codes, backoff and the per-user rate limit.

Pure functions and dataclasses: no I/O, so tests call them directly.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from services.common.errors import DomainError, ValidationError
from services.common.events import (
    COUPON_EXPIRING,
    ORDER_CANCELLED,
    ORDER_PAID,
    ORDER_PAYMENT_DUE,
    SECKILL_RESERVED,
    USER_REGISTERED,
    Envelope,
    event_id_for,
    rfc3339,
)
from services.common.paging import list_limit
from services.common.validation import MAX_BIGINT

# Group-buy event types (emitted by services/groupbuy on topic `groupbuy`).
GROUP_COMPLETED = "group.completed"
GROUP_FAILED = "group.failed"
# Not a Kafka event: the reminder task's synthetic event, one per activity.
SALE_STARTING = "notify.sale_starting"
DEAD_LETTERED = "notify.dead_lettered"

MAX_LIST_LIMIT = 100
# WeChat subscribe-message value limits: `thing` 20 characters, `character_string` 32.
THING_MAX = 20
CHARACTER_STRING_MAX = 32


class InvalidEvent(ValueError):
    """An event a template needs a field from, without it (dead-lettered, never retried)."""


class Scope(StrEnum):
    NONE = "none"
    ACTIVITY = "activity"
    GROUP = "group"


class ConsentKind(StrEnum):
    ONE_TIME = "one_time"
    LONG_TERM = "long_term"


@dataclass(frozen=True, slots=True)
class Field:
    """One provider data key (`thing1`, `time2`, ...) and how its value is made."""

    key: str
    source: str
    format: str = "text"  # text | thing | string | money | time


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    title: str
    event_types: tuple[str, ...]
    scope: Scope
    fields: tuple[Field, ...]
    page: str


# Templates as data. `source` names a field of the event's data; `page` is the
# mini-program page the message opens ({name} filled from the event data).
TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template(
            "reservation_confirmed",
            "Reservation confirmed",
            (SECKILL_RESERVED,),
            Scope.ACTIVITY,
            (
                Field("character_string1", "reservation_id", "string"),
                Field("thing2", "sku", "thing"),
                Field("time3", "pay_before", "time"),
            ),
            "pages/reservation/detail?id={reservation_id}",
        ),
        Template(
            "payment_due",
            "Payment due",
            (ORDER_PAYMENT_DUE,),
            Scope.ACTIVITY,
            (
                Field("character_string1", "order_id", "string"),
                Field("thing2", "sku", "thing"),
                Field("amount3", "amount_cents", "money"),
                Field("time4", "pay_before", "time"),
            ),
            "pages/order/detail?id={order_id}",
        ),
        Template(
            "order_paid",
            "Order paid",
            (ORDER_PAID,),
            Scope.ACTIVITY,
            (
                Field("character_string1", "order_id", "string"),
                Field("thing2", "sku", "thing"),
                Field("amount3", "amount_cents", "money"),
                Field("time4", "paid_at", "time"),
            ),
            "pages/order/detail?id={order_id}",
        ),
        Template(
            "order_cancelled",
            "Order cancelled",
            (ORDER_CANCELLED,),
            Scope.ACTIVITY,
            (
                Field("character_string1", "order_id", "string"),
                Field("thing2", "sku", "thing"),
                Field("thing3", "reason", "thing"),
                Field("time4", "cancelled_at", "time"),
            ),
            "pages/order/detail?id={order_id}",
        ),
        Template(
            "group_completed",
            "Group completed",
            (GROUP_COMPLETED,),
            Scope.GROUP,
            (
                Field("character_string1", "group_id", "string"),
                Field("character_string2", "campaign_id", "string"),
            ),
            "pages/group/detail?id={group_id}",
        ),
        Template(
            "group_failed",
            "Group failed",
            (GROUP_FAILED,),
            Scope.GROUP,
            (
                Field("character_string1", "group_id", "string"),
                Field("character_string2", "campaign_id", "string"),
            ),
            "pages/group/detail?id={group_id}",
        ),
        Template(
            "sale_starting",
            "Sale starting soon",
            (SALE_STARTING,),
            Scope.ACTIVITY,
            (
                Field("thing1", "title", "thing"),
                Field("time2", "starts_at", "time"),
            ),
            "pages/activity/detail?id={activity_id}",
        ),
        # The coupon service's sweeper announces a coupon about to end, once per coupon
        # (topic coupons); about the shopper's coupon, not a sale, so consents are unscoped.
        Template(
            "coupon_expiring",
            "Coupon expiring",
            (COUPON_EXPIRING,),
            Scope.NONE,
            (
                Field("thing1", "name", "thing"),
                Field("time2", "valid_until", "time"),
            ),
            "pages/coupon/detail?id={coupon_id}",
        ),
    )
}
TEMPLATE_BY_EVENT: dict[str, Template] = {e: t for t in TEMPLATES.values() for e in t.event_types}


@dataclass(frozen=True, slots=True)
class Intent:
    """A message an event asks for: to whom, with which template, rendered."""

    event_id: str
    event_type: str
    event_at: datetime
    user_id: str
    template: str
    scope: str  # "" or "activity:<id>" / "group:<id>"
    data: dict[str, dict[str, str]]
    page: str


def scope_key(scope: Scope, scope_id: str | int | None) -> str:
    if scope is Scope.NONE or scope_id is None or scope_id == "":
        return ""
    return f"{scope.value}:{scope_id}"


def parse_time(raw: str) -> datetime:
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEvent(f"not a timestamp: {raw!r}") from None
    if moment.tzinfo is None:
        raise InvalidEvent(f"timestamp without a time zone: {raw!r}")
    return moment


def _format(value: Any, fmt: str) -> str:
    if fmt == "money":
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidEvent(f"amount must be integer cents, got {value!r}")
        return f"¥{value // 100}.{value % 100:02d}"
    if fmt == "time":
        if not isinstance(value, str):
            raise InvalidEvent(f"time must be an RFC 3339 string, got {value!r}")
        return parse_time(value).strftime("%Y-%m-%d %H:%M")
    text = str(value)
    if fmt == "thing":
        return text if len(text) <= THING_MAX else text[: THING_MAX - 1] + "…"
    if fmt == "string":
        # A UUID (36 characters) fits as its 32 hex digits.
        if len(text) > CHARACTER_STRING_MAX:
            text = text.replace("-", "")
        return text[:CHARACTER_STRING_MAX]
    return text


def render(template: Template, data: Mapping[str, Any]) -> tuple[dict[str, dict[str, str]], str]:
    """The provider's `data` object and the page of a template, from an event's data.
    Raises InvalidEvent naming a missing field; extra fields are ignored."""
    values: dict[str, dict[str, str]] = {}
    for f in template.fields:
        if data.get(f.source) is None:
            raise InvalidEvent(f"{template.name} needs {f.source!r}")
        values[f.key] = {"value": _format(data[f.source], f.format)}

    def fill(match: re.Match[str]) -> str:
        value = data.get(match.group(1))
        if value is None:
            raise InvalidEvent(f"{template.name} page needs {match.group(1)!r}")
        return quote(str(value), safe="")

    return values, re.sub(r"\{(\w+)\}", fill, template.page)


def _user(value: Any) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= 128:
        return value
    if isinstance(value, dict):
        return _user(value.get("user_id") or value.get("id"))
    return None


def group_members(data: Mapping[str, Any]) -> list[str]:
    """User ids of a group's members, tolerant of how the event spells them: a list under
    `members` (ids or objects with `user_id`), `member_ids`, `member_user_ids` or
    `user_ids`, plus `leader_id`/`leader_user_id`. Order kept, duplicates dropped."""
    found: list[str] = []
    for name in ("members", "member_ids", "member_user_ids", "user_ids"):
        value = data.get(name)
        if isinstance(value, list):
            found.extend(u for u in map(_user, value) if u is not None)
    for name in ("leader_id", "leader_user_id", "user_id"):
        user = _user(data.get(name))
        if user is not None:
            found.append(user)
    return list(dict.fromkeys(found))


def intents_for(event: Envelope) -> list[Intent]:
    """The messages an event asks for (before consent and rate limits); [] for event
    types no template covers."""
    template = TEMPLATE_BY_EVENT.get(event.type)
    if template is None:
        return []
    data = event.data
    if template.scope is Scope.GROUP:
        users = group_members(data)
        if not users:
            raise InvalidEvent(f"{event.type} names no members")
        scope = scope_key(Scope.GROUP, data.get("group_id"))
    else:
        user = _user(data.get("user_id"))
        if user is None:
            raise InvalidEvent(f"{event.type} has no user_id")
        users = [user]
        scope = scope_key(template.scope, data.get("activity_id"))
    values, page = render(template, data)
    at = parse_time(event.at)
    return [Intent(event.id, event.type, at, u, template.name, scope, values, page) for u in users]


def sale_starting_intent(
    activity_id: int, title: str, starts_at: datetime, user_id: str, now: datetime
) -> Intent:
    """The reminder for one subscriber of an activity; one per (activity, user) ever."""
    template = TEMPLATES["sale_starting"]
    data = {"activity_id": activity_id, "title": title, "starts_at": rfc3339(starts_at)}
    values, page = render(template, data)
    return Intent(
        event_id_for(SALE_STARTING, str(activity_id)),
        SALE_STARTING,
        now,
        user_id,
        template.name,
        scope_key(Scope.ACTIVITY, activity_id),
        values,
        page,
    )


# --- Consent requests ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewSubscription:
    user_id: str
    template: str
    kind: ConsentKind
    scope: str


_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_SUBSCRIPTION_FIELDS = {"template", "kind", "activity_id", "group_id"}


def parse_subscription(user_id: str, body: Mapping[str, Any]) -> NewSubscription:
    unknown = set(body) - _SUBSCRIPTION_FIELDS
    if unknown:
        raise ValidationError(sorted(unknown)[0], "unknown field")
    name = body.get("template")
    if not isinstance(name, str) or not name:
        raise ValidationError("template", "required, a template name")
    template = TEMPLATES.get(name)
    if template is None:
        raise DomainError(
            400,
            "unknown_template",
            f"no template {name!r}; known: {', '.join(sorted(TEMPLATES))}",
            field="template",
        )
    raw_kind = body.get("kind", ConsentKind.ONE_TIME.value)
    if raw_kind not in {k.value for k in ConsentKind}:
        raise ValidationError("kind", "must be one_time or long_term")
    activity_id = body.get("activity_id")
    group_id = body.get("group_id")
    if activity_id is not None and group_id is not None:
        raise ValidationError("group_id", "give activity_id or group_id, not both")
    scope = ""
    if activity_id is not None:
        if template.scope is not Scope.ACTIVITY:
            raise ValidationError("activity_id", f"{name} is not about an activity")
        if (
            isinstance(activity_id, bool)
            or not isinstance(activity_id, int)
            or not 0 < activity_id <= MAX_BIGINT
        ):
            raise ValidationError("activity_id", f"must be an integer between 1 and {MAX_BIGINT}")
        scope = scope_key(Scope.ACTIVITY, activity_id)
    if group_id is not None:
        if template.scope is not Scope.GROUP:
            raise ValidationError("group_id", f"{name} is not about a group")
        if not isinstance(group_id, str) or not _ID.match(group_id):
            raise ValidationError("group_id", "must be an id of 1 to 100 characters")
        scope = scope_key(Scope.GROUP, group_id)
    if name == "sale_starting" and not scope:
        # A reminder is always about one activity: an unscoped consent would be a
        # standing "tell me about every sale", which the template does not promise.
        raise ValidationError("activity_id", "sale_starting needs the activity")
    return NewSubscription(user_id, name, ConsentKind(raw_kind), scope)


def parse_list_limit(raw: str | None) -> int:
    return list_limit(raw, 20, MAX_LIST_LIMIT)


# --- Provider answers, retries, rate limit ------------------------------------------


class SendOutcome(StrEnum):
    SENT = "sent"
    RETRYABLE = "retryable"  # try again later (busy, token, quota, 5xx, timeout)
    REFUSED = "refused"  # the user refused: revoke the consent, never retry
    PERMANENT = "permanent"  # this message can never be sent as is


# WeChat subscribe-message send API (POST /cgi-bin/message/subscribe/send).
ERRCODE_OK = 0
ERRCODE_USER_REFUSED = 43101
# 40001/40014/42001: the access_token was refused (expired, or replaced by a newer one);
# the http channel re-asks for a fresh token once before it reports the send retryable.
RETRYABLE_ERRCODES = frozenset({-1, 40001, 40014, 42001, 45009})
PERMANENT_ERRCODES = frozenset({40003, 40037, 47003})


def classify_errcode(errcode: int) -> SendOutcome:
    """The provider's errcode as an outcome. Unknown codes are retried (bounded by the
    attempt limit, then dead-lettered for an operator) rather than dropped unseen."""
    if errcode == ERRCODE_OK:
        return SendOutcome.SENT
    if errcode == ERRCODE_USER_REFUSED:
        return SendOutcome.REFUSED
    if errcode in PERMANENT_ERRCODES:
        return SendOutcome.PERMANENT
    return SendOutcome.RETRYABLE


def classify_http_status(status: int) -> SendOutcome | None:
    """None: read the errcode from the body. 5xx and 429 are retryable, other non-2xx
    answers mean the request itself is wrong."""
    if 200 <= status < 300:
        return None
    if status >= 500 or status in (408, 429):
        return SendOutcome.RETRYABLE
    return SendOutcome.PERMANENT


def backoff_seconds(
    attempt: int, base: float, cap: float, rand: Callable[[float, float], float] = random.uniform
) -> float:
    """Delay before attempt `attempt + 1`: exponential (base * 2^(attempt-1), capped)
    with equal jitter, so the result lies in [d/2, d]: spread out, never immediate."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return rand(ceiling / 2, ceiling)


def next_step(outcome: SendOutcome, attempts: int, max_attempts: int) -> str:
    """What a failed send leads to: 'retry', 'dead' (dead-letter) or 'refused'."""
    if outcome is SendOutcome.REFUSED:
        return "refused"
    if outcome is SendOutcome.PERMANENT or attempts >= max_attempts:
        return "dead"
    return "retry"


def rate_limit_allows(sent_in_window: int, limit: int) -> bool:
    """limit messages per user per window; 0 turns the limit off."""
    return limit <= 0 or sent_in_window < limit


def parse_template_ids(raw: str) -> dict[str, str]:
    """NOTIFY_TEMPLATE_IDS: "order_paid=AbC123,payment_due=XyZ" -> provider ids."""
    ids: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in raw.split(","))):
        name, sep, provider_id = pair.partition("=")
        name, provider_id = name.strip(), provider_id.strip()
        if not sep or not provider_id or name not in TEMPLATES:
            raise ValueError(f"NOTIFY_TEMPLATE_IDS: bad entry {pair!r}")
        ids[name] = provider_id
    return ids


def provider_template_id(ids: Mapping[str, str], template: str) -> str:
    return ids.get(template, template)


# --- the merchant console: template ids and delivery counts --------------------------

# Every state a delivery row can be in (migrations 001 and 002).
DELIVERY_STATES = ("waiting", "pending", "sending", "sent", "dead", "refused", "skipped")
MAX_PROVIDER_TEMPLATE_ID = 128
_PROVIDER_TEMPLATE_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_PROVIDER_TEMPLATE_ID}}}")


@dataclass(frozen=True, slots=True)
class StoredTemplate:
    """A provider template id a merchant set for a kind (notify.templates)."""

    kind: str
    provider_template_id: str
    updated_at: datetime
    updated_by: str


def effective_template_ids(
    defaults: Mapping[str, str], stored: Iterable[StoredTemplate]
) -> dict[str, str]:
    """The id each kind is sent with: the one a merchant set wins over the setting's."""
    return {**defaults, **{t.kind: t.provider_template_id for t in stored}}


def template_entry(
    kind: str, defaults: Mapping[str, str], stored: StoredTemplate | None
) -> dict[str, Any]:
    if stored is None:
        return {
            "kind": kind,
            "provider_template_id": provider_template_id(defaults, kind),
            "source": "default",
            "updated_at": None,
            "updated_by": None,
        }
    return {
        "kind": kind,
        "provider_template_id": stored.provider_template_id,
        "source": "set",
        "updated_at": rfc3339(stored.updated_at),
        "updated_by": stored.updated_by,
    }


def templates_view(defaults: Mapping[str, str], stored: Iterable[StoredTemplate]) -> dict[str, Any]:
    """Every kind notify sends, with the provider template id it is sent with."""
    by_kind = {t.kind: t for t in stored}
    return {"templates": [template_entry(k, defaults, by_kind.get(k)) for k in TEMPLATES]}


def template_kind(raw: str) -> str:
    if raw not in TEMPLATES:
        raise DomainError(404, "not_found", f"no message kind {raw!r}")
    return raw


def parse_provider_template_id(body: Mapping[str, Any]) -> str:
    """{"provider_template_id": "<1-128 of A-Z a-z 0-9 _ ->"}."""
    unknown = sorted(set(body) - {"provider_template_id"})
    if unknown:
        raise ValidationError(unknown[0], "unknown field")
    value = body.get("provider_template_id")
    if not isinstance(value, str) or not _PROVIDER_TEMPLATE_ID.fullmatch(value):
        raise ValidationError(
            "provider_template_id",
            f"1 to {MAX_PROVIDER_TEMPLATE_ID} characters of A-Z, a-z, 0-9, _ and -",
        )
    return value


def deliveries_view(counts: Iterable[tuple[str, str, int]]) -> dict[str, Any]:
    """Delivery rows by state, and by kind and state, from (kind, state, n) triples: every
    state and every kind present, with 0 where there is none."""
    totals = dict.fromkeys(DELIVERY_STATES, 0)
    by_kind = {kind: dict.fromkeys(DELIVERY_STATES, 0) for kind in TEMPLATES}
    for kind, state, n in counts:
        totals[state] = totals.get(state, 0) + n
        row = by_kind.setdefault(kind, dict.fromkeys(DELIVERY_STATES, 0))
        row[state] = row.get(state, 0) + n
    return {"counts": totals, "by_kind": by_kind}


def dead_letter_event(
    event_id: str,
    event_type: str,
    user_id: str,
    template: str,
    attempts: int,
    reason: str,
    data: Mapping[str, Any],
    failed_at: datetime,
) -> Envelope:
    """What goes to notify.dlq for a message given up on; its id is derived from the
    delivery, so a re-publish after a crash carries the same id."""
    return Envelope(
        id=event_id_for(DEAD_LETTERED, f"{event_id}:{user_id}:{template}"),
        type=DEAD_LETTERED,
        key=user_id,
        data={
            "event_id": event_id,
            "event_type": event_type,
            "user_id": user_id,
            "template": template,
            "attempts": attempts,
            "reason": reason,
            "data": dict(data),
        },
        at=rfc3339(failed_at),
    )


def unique_users(intents: Iterable[Intent]) -> list[str]:
    return sorted({i.user_id for i in intents})


# --- Recipients: the openid a message is addressed to --------------------------------

# Channels that address the platform's user (`touser` = the openid for the mini-program's
# appid). The log channel is for local runs and names whoever it knows.
OPENID_CHANNELS = frozenset({"http"})
RECIPIENT_UNKNOWN = "recipient_unknown"
MAX_USER_ID = 128
MAX_PLATFORM_ID = 128


@dataclass(frozen=True, slots=True)
class Recipient:
    """A user as the platform knows them: from identity's user.registered event."""

    user_id: str
    appid: str
    openid: str
    unionid: str | None
    registered_at: datetime


@dataclass(frozen=True, slots=True)
class RecipientWait:
    """Messages for a user without an openid under appid wait up to `seconds` for the
    user's registration instead of going out to a wrong address."""

    appid: str
    seconds: float


def recipient_wait(channel: str, appid: str, seconds: float) -> RecipientWait | None:
    """The wait rule of a channel; None for channels that need no openid (nothing waits)."""
    return RecipientWait(appid, max(0.0, seconds)) if channel in OPENID_CHANNELS else None


def _platform_id(data: Mapping[str, Any], name: str, limit: int) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise InvalidEvent(f"user.registered needs {name!r}, a string of 1 to {limit}")
    return value


def recipient_from(event: Envelope) -> Recipient | None:
    """The recipient a `users` event registers; None for event types notify does not use.
    Raises InvalidEvent for a registration it cannot trust (dead-lettered)."""
    if event.type != USER_REGISTERED:
        return None
    data = event.data
    unionid = data.get("unionid")
    if unionid is not None and (not isinstance(unionid, str) or len(unionid) > MAX_PLATFORM_ID):
        raise InvalidEvent("user.registered: unionid must be a string or null")
    registered_at = data.get("registered_at")
    if not isinstance(registered_at, str):
        raise InvalidEvent("user.registered needs 'registered_at', an RFC 3339 string")
    return Recipient(
        user_id=_platform_id(data, "user_id", MAX_USER_ID),
        appid=_platform_id(data, "appid", MAX_PLATFORM_ID),
        openid=_platform_id(data, "openid", MAX_PLATFORM_ID),
        unionid=unionid or None,
        registered_at=parse_time(registered_at),
    )


def touser_for(user_id: str, openid: str | None, channel: str) -> str | None:
    """Whom a channel addresses: the openid when known; None when the channel needs one and
    none is known (the message must not go out), else our user id (the log channel)."""
    if openid is not None:
        return openid
    return None if channel in OPENID_CHANNELS else user_id


def recipient_unknown_reason(user_id: str, appid: str) -> str:
    return f"{RECIPIENT_UNKNOWN}: no openid known for user {user_id} (appid {appid})"
