"""PostgreSQL adapter of the 下单返券 rules (coupon.grant_rules), with their audit trail
(coupon.admin_audit, written in the transaction of each change)."""

from __future__ import annotations

from typing import Any

import asyncpg

from services.common.audit import AuditEntry, AuditSql, audit_trail, changed_fields, record_audit
from services.common.errors import NotFound
from services.coupon.rules_domain import (
    AUDIT_TARGET,
    GrantRule,
    NewRule,
    RuleEdit,
    RuleFilter,
    edited,
    no_such_template,
    rule_view,
)

AUDIT = AuditSql.for_schema("coupon")
_COLUMNS = "id, name, trigger, sale_id, template_id, active, created_by, created_at, updated_at"
# The template row is locked (KEY SHARE, as the foreign key would) so that it cannot go
# between the check and the insert.
TEMPLATE_EXISTS = "SELECT 1 FROM coupon.templates WHERE id = $1 FOR KEY SHARE"
INSERT_RULE = f"""
INSERT INTO coupon.grant_rules (name, trigger, sale_id, template_id, active, created_by)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING {_COLUMNS}
"""
SELECT_RULE = f"SELECT {_COLUMNS} FROM coupon.grant_rules WHERE id = $1"
LOCK_RULE = f"SELECT {_COLUMNS} FROM coupon.grant_rules WHERE id = $1 FOR UPDATE"
UPDATE_RULE = f"""
UPDATE coupon.grant_rules SET name = $2, active = $3, updated_at = now() WHERE id = $1
RETURNING {_COLUMNS}
"""
_FILTER = """
WHERE ($1::bigint IS NULL OR template_id = $1) AND ($2::boolean IS NULL OR active = $2)
"""
LIST_RULES = f"""
SELECT {_COLUMNS} FROM coupon.grant_rules {_FILTER}
ORDER BY id DESC LIMIT $3 OFFSET $4
"""
COUNT_RULES = f"SELECT count(*) FROM coupon.grant_rules {_FILTER}"


def _rule(row: asyncpg.Record) -> GrantRule:
    return GrantRule(**dict(row))


class RuleRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, new: NewRule, actor: str) -> GrantRule:
        async with self._pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(TEMPLATE_EXISTS, new.template_id) is None:
                raise no_such_template()
            row = await conn.fetchrow(
                INSERT_RULE,
                new.name,
                new.trigger.value,
                new.sale_id,
                new.template_id,
                new.active,
                actor,
            )
            assert row is not None
            rule = _rule(row)
            view = rule_view(rule)
            after = {k: view[k] for k in ("name", "trigger", "sale_id", "template_id", "active")}
            await record_audit(
                conn,
                AUDIT,
                AuditEntry(actor, "rule.create", AUDIT_TARGET, str(rule.id), None, after),
            )
        return rule

    async def get(self, rule_id: int) -> GrantRule:
        row = await self._pool.fetchrow(SELECT_RULE, rule_id)
        if row is None:
            raise NotFound("rule")
        return _rule(row)

    async def edit(self, rule_id: int, edit: RuleEdit, actor: str) -> GrantRule:
        """Rename, pause (active false: orders paid from now on are not granted) or resume.
        An edit that changes nothing writes nothing."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(LOCK_RULE, rule_id)
            if row is None:
                raise NotFound("rule")
            rule = _rule(row)
            wanted = edited(rule, edit)
            before, after = changed_fields(rule.editable(), wanted)
            if not after:
                return rule
            updated = await conn.fetchrow(UPDATE_RULE, rule_id, wanted["name"], wanted["active"])
            assert updated is not None
            await record_audit(
                conn,
                AUDIT,
                AuditEntry(actor, "rule.edit", AUDIT_TARGET, str(rule_id), before, after),
            )
        return _rule(updated)

    async def page(self, wanted: RuleFilter) -> tuple[list[GrantRule], int]:
        """A page of rules, newest first, and how many match in all."""
        args = (wanted.template_id, wanted.active)
        rows = await self._pool.fetch(LIST_RULES, *args, wanted.page.limit, wanted.page.offset)
        total = await self._pool.fetchval(COUNT_RULES, *args)
        return [_rule(r) for r in rows], int(total)

    async def audit_trail(self, rule_id: int) -> list[dict[str, Any]]:
        return await audit_trail(self._pool, AUDIT, AUDIT_TARGET, str(rule_id))
