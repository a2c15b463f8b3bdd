"""The admin audit log: who changed what on a sale, an order or a template, before and
after. Each service keeps its own `<schema>.admin_audit` table, written in the same
transaction as the change it records, so an entry exists exactly when the change does.

Every service's migration creates the table with this shape:

    CREATE TABLE <schema>.admin_audit (
        id        bigserial   PRIMARY KEY,
        at        timestamptz NOT NULL DEFAULT now(),
        actor     text        NOT NULL,   -- the token's sub: merchant:<id>
        action    text        NOT NULL,   -- e.g. activity.create, activity.edit
        target    text        NOT NULL,   -- activity | campaign | payment | template
        target_id text        NOT NULL,
        before    jsonb,                  -- the changed fields as they were (NULL: created)
        after     jsonb                   -- the changed fields as they are now
    );
    CREATE INDEX admin_audit_by_target ON <schema>.admin_audit (target, target_id, id DESC);
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

MAX_AUDIT_ENTRIES = 200


@dataclass(frozen=True, slots=True)
class AuditEntry:
    actor: str
    action: str
    target: str
    target_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class AuditSql:
    insert: str
    trail: str

    @classmethod
    def for_schema(cls, schema: str) -> AuditSql:
        # The schema is a constant of the calling service, never input.
        table = f"{schema}.admin_audit"
        return cls(
            insert=f"INSERT INTO {table} (actor, action, target, target_id, before, after)"
            " VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb)",
            trail=f"SELECT id, at, actor, action, target, target_id, before::text AS before,"
            f" after::text AS after FROM {table} WHERE target = $1 AND target_id = $2"
            " ORDER BY id DESC LIMIT $3",
        )


def changed_fields(
    before: dict[str, Any], after: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the fields whose values differ, as (before, after): what an edit changed."""
    keys = [k for k in after if before.get(k) != after[k]]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}


def _json(value: dict[str, Any] | None) -> str | None:
    # Datetimes become RFC 3339 strings (orjson's default), the form the API shows.
    return None if value is None else orjson.dumps(value).decode()


async def record_audit(conn: asyncpg.Connection, sql: AuditSql, entry: AuditEntry) -> None:
    """Write the entry on `conn`, inside the transaction that makes the change."""
    await conn.execute(
        sql.insert,
        entry.actor,
        entry.action,
        entry.target,
        entry.target_id,
        _json(entry.before),
        _json(entry.after),
    )


def _entry_view(row: asyncpg.Record) -> dict[str, Any]:
    at: datetime = row["at"]
    return {
        "id": row["id"],
        "at": at.isoformat(),
        "actor": row["actor"],
        "action": row["action"],
        "target": row["target"],
        "target_id": row["target_id"],
        "before": None if row["before"] is None else orjson.loads(row["before"]),
        "after": None if row["after"] is None else orjson.loads(row["after"]),
    }


async def audit_trail(
    pool: asyncpg.Pool, sql: AuditSql, target: str, target_id: str, limit: int = MAX_AUDIT_ENTRIES
) -> list[dict[str, Any]]:
    """The newest entries about one target first, as the API shows them."""
    rows = await pool.fetch(sql.trail, target, target_id, limit)
    return [_entry_view(r) for r in rows]
