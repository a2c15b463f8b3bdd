"""JSON Schema (draft 2020-12, OpenAPI 3.1's dialect) for the shapes the validation
helpers accept (services/common/validation.py) and the views answer. Pure data."""

from __future__ import annotations

from typing import Any

from services.common.validation import MAX_BIGINT

Schema = dict[str, Any]

# Any character but whitespace: text_field refuses a string that strip() empties.
NOT_BLANK = r"\S"
# new_owned_id: "<owner id>-<32 hex>".
OWNED_ID_PATTERN = r"^[1-9][0-9]{0,18}-[0-9a-f]{32}$"


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def integer(low: int | None = None, high: int | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "integer", **extra}
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    return schema


def bigint_id(**extra: Any) -> Schema:
    """A positive PostgreSQL bigint id (parse_id)."""
    return integer(1, MAX_BIGINT, **extra)


def text(max_len: int, **extra: Any) -> Schema:
    """text_field: a string of at most max_len characters, not only whitespace."""
    return {"type": "string", "minLength": 1, "maxLength": max_len, "pattern": NOT_BLANK, **extra}


def string(**extra: Any) -> Schema:
    return {"type": "string", **extra}


def timestamp(**extra: Any) -> Schema:
    """time_field on input (an RFC 3339 time with a zone); rfc3339() on output."""
    return {"type": "string", "format": "date-time", **extra}


def boolean(**extra: Any) -> Schema:
    return {"type": "boolean", **extra}


def enum(values: Any, **extra: Any) -> Schema:
    return {"type": "string", "enum": [str(v) for v in values], **extra}


def const(value: Any) -> Schema:
    return {"const": value}


def nullable(schema: Schema) -> Schema:
    """schema or null (JSON Schema 2020-12 has no `nullable`)."""
    return {"anyOf": [schema, {"type": "null"}]}


def array(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


def obj(
    properties: dict[str, Schema],
    required: Any = None,
    *,
    closed: bool = True,
    **extra: Any,
) -> Schema:
    """An object; required=None means every property. closed: unknown properties are
    refused (reject_unknown on input; on output, the view has exactly these keys)."""
    names = list(properties) if required is None else list(required)
    schema: Schema = {"type": "object", "properties": properties, **extra}
    if names:
        schema["required"] = names
    if closed:
        schema["additionalProperties"] = False
    return schema


def map_of(values: Schema, **extra: Any) -> Schema:
    return {"type": "object", "additionalProperties": values, **extra}


def owned_id(**extra: Any) -> Schema:
    return string(pattern=OWNED_ID_PATTERN, **extra)


def page_view(key: str, item: Schema, max_limit: int, max_offset: int) -> Schema:
    """paging.Page.view: {key: [...], total, limit, offset}."""
    return obj(
        {
            key: array(item),
            "total": integer(0),
            "limit": integer(1, max_limit),
            "offset": integer(0, max_offset),
        }
    )


def audit_log() -> Schema:
    """{"entries": [...]}: services/common/audit.py's entries, newest first."""
    entry = obj(
        {
            "id": integer(1),
            "at": timestamp(),
            "actor": string(description="the merchant token's `sub`"),
            "action": string(),
            "target": string(),
            "target_id": string(),
            "before": nullable({"type": "object"}),
            "after": nullable({"type": "object"}),
        }
    )
    return obj({"entries": array(entry, maxItems=200)})
