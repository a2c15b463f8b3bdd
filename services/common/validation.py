"""Input parsing shared by the services' domain modules: JSON body fields and path ids.

Every refusal is a ValidationError naming the field (400), or None for a path id that
cannot name anything (answered as 404 by the caller).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from services.common.errors import ValidationError

MAX_BIGINT = 2**63 - 1  # PostgreSQL bigserial ids


def reject_unknown(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ValidationError(unknown[0], "unknown field")


def int_field(body: dict[str, Any], name: str, low: int, high: int) -> int:
    value = body.get(name)
    if value is None:
        raise ValidationError(name, "is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(name, "must be an integer")
    if not low <= value <= high:
        raise ValidationError(name, f"must be between {low} and {high}")
    return value


def text_field(body: dict[str, Any], name: str, max_len: int) -> str:
    value = body.get(name)
    if value is None:
        raise ValidationError(name, "is required")
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(name, "must be a non-empty string")
    if len(value) > max_len:
        raise ValidationError(name, f"must be at most {max_len} characters")
    return value.strip()


def time_field(body: dict[str, Any], name: str) -> datetime:
    value = body.get(name)
    if value is None:
        raise ValidationError(name, "is required")
    if not isinstance(value, str):
        raise ValidationError(name, "must be an RFC 3339 timestamp string")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(name, "must be an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        raise ValidationError(name, "must carry a time zone (for example 'Z')")
    return moment.astimezone(UTC)


def parse_id(raw: str) -> int | None:
    """A positive bigint path id, or None when it cannot name a row."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        return None
    value = int(raw)
    return value if 0 < value <= MAX_BIGINT else None


def new_owned_id(owner_id: int) -> str:
    """'<owner id>-<32 hex>': the owner prefix lets a lookup find the Redis hash slot of
    the owner's keys (an activity's reservations, a campaign's groups) without a query."""
    return f"{owner_id}-{uuid.uuid4().hex}"


def owner_of(owned_id: str) -> int | None:
    """The owner id of an id made by new_owned_id, or None if it is not one."""
    head, sep, tail = owned_id.partition("-")
    if not sep or len(tail) != 32 or not all(c in "0123456789abcdef" for c in tail):
        return None
    return parse_id(head)
