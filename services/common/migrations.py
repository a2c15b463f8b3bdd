"""Applies each service's SQL migrations (services/<name>/migrations/NNN_*.sql) once, in order.

Safe to run from several processes at once: an advisory lock serializes runners.
"""

from __future__ import annotations

import importlib.resources
from urllib.parse import urlsplit, urlunsplit

import asyncpg

MIGRATING_SERVICES = ("seckill", "order", "groupbuy", "notify", "identity", "coupon")
_LOCK_ID = 0x5EC1_0001

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS public.schema_migrations (
    service    text        NOT NULL,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, name)
)
"""


def migration_files(service: str) -> list[tuple[str, str]]:
    """(file name, SQL) of a service's migrations, in name order."""
    folder = importlib.resources.files(f"services.{service}").joinpath("migrations")
    files = sorted((f.name, f.read_text()) for f in folder.iterdir() if f.name.endswith(".sql"))
    return files


async def migrate(database_url: str, services: tuple[str, ...] = MIGRATING_SERVICES) -> list[str]:
    """Apply pending migrations; returns the ones applied as 'service/file'."""
    applied: list[str] = []
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
        try:
            await conn.execute(_CREATE_LEDGER)
            for service in services:
                done = {
                    r["name"]
                    for r in await conn.fetch(
                        "SELECT name FROM public.schema_migrations WHERE service = $1", service
                    )
                }
                for name, sql in migration_files(service):
                    if name in done:
                        continue
                    async with conn.transaction():
                        await conn.execute(sql)
                        await conn.execute(
                            "INSERT INTO public.schema_migrations (service, name) VALUES ($1, $2)",
                            service,
                            name,
                        )
                    applied.append(f"{service}/{name}")
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    finally:
        await conn.close()
    return applied


async def ensure_database(database_url: str) -> bool:
    """Create the database named in the URL if it does not exist; True if created."""
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    if not name:
        return False
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        # Identifiers cannot be bound as parameters; quote_ident does the escaping.
        quoted = await conn.fetchval("SELECT quote_ident($1)", name)
        try:
            await conn.execute(f"CREATE DATABASE {quoted}")
        except asyncpg.DuplicateDatabaseError:
            return False
        return True
    finally:
        await conn.close()
