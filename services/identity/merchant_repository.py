"""PostgreSQL adapter of merchant accounts: the accounts, failed-login counters, the admin
login audit, and the refresh-token family a successful login starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from services.identity.domain import MERCHANT, merchant_subject
from services.identity.merchants import (
    ACCOUNT_SCOPE,
    IP_SCOPE,
    AuditOutcome,
    LockoutPolicy,
    NameTaken,
    account_key,
    address_key,
    audit_name,
)
from services.identity.repository import revoke_subject, start_family

MERCHANT_COLUMNS = """
id, name, password_hash, roles, disabled_at, created_at, last_login_at
"""
INSERT_MERCHANT = f"""
INSERT INTO identity.merchants (name, password_hash, roles) VALUES ($1, $2, $3)
RETURNING {MERCHANT_COLUMNS}
"""
FIND_MERCHANT = f"""
SELECT {MERCHANT_COLUMNS} FROM identity.merchants WHERE lower(name) = lower($1)
"""
# With the account's lock, if one is running (names are ASCII, so lower() here and
# str.lower() in merchants.account_key agree).
LIST_MERCHANTS = """
SELECT m.id, m.name, m.password_hash, m.roles, m.disabled_at, m.created_at, m.last_login_at,
       f.blocked_until
FROM identity.merchants m
LEFT JOIN identity.login_failures f
    ON f.scope = 'account' AND f.key = lower(m.name) AND f.blocked_until > now()
ORDER BY m.id
"""
SET_PASSWORD = """
UPDATE identity.merchants SET password_hash = $2, password_changed_at = now()
WHERE lower(name) = lower($1)
RETURNING id
"""
SET_DISABLED = """
UPDATE identity.merchants
SET disabled_at = CASE WHEN $2::boolean THEN coalesce(disabled_at, now()) END
WHERE lower(name) = lower($1)
RETURNING id
"""
CLEAR_FAILURES = "DELETE FROM identity.login_failures WHERE scope = $1 AND key = $2"
BLOCKED_SECONDS = """
SELECT coalesce(max(extract(epoch FROM blocked_until - now())), 0)::float8
FROM identity.login_failures
WHERE ((scope = 'account' AND key = $1) OR (scope = 'ip' AND key = $2))
  AND blocked_until > now()
"""
# One failure, counted and given its wait in one statement under the row's lock:
# concurrent failures queue on the row, so none is lost and the waits grow in order.
#   $3: the waits after the 1st, 2nd, ... failure (LockoutPolicy.schedule(): every later
#       failure waits as long as the last entry); a wait of 0 leaves blocked_until NULL.
#   $4: seconds of quiet (no failure, no wait running) after which the count starts again.
# While blocked nothing is counted (the WHERE): no row comes back and the caller answers
# with the wait left. Mirrors LockoutPolicy.counted.
RECORD_FAILURE = """
INSERT INTO identity.login_failures AS f (scope, key, failures, last_failure_at, blocked_until)
VALUES ($1, $2, 1, now(), now() + make_interval(secs => nullif(($3::float8[])[1], 0)))
ON CONFLICT (scope, key) DO UPDATE
SET (failures, last_failure_at, blocked_until) = (
    SELECT n, now(),
           now() + make_interval(secs => nullif(($3::float8[])[least(n, cardinality($3))], 0))
    FROM (
        SELECT CASE WHEN greatest(f.last_failure_at, f.blocked_until)
                              < now() - make_interval(secs => $4::float8)
                    THEN 1 ELSE f.failures + 1 END AS n
    ) AS counted
)
WHERE f.blocked_until IS NULL OR f.blocked_until <= now()
RETURNING failures, coalesce(extract(epoch FROM blocked_until - now()), 0)::float8 AS wait
"""
# A success locks the name's and the address's counters first: a lock set by failures
# that finished while this password was being checked wins over it. In the order
# record_failure takes them (account, then ip), so the two cannot deadlock.
LOCK_COUNTERS = """
SELECT coalesce(extract(epoch FROM blocked_until - now()), 0)::float8 AS blocked
FROM identity.login_failures
WHERE (scope = 'account' AND key = $1) OR (scope = 'ip' AND key = $2)
ORDER BY scope
FOR UPDATE
"""
# Only if the account is still enabled with the password just checked (a disable or a
# new password committed meanwhile wins). $3: a rehash of the same password, or NULL.
RECORD_LOGIN = """
UPDATE identity.merchants
SET last_login_at = now(), password_hash = coalesce($3, password_hash)
WHERE id = $1 AND disabled_at IS NULL AND password_hash = $2
RETURNING roles
"""
# Counters the next failure would start again anyway (RECORD_FAILURE's quiet rule): a
# sprayer of made-up names leaves no lasting rows.
PURGE_FAILURES = """
DELETE FROM identity.login_failures
WHERE greatest(last_failure_at, blocked_until) < now() - make_interval(
    secs => CASE scope WHEN 'account' THEN $1::float8 ELSE $2::float8 END
)
"""
INSERT_AUDIT = """
INSERT INTO identity.admin_login_audit (name, merchant_id, client_ip, outcome)
VALUES ($1, $2, $3, $4)
"""


@dataclass(frozen=True, slots=True)
class Merchant:
    id: int
    name: str
    # Not in the repr: a Merchant printed or logged never shows the hash.
    password_hash: str = field(repr=False)
    roles: tuple[str, ...]
    disabled_at: datetime | None
    created_at: datetime
    last_login_at: datetime | None
    blocked_until: datetime | None = None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


def _merchant(row: asyncpg.Record) -> Merchant:
    return Merchant(
        id=row["id"],
        name=row["name"],
        password_hash=row["password_hash"],
        roles=tuple(row["roles"]),
        disabled_at=row["disabled_at"],
        created_at=row["created_at"],
        last_login_at=row["last_login_at"],
        blocked_until=row.get("blocked_until"),
    )


@dataclass(frozen=True, slots=True)
class Attempt:
    """A login attempt as the audit records it."""

    name: str  # as typed
    merchant_id: int | None
    client_ip: str

    @property
    def account_key(self) -> str:
        return account_key(self.name)

    @property
    def address_key(self) -> str:
        return address_key(self.client_ip)


@dataclass(frozen=True, slots=True)
class FailureRecord:
    # False: a lock set meanwhile refused the attempt before it was counted.
    counted: bool
    # counted: the wait this failure started (0: none); otherwise the wait left.
    wait_seconds: float


@dataclass(frozen=True, slots=True)
class SuccessRecord:
    # None: not logged in (locked meanwhile, or the account was disabled or given a new
    # password while this one was being checked).
    roles: tuple[str, ...] | None
    blocked_seconds: float = 0.0


class MerchantRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, name: str, password_hash: str, roles: tuple[str, ...]) -> Merchant:
        try:
            row = await self._pool.fetchrow(INSERT_MERCHANT, name, password_hash, list(roles))
        except asyncpg.UniqueViolationError:
            raise NameTaken(name) from None
        assert row is not None
        return _merchant(row)

    async def find(self, name: str) -> Merchant | None:
        row = await self._pool.fetchrow(FIND_MERCHANT, name)
        return None if row is None else _merchant(row)

    async def list(self) -> list[Merchant]:
        return [_merchant(r) for r in await self._pool.fetch(LIST_MERCHANTS)]

    async def set_password(self, name: str, password_hash: str) -> int | None:
        """The account's new password; every live login of it is revoked (its access
        tokens expire within their lifetime). None: no such account."""
        async with self._pool.acquire() as conn, conn.transaction():
            merchant_id: int | None = await conn.fetchval(SET_PASSWORD, name, password_hash)
            if merchant_id is not None:
                subject = merchant_subject(merchant_id)
                await revoke_subject(conn, MERCHANT, subject, "password_changed")
        return merchant_id

    async def set_disabled(self, name: str, disabled: bool) -> int | None:
        """Disable (revoking every live login) or enable an account. None: no such
        account."""
        async with self._pool.acquire() as conn, conn.transaction():
            merchant_id: int | None = await conn.fetchval(SET_DISABLED, name, disabled)
            if merchant_id is not None and disabled:
                subject = merchant_subject(merchant_id)
                await revoke_subject(conn, MERCHANT, subject, "account_disabled")
        return merchant_id

    async def clear_failures(self, scope: str, key: str) -> bool:
        status = await self._pool.execute(CLEAR_FAILURES, scope, key)
        return bool(status != "DELETE 0")

    async def blocked_seconds(self, attempt: Attempt) -> float:
        """How long the name or the address must still wait (0: neither is locked)."""
        return await _blocked_seconds(self._pool, attempt)

    async def purge_stale_failures(self, account: LockoutPolicy, address: LockoutPolicy) -> int:
        """Delete failure counters past their quiet period; how many went."""
        status = await self._pool.execute(
            PURGE_FAILURES, account.forget_after_seconds, address.forget_after_seconds
        )
        return int(status.split()[-1])

    async def audit(self, attempt: Attempt, outcome: AuditOutcome) -> None:
        await _audit(self._pool, attempt, outcome)

    async def record_failure(
        self,
        attempt: Attempt,
        outcome: AuditOutcome,
        account: LockoutPolicy,
        address: LockoutPolicy,
    ) -> FailureRecord:
        """Count a failed login against the name and the address, and audit it; both or
        neither. If either got locked while the password was being checked, nothing is
        counted and the attempt is audited as locked."""
        async with self._pool.acquire() as conn:
            try:
                async with conn.transaction():
                    waits = [
                        await _count_failure(conn, ACCOUNT_SCOPE, attempt.account_key, account),
                        await _count_failure(conn, IP_SCOPE, attempt.address_key, address),
                    ]
                    await _audit(conn, attempt, outcome)
                return FailureRecord(True, max(waits))
            except _StillLocked:
                pass  # rolled back: neither counter moved
            left = await _blocked_seconds(conn, attempt)
            await _audit(conn, attempt, AuditOutcome.LOCKED)
        return FailureRecord(False, left)

    async def record_success(
        self,
        merchant: Merchant,
        attempt: Attempt,
        rehashed: str | None,
        refresh_hash: bytes,
        refresh_ttl: int,
    ) -> SuccessRecord:
        """A checked password: reset the name's failure count (not the address's), note
        the login (and a rehash), start its refresh-token family and audit it, in one
        transaction; or nothing if a lock, a disable or a new password came first."""
        async with self._pool.acquire() as conn, conn.transaction():
            blocked = [
                r["blocked"]
                for r in await conn.fetch(LOCK_COUNTERS, attempt.account_key, attempt.address_key)
            ]
            if max(blocked, default=0.0) > 0:
                await _audit(conn, attempt, AuditOutcome.LOCKED)
                return SuccessRecord(None, max(blocked))
            roles = await conn.fetchval(RECORD_LOGIN, merchant.id, merchant.password_hash, rehashed)
            if roles is None:
                return SuccessRecord(None)
            await conn.execute(CLEAR_FAILURES, ACCOUNT_SCOPE, attempt.account_key)
            subject = merchant_subject(merchant.id)
            await start_family(conn, MERCHANT, subject, refresh_hash, refresh_ttl)
            await _audit(conn, attempt, AuditOutcome.OK)
        return SuccessRecord(tuple(roles))


async def _audit(
    conn: asyncpg.Connection | asyncpg.Pool, attempt: Attempt, outcome: AuditOutcome
) -> None:
    await conn.execute(
        INSERT_AUDIT,
        audit_name(attempt.name),
        attempt.merchant_id,
        attempt.client_ip,
        outcome.value,
    )


class _StillLocked(Exception):
    """A counter is locked: the failure is not counted (raised to roll back)."""


async def _count_failure(
    conn: asyncpg.Connection, scope: str, key: str, policy: LockoutPolicy
) -> float:
    """One more failure of a counter; the wait it starts (0: none)."""
    row = await conn.fetchrow(
        RECORD_FAILURE, scope, key, list(policy.schedule()), policy.forget_after_seconds
    )
    if row is None:
        raise _StillLocked
    return float(row["wait"])


async def _blocked_seconds(conn: asyncpg.Connection | asyncpg.Pool, attempt: Attempt) -> float:
    return float(await conn.fetchval(BLOCKED_SECONDS, attempt.account_key, attempt.address_key))
