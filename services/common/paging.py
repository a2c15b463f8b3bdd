"""Query-string parsing for the admin lists: paging and filters, refused with the same
400 shape as a bad body field."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from services.common.errors import ValidationError
from services.common.validation import MAX_BIGINT, digits, storable

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# Deep offsets cost a scan each; past this a merchant should filter instead.
MAX_OFFSET = 100_000


@dataclass(frozen=True, slots=True)
class Page:
    limit: int
    offset: int

    def view(self, key: str, items: list[Any], total: int) -> dict[str, Any]:
        """{key: items, "total", "limit", "offset"}: the shape of every admin list."""
        return {key: items, "total": total, "limit": self.limit, "offset": self.offset}


def _int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    value = digits(raw, low, high)
    if value is None:
        raise ValidationError(name, f"must be an integer between {low} and {high}")
    return value


def parse_page(query: Mapping[str, str]) -> Page:
    return Page(
        limit=_int_param(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
        offset=_int_param(query, "offset", 0, 0, MAX_OFFSET),
    )


def choice_param(query: Mapping[str, str], name: str, choices: Collection[str]) -> str | None:
    """An optional filter that must be one of `choices`; None when absent or empty."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise ValidationError(name, f"must be one of {', '.join(sorted(choices))}")
    return raw


def text_param(query: Mapping[str, str], name: str, max_len: int) -> str | None:
    """An optional free-text filter (compared in SQL); None when absent or empty."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > max_len:
        raise ValidationError(name, f"must be at most {max_len} characters")
    if not storable(raw):
        raise ValidationError(name, "must not contain NUL characters or invalid Unicode")
    return raw


def bigint_param(query: Mapping[str, str], name: str) -> int | None:
    """An optional positive bigint filter (an id compared in SQL); None when absent."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    value = digits(raw, 1, MAX_BIGINT)
    if value is None:
        raise ValidationError(name, f"must be an integer between 1 and {MAX_BIGINT}")
    return value


def list_limit(raw: str | None, default: int, maximum: int) -> int:
    """A shopper list's ?limit= (1 to maximum)."""
    if raw is None:
        return default
    value = digits(raw, 1, maximum)
    if value is None:
        raise ValidationError("limit", f"must be an integer between 1 and {maximum}")
    return value


def unknown_params(query: Mapping[str, str], allowed: Collection[str]) -> None:
    """A misspelt filter must not silently list everything."""
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        raise ValidationError(unknown[0], "unknown query parameter")
