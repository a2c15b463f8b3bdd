"""PostgreSQL adapter of the coupon service: templates and their admin audit log, the
record of issued coupons (written from the coupons topic, idempotent on the coupon id),
a shopper's coupons and a template's counts."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from services.common.audit import AuditEntry, AuditSql, audit_trail, record_audit
from services.common.paging import Page
from services.coupon.domain import (
    CouponCounts,
    HeldCoupon,
    IssuedCoupon,
    NewTemplate,
    Template,
    Validity,
    creation_values,
)
from services.coupon.terms import Kind, Scope, Terms

AUDIT = AuditSql.for_schema("coupon")
TEMPLATE_TARGET = "template"

_TERMS = (
    "name, kind, threshold_cents, amount_off_cents, percent_off, max_discount_cents, "
    "validity, valid_from, valid_until, valid_days, quantity, per_user_limit, claimable, "
    "claim_starts_at, claim_ends_at, scope, scope_ids, usable_on_flash_sales"
)
_COLUMNS = f"id, {_TERMS}, created_by, created_at, warmed_at, ended_early_at"
INSERT_TEMPLATE = f"""
INSERT INTO coupon.templates ({_TERMS}, created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
RETURNING {_COLUMNS}
"""
UPDATE_TERMS = f"""
UPDATE coupon.templates SET ({_TERMS}, updated_at) =
    ($2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, now())
WHERE id = $1 RETURNING {_COLUMNS}
"""
SELECT_TEMPLATE = f"SELECT {_COLUMNS} FROM coupon.templates WHERE id = $1"
SELECT_TEMPLATE_FOR_UPDATE = f"SELECT {_COLUMNS} FROM coupon.templates WHERE id = $1 FOR UPDATE"
SET_QUANTITY = f"""
UPDATE coupon.templates SET quantity = $2, updated_at = now() WHERE id = $1
RETURNING {_COLUMNS}
"""
SET_ENDED_EARLY = f"""
UPDATE coupon.templates SET ended_early_at = $2, updated_at = now()
WHERE id = $1 AND ended_early_at IS NULL RETURNING {_COLUMNS}
"""
SELECT_UNWARMED = f"""
SELECT {_COLUMNS} FROM coupon.templates WHERE warmed_at IS NULL AND ended_early_at IS NULL
"""
MARK_WARMED = "UPDATE coupon.templates SET warmed_at = now() WHERE id = $1 AND warmed_at IS NULL"
# domain.template_state in SQL, at the moment $1, so a filtered list agrees with the views.
_STATE = """CASE WHEN ended_early_at IS NOT NULL THEN 'ended'
    WHEN NOT claimable THEN 'live'
    WHEN claim_ends_at <= $1 THEN 'ended'
    WHEN claim_starts_at > $1 THEN 'upcoming' ELSE 'live' END"""
LIST_TEMPLATES = f"""
SELECT {_COLUMNS} FROM coupon.templates WHERE $2::text IS NULL OR {_STATE} = $2
ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4
"""
COUNT_TEMPLATES = f"SELECT count(*) FROM coupon.templates WHERE $2::text IS NULL OR {_STATE} = $2"
SELECT_LIVE_WARMED = f"""
SELECT {_COLUMNS} FROM coupon.templates
WHERE warmed_at IS NOT NULL AND {_STATE} = 'live' ORDER BY id
"""
# Every admin change of one template holds this lock from its first read to its last
# Redis step, which may come after the COMMIT (a quantity raise): changes of one template
# reach Redis in the order PostgreSQL committed them, across processes.
LOCK_TEMPLATE = "SELECT pg_advisory_lock(hashtextextended('coupon.template', $1))"
UNLOCK_TEMPLATE = "SELECT pg_advisory_unlock(hashtextextended('coupon.template', $1))"

# Redelivered or re-published events insert nothing: the coupon id was chosen before the
# script ran, so every copy of one coupon's event names the same row.
RECORD_COUPONS = """
INSERT INTO coupon.coupons (id, template_id, user_id, origin, grant_order_id, grant_rule_id,
    valid_from, valid_until, issued_at)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::uuid[],
    $6::bigint[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[])
ON CONFLICT (id) DO NOTHING
"""
# An available coupon past its end is expired to its holder, whether or not the sweeper
# has recorded it (domain.held_state); $2 is the moment.
_HELD_STATE = (
    "CASE WHEN c.state = 'available' AND c.valid_until <= $2 THEN 'expired' ELSE c.state END"
)
_HELD_FILTER = f"c.user_id = $1 AND {_HELD_STATE} = $3"
SELECT_HELD = f"""
SELECT c.id, c.template_id, t.name, {_HELD_STATE} AS state, c.origin, c.valid_from,
    c.valid_until, c.issued_at, c.order_id, c.discount_cents, t.kind, t.threshold_cents,
    t.amount_off_cents, t.percent_off, t.max_discount_cents, t.scope, t.scope_ids,
    t.usable_on_flash_sales
FROM coupon.coupons c JOIN coupon.templates t ON t.id = c.template_id
WHERE {_HELD_FILTER}
ORDER BY c.valid_until, c.id LIMIT $4 OFFSET $5
"""
COUNT_HELD = f"SELECT count(*) FROM coupon.coupons c WHERE {_HELD_FILTER}"
COUPON_COUNTS = """
SELECT count(*) FILTER (WHERE origin = 'claim') AS claimed,
       count(*) FILTER (WHERE origin = 'grant') AS granted,
       count(*) FILTER (WHERE state = 'available' AND valid_until > $2) AS available,
       count(*) FILTER (WHERE state = 'locked') AS locked,
       count(*) FILTER (WHERE state = 'used') AS used,
       count(*) FILTER (WHERE state = 'expired'
                        OR (state = 'available' AND valid_until <= $2)) AS expired,
       count(*) FILTER (WHERE state = 'revoked') AS revoked
FROM coupon.coupons WHERE template_id = $1
"""


def _template(row: asyncpg.Record) -> Template:
    values = dict(row)
    values["kind"] = Kind(values["kind"])
    values["validity"] = Validity(values["validity"])
    values["scope"] = Scope(values["scope"])
    values["scope_ids"] = tuple(values["scope_ids"])
    return Template(**values)


def _terms_args(new: NewTemplate) -> tuple[Any, ...]:
    return (
        new.name,
        new.kind.value,
        new.threshold_cents,
        new.amount_off_cents,
        new.percent_off,
        new.max_discount_cents,
        new.validity.value,
        new.valid_from,
        new.valid_until,
        new.valid_days,
        new.quantity,
        new.per_user_limit,
        new.claimable,
        new.claim_starts_at,
        new.claim_ends_at,
        new.scope.value,
        list(new.scope_ids),
        new.usable_on_flash_sales,
    )


class TemplateChange:
    """One admin change of one template: its row locked (FOR UPDATE) inside the
    transaction the caller opened on `conn`, the audit entry written in it."""

    def __init__(self, conn: asyncpg.Connection, template_id: int) -> None:
        self.conn = conn
        self._id = template_id

    async def template(self) -> Template | None:
        row = await self.conn.fetchrow(SELECT_TEMPLATE_FOR_UPDATE, self._id)
        return None if row is None else _template(row)

    async def edit(self, edited: NewTemplate) -> Template:
        return _template(await self.conn.fetchrow(UPDATE_TERMS, self._id, *_terms_args(edited)))

    async def set_quantity(self, quantity: int) -> Template:
        return _template(await self.conn.fetchrow(SET_QUANTITY, self._id, quantity))

    async def set_ended_early(self, at: datetime) -> Template | None:
        row = await self.conn.fetchrow(SET_ENDED_EARLY, self._id, at)
        return None if row is None else _template(row)

    async def audit(
        self, actor: str, action: str, before: dict[str, Any] | None, after: dict[str, Any]
    ) -> None:
        entry = AuditEntry(actor, action, TEMPLATE_TARGET, str(self._id), before, after)
        await record_audit(self.conn, AUDIT, entry)


class TemplateRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, new: NewTemplate, actor: str) -> Template:
        """Insert the template and its template.create audit entry in one transaction."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(INSERT_TEMPLATE, *_terms_args(new), actor)
            template = _template(row)
            await TemplateChange(conn, template.id).audit(
                actor, "template.create", None, {"id": template.id, **creation_values(new)}
            )
        return template

    async def get(self, template_id: int) -> Template | None:
        row = await self._pool.fetchrow(SELECT_TEMPLATE, template_id)
        return None if row is None else _template(row)

    async def page(
        self, state: str | None, page: Page, now: datetime
    ) -> tuple[list[Template], int]:
        """Newest first, optionally only those in `state` at `now`; and how many."""
        rows = await self._pool.fetch(LIST_TEMPLATES, now, state, page.limit, page.offset)
        total = await self._pool.fetchval(COUNT_TEMPLATES, now, state)
        return [_template(r) for r in rows], int(total)

    async def live_warmed(self, now: datetime) -> list[Template]:
        """Templates live at `now` whose quantity is in Redis (the remaining gauge)."""
        return [_template(r) for r in await self._pool.fetch(SELECT_LIVE_WARMED, now)]

    async def unwarmed(self) -> list[Template]:
        return [_template(r) for r in await self._pool.fetch(SELECT_UNWARMED)]

    async def mark_warmed(self, template_id: int) -> None:
        await self._pool.execute(MARK_WARMED, template_id)

    @contextlib.asynccontextmanager
    async def locked(self, template_id: int) -> AsyncIterator[asyncpg.Connection]:
        """A connection holding the template's admin lock (see LOCK_TEMPLATE). A
        connection that breaks releases it with its session."""
        async with self._pool.acquire() as conn:
            await conn.execute(LOCK_TEMPLATE, template_id)
            try:
                yield conn
            finally:
                if not conn.is_closed():
                    await conn.execute(UNLOCK_TEMPLATE, template_id)

    async def audit_trail(self, template_id: int) -> list[dict[str, Any]]:
        return await audit_trail(self._pool, AUDIT, TEMPLATE_TARGET, str(template_id))

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")


def _held(row: asyncpg.Record) -> HeldCoupon:
    terms = Terms(
        kind=Kind(row["kind"]),
        threshold_cents=row["threshold_cents"],
        amount_off_cents=row["amount_off_cents"],
        percent_off=row["percent_off"],
        max_discount_cents=row["max_discount_cents"],
        scope=Scope(row["scope"]),
        scope_ids=tuple(row["scope_ids"]),
        usable_on_flash_sales=row["usable_on_flash_sales"],
    )
    return HeldCoupon(
        id=row["id"],
        template_id=row["template_id"],
        name=row["name"],
        state=row["state"],
        origin=row["origin"],
        valid_from=row["valid_from"],
        valid_until=row["valid_until"],
        issued_at=row["issued_at"],
        order_id=row["order_id"],
        discount_cents=row["discount_cents"],
        terms=terms,
    )


class CouponRecord:
    """Issued coupons in PostgreSQL, from the coupons topic (at least once), and what the
    shoppers and the merchants read of them."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, coupons: Sequence[IssuedCoupon]) -> int:
        """Insert a batch in one statement; coupons already recorded are left as they
        are (a coupon may be locked or used by now). Returns how many were new."""
        if not coupons:
            return 0
        status = await self._pool.execute(
            RECORD_COUPONS,
            [c.coupon_id for c in coupons],
            [c.template_id for c in coupons],
            [c.user_id for c in coupons],
            [c.origin for c in coupons],
            [c.grant_order_id for c in coupons],
            [c.grant_rule_id for c in coupons],
            [c.valid_from for c in coupons],
            [c.valid_until for c in coupons],
            [c.issued_at for c in coupons],
        )
        return int(status.rsplit(" ", 1)[-1])

    async def held(
        self, user_id: str, state: str, page: Page, now: datetime
    ) -> tuple[list[HeldCoupon], int]:
        """A shopper's coupons in `state` (as they see it at `now`), the soonest to end
        first; and how many."""
        rows = await self._pool.fetch(SELECT_HELD, user_id, now, state, page.limit, page.offset)
        total = await self._pool.fetchval(COUNT_HELD, user_id, now, state)
        return [_held(r) for r in rows], int(total)

    async def counts(self, template_id: int, now: datetime) -> CouponCounts:
        row = await self._pool.fetchrow(COUPON_COUNTS, template_id, now)
        return CouponCounts(**dict(row))
