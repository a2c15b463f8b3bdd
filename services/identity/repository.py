"""PostgreSQL adapter of the identity service: shoppers, refresh-token families, the outbox."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from services.common.events import rfc3339
from services.common.pg_outbox import OutboxSql, insert_outbox
from services.identity.domain import (
    MERCHANT,
    ProviderSession,
    RefreshVerdict,
    StoredRefreshToken,
    judge_refresh,
    merchant_number,
    new_user_id,
    registration_event,
)

OUTBOX = OutboxSql.for_schema("identity")

# xmax = 0 only on a row this statement inserted: tells a first login from a return.
UPSERT_USER = """
INSERT INTO identity.users (id, appid, openid, unionid) VALUES ($1, $2, $3, $4)
ON CONFLICT (appid, openid) DO UPDATE
    SET last_login_at = now(), unionid = COALESCE(EXCLUDED.unionid, identity.users.unionid)
RETURNING id, created_at, (xmax = 0) AS created
"""
INSERT_FAMILY = """
INSERT INTO identity.token_families (id, kind, subject) VALUES ($1, $2, $3)
"""
INSERT_REFRESH = """
INSERT INTO identity.refresh_tokens (token_hash, family_id, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3))
"""
# Both rows are locked: two refreshes of one token queue, and the second reads the token
# row again once the first committed (PostgreSQL re-reads a locked row that changed), so
# it sees the token used instead of rotating it a second time.
LOCK_REFRESH = """
SELECT t.family_id, t.used_at IS NOT NULL AS used, extract(epoch FROM t.expires_at) AS expires,
       f.revoked_at IS NOT NULL AS family_revoked, f.kind, f.subject,
       extract(epoch FROM now()) AS now
FROM identity.refresh_tokens t JOIN identity.token_families f ON f.id = t.family_id
WHERE t.token_hash = $1
FOR UPDATE OF t, f
"""
USE_REFRESH = "UPDATE identity.refresh_tokens SET used_at = now() WHERE token_hash = $1"
REVOKE_FAMILY = """
UPDATE identity.token_families SET revoked_at = now(), revoke_reason = $2
WHERE id = $1 AND revoked_at IS NULL
"""
REVOKE_BY_TOKEN = """
UPDATE identity.token_families SET revoked_at = now(), revoke_reason = $2
WHERE id = (SELECT family_id FROM identity.refresh_tokens WHERE token_hash = $1)
  AND revoked_at IS NULL
"""
REVOKE_SUBJECT = """
UPDATE identity.token_families SET revoked_at = now(), revoke_reason = $3
WHERE kind = $1 AND subject = $2 AND revoked_at IS NULL
"""
MERCHANT_ROLES = """
SELECT roles FROM identity.merchants WHERE id = $1 AND disabled_at IS NULL
"""
# Tokens past their expiry by more than the grace are deleted in batches, then families
# left without tokens.
PURGE_REFRESH = """
DELETE FROM identity.refresh_tokens WHERE token_hash IN (
    SELECT token_hash FROM identity.refresh_tokens
    WHERE expires_at < now() - make_interval(secs => $1) LIMIT $2
)
"""
PURGE_FAMILIES = """
DELETE FROM identity.token_families f
WHERE f.created_at < now() - make_interval(secs => $1)
  AND NOT EXISTS (SELECT 1 FROM identity.refresh_tokens t WHERE t.family_id = f.id)
"""


@dataclass(frozen=True, slots=True)
class ShopperLogin:
    user_id: str
    created: bool


@dataclass(frozen=True, slots=True)
class Rotation:
    verdict: RefreshVerdict
    kind: str = ""
    subject: str = ""
    # Merchant roles are read again at each refresh: a disabled account or a removed role
    # takes effect within one access-token lifetime.
    roles: tuple[str, ...] = ()


class IdentityRepository:
    def __init__(self, pool: asyncpg.Pool, users_topic: str) -> None:
        self._pool = pool
        self._users_topic = users_topic

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")

    async def login_shopper(
        self, appid: str, session: ProviderSession, refresh_hash: bytes, refresh_ttl: int
    ) -> ShopperLogin:
        """Find or create the user, announce a new one (outbox, same transaction) and start
        a refresh-token family: all or nothing."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                UPSERT_USER, new_user_id(), appid, session.openid, session.unionid
            )
            assert row is not None
            user_id: str = row["id"]
            if row["created"]:
                event = registration_event(user_id, appid, session, rfc3339(row["created_at"]))
                await insert_outbox(conn, OUTBOX, self._users_topic, [event])
            await start_family(conn, "shopper", user_id, refresh_hash, refresh_ttl)
        return ShopperLogin(user_id, bool(row["created"]))

    async def rotate(self, old_hash: bytes, new_hash: bytes, ttl: dict[str, int]) -> Rotation:
        """Use a refresh token up and issue the next (ttl per kind), or say why not. A reused
        token revokes its family in the same transaction."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(LOCK_REFRESH, old_hash)
            stored = (
                None
                if row is None
                else StoredRefreshToken(row["family_revoked"], row["used"], float(row["expires"]))
            )
            verdict = judge_refresh(stored, float(row["now"]) if row else 0.0)
            if row is None:
                return Rotation(verdict)
            kind, subject = row["kind"], row["subject"]
            if verdict is RefreshVerdict.REUSED:
                await conn.execute(REVOKE_FAMILY, row["family_id"], "reuse")
            if verdict is not RefreshVerdict.ROTATE:
                return Rotation(verdict, kind, subject)
            roles: tuple[str, ...] = ()
            if kind == MERCHANT:
                found = await conn.fetchval(MERCHANT_ROLES, merchant_number(subject))
                if found is None:
                    await conn.execute(REVOKE_FAMILY, row["family_id"], "account_disabled")
                    return Rotation(RefreshVerdict.REVOKED, kind, subject)
                roles = tuple(found)
            await conn.execute(USE_REFRESH, old_hash)
            await conn.execute(INSERT_REFRESH, new_hash, row["family_id"], ttl[kind])
            return Rotation(verdict, kind, subject, roles)

    async def revoke(self, token_hash: bytes, reason: str) -> bool:
        """Revoke the family of a refresh token (logout); False if none was live."""
        status = await self._pool.execute(REVOKE_BY_TOKEN, token_hash, reason)
        return bool(status != "UPDATE 0")

    async def purge_expired(self, grace_seconds: float, batch: int = 10_000) -> int:
        status = await self._pool.execute(PURGE_REFRESH, grace_seconds, batch)
        await self._pool.execute(PURGE_FAMILIES, grace_seconds)
        return int(status.split()[-1])


async def start_family(
    conn: asyncpg.Connection, kind: str, subject: str, refresh_hash: bytes, ttl_seconds: int
) -> None:
    """A new login's refresh-token family with its first token (inside the caller's
    transaction)."""
    family = uuid.uuid4()
    await conn.execute(INSERT_FAMILY, family, kind, subject)
    await conn.execute(INSERT_REFRESH, refresh_hash, family, float(ttl_seconds))


async def revoke_subject(conn: asyncpg.Connection, kind: str, subject: str, reason: str) -> None:
    """Revoke every live login of a subject (a disabled merchant, a changed password)."""
    await conn.execute(REVOKE_SUBJECT, kind, subject, reason)
