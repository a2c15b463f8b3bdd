"""Input parsing shared by the services' domain modules: JSON body fields, path ids and
query integers.

Every refusal is a ValidationError naming the field (400), or None for a path id that
cannot name anything (answered as 404 by the caller). Hostile input is refused here, before
it reaches PostgreSQL or Redis (docs/operations.md, "Hostile input"): integers are bounded
to their column's type and their digits counted before int() (which raises ValueError past
4300 digits), and text is refused when PostgreSQL cannot store it (a NUL) or it cannot be
encoded as UTF-8 (a lone surrogate).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from services.common.errors import ValidationError

MAX_BIGINT = 2**63 - 1  # PostgreSQL bigint (bigserial ids, cents)
MAX_INTEGER = 2**31 - 1  # PostgreSQL integer (stock, limits, seconds)


def storable(text: str) -> bool:
    """Whether PostgreSQL and Redis can take the text: no NUL (PostgreSQL's text type
    refuses it, asyncpg raises) and nothing UTF-8 cannot encode (a lone surrogate, which
    Python's json and aiohttp's header decoding let through; orjson refuses it)."""
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def digits(raw: str, low: int, high: int) -> int | None:
    """A decimal integer string (ASCII digits only: no sign, spaces or '_') within
    [low, high], or None. The length is checked before int() reads it."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > len(str(high)):
        return None
    value = int(raw)
    return value if low <= value <= high else None


def reject_unknown(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ValidationError(unknown[0], "unknown field")


def parse_empty_body(body: dict[str, Any]) -> None:
    """The body of a POST that takes no input but the path and the token (open a group,
    end a sale, cancel an order): {} or none. Anything else is a mistake, refused before
    the action is taken."""
    if body:
        raise ValidationError(sorted(body)[0], "unknown field")


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
    if not storable(value):
        raise ValidationError(name, "must not contain NUL characters or invalid Unicode")
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
    utc = in_utc(moment)
    if utc is None:
        raise ValidationError(name, "must lie within the years 1 to 9999 in UTC")
    return utc


def in_utc(moment: datetime) -> datetime | None:
    """An aware moment in UTC, or None when UTC puts it outside the years 1-9999
    (0001-01-01T00:00+01:00 does: astimezone raises OverflowError)."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return None


def parse_id(raw: str) -> int | None:
    """A positive bigint path id, or None when it cannot name a row."""
    return digits(raw, 1, MAX_BIGINT)


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
