"""Merchant accounts on the real PostgreSQL: the account command, POST /api/auth/admin/login
through an aiohttp app of just these routes, lockouts, the audit, revocations."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher
from prometheus_client import CollectorRegistry, Counter, Histogram

from services.common.auth import principal_from_header
from services.common.http import HttpMetrics, errors_and_metrics_middleware
from services.common.settings import Settings
from services.identity.admin import Console, run
from services.identity.admin_routes import ADMIN_LOGIN, ADMIN_LOGIN_PATH, add_admin_routes
from services.identity.domain import MERCHANT, RefreshVerdict, refresh_token_hash
from services.identity.merchant_accounts import AdminLogin, MerchantAccounts
from services.identity.merchant_repository import MerchantRepository
from services.identity.passwords import Passwords
from services.identity.repository import IdentityRepository
from services.identity.tokens import TokenIssuer
from tests.helpers import settings_env, started_client

Client = TestClient[Any, Any]

RESET_IDENTITY = """
TRUNCATE identity.admin_login_audit, identity.login_failures, identity.refresh_tokens,
    identity.token_families, identity.merchants RESTART IDENTITY CASCADE
"""
PASSWORD = "correct horse battery"
WRONG = "incorrect horse battery"
WRONG_ANSWER = {"error": "invalid_credentials", "message": "name or password is wrong"}
# Three failures per name, five per address, then 30 s doubling up to 10 min.
MAX_FAILURES = 3
IP_MAX_FAILURES = 5


class LoginCounters:
    """Stands for services.identity.metrics.IdentityMetrics (the same two metrics)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.logins = Counter("identity_logins_total", "", ["kind", "outcome"], registry=registry)
        self.login_seconds = Histogram("identity_login_seconds", "", ["kind"], registry=registry)


@pytest.fixture
async def mc_settings(base_settings: Settings) -> Settings:
    settings = dataclasses.replace(
        base_settings,
        admin_login_max_failures=MAX_FAILURES,
        admin_login_ip_max_failures=IP_MAX_FAILURES,
        admin_lockout_base_seconds=30.0,
        admin_lockout_max_seconds=600.0,
    )
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(RESET_IDENTITY)
    finally:
        await conn.close()
    return settings


@pytest.fixture
async def db(mc_settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(mc_settings.database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def pool(mc_settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(mc_settings.database_url, min_size=1, max_size=4)
    assert created is not None
    yield created
    await created.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def client(
    mc_settings: Settings, pool: asyncpg.Pool, registry: CollectorRegistry
) -> AsyncIterator[Client]:
    app = web.Application(middlewares=[errors_and_metrics_middleware(HttpMetrics(registry))])
    issuer = TokenIssuer(mc_settings.jwt_keys(), mc_settings)
    app[ADMIN_LOGIN] = AdminLogin.build(pool, issuer, mc_settings, LoginCounters(registry))
    add_admin_routes(app)
    started = await started_client(app)
    yield started
    await started.close()


def console(stdin: str = "", *answers: str) -> Console:
    """A console with this on stdin; `answers` are what the terminal's prompts get."""
    replies = iter(answers)
    return Console(
        stdin=io.StringIO(stdin),
        stdout=io.StringIO(),
        stderr=io.StringIO(),
        ask=lambda _prompt: next(replies),
        interactive=bool(answers),
    )


async def command(settings: Settings, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    used = console(stdin)
    code = await run(list(argv), settings, used)
    assert isinstance(used.stdout, io.StringIO) and isinstance(used.stderr, io.StringIO)
    return code, used.stdout.getvalue(), used.stderr.getvalue()


async def create(settings: Settings, name: str = "alice", *roles: str) -> None:
    flags = [arg for role in roles for arg in ("--role", role)]
    code, _, err = await command(
        settings, "create", name, *flags, "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert code == 0, err


async def login(
    client: Client, name: str = "alice", password: str = PASSWORD, ip: str | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {"X-Real-IP": ip} if ip else {}
    resp = await client.post(
        ADMIN_LOGIN_PATH, json={"name": name, "password": password}, headers=headers
    )
    return resp.status, dict(await resp.json()), dict(resp.headers)


async def audit(db: asyncpg.Connection) -> list[tuple[Any, ...]]:
    rows = await db.fetch(
        "SELECT name, merchant_id, client_ip, outcome FROM identity.admin_login_audit ORDER BY id"
    )
    return [tuple(r) for r in rows]


async def failures(db: asyncpg.Connection, scope: str, key: str) -> int | None:
    return await db.fetchval(  # type: ignore[no-any-return]
        "SELECT failures FROM identity.login_failures WHERE scope = $1 AND key = $2", scope, key
    )


async def expire_locks(db: asyncpg.Connection) -> None:
    """As if the waits were over (without waiting for them)."""
    await db.execute(
        "UPDATE identity.login_failures SET blocked_until = now() - interval '1 second'"
        " WHERE blocked_until IS NOT NULL"
    )


async def live_families(db: asyncpg.Connection, subject: str) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM identity.token_families"
            " WHERE kind = 'merchant' AND subject = $1 AND revoked_at IS NULL",
            subject,
        )
    )


def counted(registry: CollectorRegistry, outcome: str) -> float:
    labels = {"kind": "admin", "outcome": outcome}
    return registry.get_sample_value("identity_logins_total", labels) or 0.0


async def test_an_account_made_by_the_command_logs_in_with_an_admin_token(
    client: Client, mc_settings: Settings, db: asyncpg.Connection, registry: CollectorRegistry
) -> None:
    await create(mc_settings, "alice")

    status, body, headers = await login(client, "Alice", ip="198.51.100.4")

    assert status == 200, body
    assert body["merchant"] == {"id": 1, "name": "alice", "roles": ["admin"]}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == mc_settings.admin_access_token_ttl_seconds
    assert body["refresh_expires_in"] == mc_settings.admin_refresh_token_ttl_seconds
    assert headers["Cache-Control"] == "no-store"
    who = principal_from_header(f"Bearer {body['access_token']}", mc_settings.jwt_keys())
    assert (who.user_id, who.roles, who.is_admin) == ("merchant:1", frozenset({"admin"}), True)
    assert await audit(db) == [("Alice", 1, "198.51.100.4", "ok")]
    assert await live_families(db, "merchant:1") == 1
    assert await db.fetchval("SELECT last_login_at IS NOT NULL FROM identity.merchants")
    assert counted(registry, "ok") == 1


async def test_the_refresh_token_of_a_merchant_login_rotates_with_the_account_roles(
    client: Client, mc_settings: Settings, pool: asyncpg.Pool
) -> None:
    await create(mc_settings, "ops", "operator", "viewer")
    status, body, _ = await login(client, "ops")
    assert status == 200 and body["merchant"]["roles"] == ["operator", "viewer"]

    repo = IdentityRepository(pool, mc_settings.topic("users"))
    issuer = TokenIssuer(mc_settings.jwt_keys(), mc_settings)
    rotation = await repo.rotate(
        refresh_token_hash(body["refresh_token"]),
        issuer.new_refresh(MERCHANT).hash,
        issuer.refresh_ttl,
    )

    assert rotation.verdict is RefreshVerdict.ROTATE
    assert (rotation.kind, rotation.subject, rotation.roles) == (
        "merchant",
        "merchant:1",
        ("operator", "viewer"),
    )


async def test_the_command_run_as_a_process_creates_an_account_from_stdin(
    client: Client, mc_settings: Settings, db: asyncpg.Connection
) -> None:
    async def admin_command(*argv: str) -> tuple[int | None, str, str]:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.identity.admin",
            *argv,
            env=settings_env(mc_settings),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(child.communicate(f"{PASSWORD}\n".encode()), 60)
        return child.returncode, out.decode(), err.decode()

    code, out, err = await admin_command("create", "bob", "--role", "viewer", "--password-stdin")
    assert (code, out, err) == (0, "created merchant account 1 'bob': viewer\n", "")

    again = await admin_command("create", "BOB", "--password-stdin")
    assert again == (1, "", "error: a merchant account named 'BOB' exists\n")

    status, body, _ = await login(client, "bob")
    assert status == 200 and body["merchant"]["roles"] == ["viewer"]
    assert await db.fetchval("SELECT count(*) FROM identity.merchants") == 1


async def test_a_wrong_password_is_refused_counted_and_audited(
    client: Client, mc_settings: Settings, db: asyncpg.Connection, registry: CollectorRegistry
) -> None:
    await create(mc_settings)

    status, body, _ = await login(client, "alice", WRONG, ip="203.0.113.9")

    assert (status, body) == (401, WRONG_ANSWER)
    assert await audit(db) == [("alice", 1, "203.0.113.9", "invalid_credentials")]
    assert await failures(db, "account", "alice") == 1
    assert await failures(db, "ip", "203.0.113.9") == 1
    assert await live_families(db, "merchant:1") == 0
    assert counted(registry, "invalid_credentials") == 1


async def test_an_unknown_name_gets_the_wrong_password_answer_after_checking_a_hash(
    client: Client, mc_settings: Settings, db: asyncpg.Connection
) -> None:
    await create(mc_settings)
    service = client.app[ADMIN_LOGIN]
    checked: list[str | None] = []
    real_verify = service.passwords.verify

    async def spy(stored: str | None, password: str) -> Any:
        checked.append(stored)
        return await real_verify(stored, password)

    service.passwords.verify = spy

    wrong = await login(client, "alice", WRONG)
    unknown = await login(client, "mallory", WRONG)

    assert wrong[:2] == unknown[:2] == (401, WRONG_ANSWER)
    # Both paid for one argon2 verification (None: the dummy hash), so both take as long.
    assert len(checked) == 2 and checked[1] is None
    assert await audit(db) == [
        ("alice", 1, "127.0.0.1", "invalid_credentials"),
        ("mallory", None, "127.0.0.1", "invalid_credentials"),
    ]
    assert await failures(db, "account", "mallory") == 1


async def test_failures_up_to_the_limit_lock_the_name_even_against_the_right_password(
    client: Client, mc_settings: Settings, db: asyncpg.Connection, registry: CollectorRegistry
) -> None:
    await create(mc_settings)

    for _ in range(MAX_FAILURES):
        assert (await login(client, "alice", WRONG))[:2] == (401, WRONG_ANSWER)
    status, body, headers = await login(client, "ALICE", PASSWORD)

    assert status == 429
    assert body["error"] == "login_locked"
    assert headers["Retry-After"] == "30"
    outcomes = [row[3] for row in await audit(db)]
    assert outcomes == ["invalid_credentials"] * MAX_FAILURES + ["locked"]
    assert await live_families(db, "merchant:1") == 0
    assert counted(registry, "login_locked") == 1
    # While locked nothing more is counted.
    assert await failures(db, "account", "alice") == MAX_FAILURES

    await expire_locks(db)
    assert (await login(client, "alice", PASSWORD))[0] == 200
    # A success resets the name's count, not the address's.
    assert await failures(db, "account", "alice") is None
    assert await failures(db, "ip", "127.0.0.1") == MAX_FAILURES


async def test_a_burst_of_parallel_guesses_gets_no_more_answers_than_the_limit(
    client: Client, mc_settings: Settings, db: asyncpg.Connection
) -> None:
    await create(mc_settings)

    answers = await asyncio.gather(
        *(login(client, "alice", f"{WRONG} {n}", ip=f"192.0.2.{n}") for n in range(12))
    )

    # Guesses checked while the lock was being set are not counted, and answer 429 too.
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [401] * MAX_FAILURES + [429] * (12 - MAX_FAILURES)
    assert await failures(db, "account", "alice") == MAX_FAILURES


async def test_a_burst_of_parallel_guesses_from_one_address_is_cut_at_its_limit(
    client: Client, mc_settings: Settings, db: asyncpg.Connection
) -> None:
    answers = await asyncio.gather(
        *(login(client, f"guess{n}", WRONG, ip="203.0.113.99") for n in range(12))
    )

    assert sorted(status for status, _, _ in answers) == [401] * IP_MAX_FAILURES + [429] * (
        12 - IP_MAX_FAILURES
    )
    # What is left of the 30 s wait when each answer went out (the burst takes a while).
    waits = [int(headers["Retry-After"]) for status, _, headers in answers if status == 429]
    assert all(25 <= wait <= 30 for wait in waits), waits
    assert await failures(db, "ip", "203.0.113.99") == IP_MAX_FAILURES
    outcomes = [row[3] for row in await audit(db)]
    assert sorted(outcomes) == ["invalid_credentials"] * IP_MAX_FAILURES + ["locked"] * (
        12 - IP_MAX_FAILURES
    )


async def test_each_failure_past_the_limit_doubles_the_wait(
    client: Client, mc_settings: Settings, db: asyncpg.Connection
) -> None:
    await create(mc_settings)
    for _ in range(MAX_FAILURES):
        await login(client, "alice", WRONG, ip="192.0.2.1")
    assert (await login(client, "alice", WRONG, ip="192.0.2.2"))[2]["Retry-After"] == "30"

    await expire_locks(db)
    assert (await login(client, "alice", WRONG, ip="192.0.2.3"))[:2] == (401, WRONG_ANSWER)
    status, body, headers = await login(client, "alice", PASSWORD, ip="192.0.2.4")

    assert (status, body["error"], headers["Retry-After"]) == (429, "login_locked", "60")
    assert await failures(db, "account", "alice") == MAX_FAILURES + 1


async def test_an_unknown_name_is_locked_with_the_same_answer_as_a_known_one(
    client: Client, mc_settings: Settings
) -> None:
    await create(mc_settings)
    for name in ("alice", "nobody"):
        for _ in range(MAX_FAILURES):
            await login(client, name, WRONG, ip=f"192.0.2.{len(name)}")

    known = await login(client, "alice", WRONG, ip="198.51.100.1")
    unknown = await login(client, "nobody", WRONG, ip="198.51.100.2")

    assert known[:2] == unknown[:2]
    assert known[0] == 429 and known[1]["error"] == "login_locked"
    assert known[2]["Retry-After"] == unknown[2]["Retry-After"] == "30"


async def test_one_address_trying_many_names_is_locked_for_every_name(
    client: Client, mc_settings: Settings, db: asyncpg.Connection
) -> None:
    await create(mc_settings)
    sprayer = "203.0.113.66"
    for n in range(IP_MAX_FAILURES):
        assert (await login(client, f"guess{n}", WRONG, ip=sprayer))[0] == 401

    status, body, headers = await login(client, "alice", PASSWORD, ip=sprayer)

    assert (status, body["error"], headers["Retry-After"]) == (429, "login_locked", "30")
    assert await failures(db, "ip", sprayer) == IP_MAX_FAILURES
    # The account itself is not locked: its owner elsewhere logs in.
    assert (await login(client, "alice", PASSWORD, ip="198.51.100.7"))[0] == 200
    # ... which does not let the sprayer in again.
    assert (await login(client, "alice", PASSWORD, ip=sprayer))[0] == 429


async def test_the_address_count_starts_again_after_a_quiet_period(
    client: Client, mc_settings: Settings, db: asyncpg.Connection
) -> None:
    for n in range(IP_MAX_FAILURES - 1):
        await login(client, f"guess{n}", WRONG, ip="203.0.113.5")
    assert await failures(db, "ip", "203.0.113.5") == IP_MAX_FAILURES - 1
    await db.execute(
        "UPDATE identity.login_failures SET last_failure_at = now() - make_interval(secs => $1)"
        " WHERE scope = 'ip'",
        mc_settings.admin_lockout_max_seconds + 1,
    )

    assert (await login(client, "guess9", WRONG, ip="203.0.113.5"))[0] == 401

    assert await failures(db, "ip", "203.0.113.5") == 1


async def test_the_quiet_period_counts_from_the_end_of_a_wait_not_from_the_last_failure(
    client: Client, mc_settings: Settings, db: asyncpg.Connection
) -> None:
    for n in range(IP_MAX_FAILURES):
        await login(client, f"guess{n}", WRONG, ip="203.0.113.5")
    # The last failure was long ago, but its wait has only just ended.
    await db.execute(
        "UPDATE identity.login_failures SET last_failure_at = now() - make_interval(secs => $1),"
        " blocked_until = now() - interval '1 second' WHERE scope = 'ip'",
        mc_settings.admin_lockout_max_seconds + 1,
    )

    assert (await login(client, "guess9", WRONG, ip="203.0.113.5"))[0] == 401

    assert await failures(db, "ip", "203.0.113.5") == IP_MAX_FAILURES + 1
    assert (await login(client, "guess9", WRONG, ip="203.0.113.5"))[2]["Retry-After"] == "60"


async def test_addresses_of_one_ipv6_64_network_share_a_count(
    client: Client, mc_settings: Settings, db: asyncpg.Connection
) -> None:
    await create(mc_settings)
    for n in range(IP_MAX_FAILURES):
        await login(client, f"guess{n}", WRONG, ip=f"2001:db8:0:7::{n + 1}")

    assert (await login(client, ip="2001:db8:0:7:ffff::1"))[0] == 429
    assert (await login(client, ip="2001:db8:0:8::1"))[0] == 200
    assert await failures(db, "ip", "2001:db8:0:7::/64") == IP_MAX_FAILURES
    assert (await audit(db))[0][2] == "2001:db8:0:7::1"


async def test_stale_failure_counters_are_purged_and_live_ones_kept(
    client: Client, mc_settings: Settings, db: asyncpg.Connection
) -> None:
    await login(client, "old-name", WRONG, ip="192.0.2.10")
    await login(client, "new-name", WRONG, ip="192.0.2.11")
    await db.execute(
        "UPDATE identity.login_failures SET last_failure_at = now() - interval '2 days'"
        " WHERE key IN ('old-name', '192.0.2.10')"
    )
    await db.execute(
        "UPDATE identity.login_failures SET last_failure_at = now() - interval '2 hours'"
        " WHERE key IN ('new-name', '192.0.2.11')"
    )

    assert await client.app[ADMIN_LOGIN].purge_stale_failures() == 3

    left = await db.fetch("SELECT scope, key FROM identity.login_failures")
    assert [tuple(r) for r in left] == [("account", "new-name")]


async def test_a_disabled_account_cannot_log_in_and_its_logins_are_revoked(
    client: Client, mc_settings: Settings, db: asyncpg.Connection, registry: CollectorRegistry
) -> None:
    await create(mc_settings)
    assert (await login(client))[0] == 200
    assert await live_families(db, "merchant:1") == 1

    assert (await command(mc_settings, "disable", "alice"))[:2] == (
        0,
        "disabled 'alice'; its logins are revoked\n",
    )

    assert await live_families(db, "merchant:1") == 0
    reason = "SELECT revoke_reason FROM identity.token_families WHERE subject = 'merchant:1'"
    assert await db.fetchval(reason) == "account_disabled"
    assert (await login(client))[:2] == (401, WRONG_ANSWER)
    assert (await audit(db))[-1] == ("alice", 1, "127.0.0.1", "disabled")
    assert counted(registry, "disabled") == 1

    assert (await command(mc_settings, "enable", "alice"))[0] == 0
    assert (await login(client))[0] == 200


async def test_a_new_password_revokes_the_logins_and_the_old_password_stops_working(
    client: Client, mc_settings: Settings, db: asyncpg.Connection
) -> None:
    await create(mc_settings)
    await login(client)
    await login(client)
    assert await live_families(db, "merchant:1") == 2

    new = "a much longer new password"
    code, out, err = await command(
        mc_settings, "set-password", "alice", "--password-stdin", stdin=new + "\n"
    )

    assert (code, out, err) == (0, "new password for 'alice'; its logins are revoked\n", "")
    assert await live_families(db, "merchant:1") == 0
    assert (await login(client, password=PASSWORD))[:2] == (401, WRONG_ANSWER)
    assert (await login(client, password=new))[0] == 200


async def test_unlock_lets_a_locked_account_log_in_again(
    client: Client, mc_settings: Settings, db: asyncpg.Connection
) -> None:
    await create(mc_settings)
    for n in range(MAX_FAILURES):
        await login(client, "alice", WRONG, ip=f"192.0.2.{n}")
    assert (await login(client))[0] == 429

    assert (await command(mc_settings, "unlock", "Alice"))[:2] == (0, "unlocked 'Alice'\n")
    assert (await command(mc_settings, "unlock", "alice"))[1] == "'alice' had no failed logins\n"

    assert (await login(client))[0] == 200


async def test_unlock_address_lets_a_locked_address_in_again(
    client: Client, mc_settings: Settings, db: asyncpg.Connection
) -> None:
    await create(mc_settings)
    for n in range(IP_MAX_FAILURES):
        await login(client, f"guess{n}", WRONG, ip="203.0.113.8")
    assert (await login(client, ip="203.0.113.8"))[0] == 429

    code, out, _ = await command(mc_settings, "unlock-address", "203.0.113.8")

    assert (code, out) == (0, "unlocked 203.0.113.8\n")
    assert (await login(client, ip="203.0.113.8"))[0] == 200


async def test_a_password_hashed_with_older_parameters_is_rehashed_at_login(
    client: Client, pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    weak = Passwords(1, PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
    await MerchantAccounts(MerchantRepository(pool), weak).create("old", PASSWORD, ["admin"])
    before = await db.fetchval("SELECT password_hash FROM identity.merchants")
    assert "m=8192,t=1,p=1" in before

    assert (await login(client, "old"))[0] == 200

    after = await db.fetchval("SELECT password_hash FROM identity.merchants")
    assert "m=65536,t=3,p=4" in after
    assert not PasswordHasher().check_needs_rehash(after)
    assert (await login(client, "old"))[0] == 200


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"name": "alice"}, 400, "invalid_request"),
        ({"name": "", "password": PASSWORD}, 400, "invalid_request"),
        ({"name": "alice", "password": "x" * 257}, 400, "invalid_request"),
        ([PASSWORD], 400, "invalid_json"),
        ({"name": "alice", "password": "x" * 20_000}, 413, "payload_too_large"),
    ],
)
async def test_malformed_or_huge_bodies_are_refused_before_any_account_is_looked_at(
    client: Client,
    mc_settings: Settings,
    db: asyncpg.Connection,
    body: Any,
    status: int,
    error: str,
) -> None:
    await create(mc_settings)

    resp = await client.post(ADMIN_LOGIN_PATH, json=body)

    assert (resp.status, (await resp.json())["error"]) == (status, error)
    assert await audit(db) == []
    assert await db.fetchval("SELECT count(*) FROM identity.login_failures") == 0


async def test_the_command_refuses_weak_passwords_taken_names_and_unknown_accounts(
    mc_settings: Settings, db: asyncpg.Connection
) -> None:
    await create(mc_settings)

    weak = await command(mc_settings, "create", "bob", "--password-stdin", stdin="short\n")
    taken = await command(mc_settings, "create", "ALICE", "--password-stdin", stdin=PASSWORD + "\n")
    bad_role = await command(mc_settings, "create", "carol", "--role", "root")
    bad_name = await command(mc_settings, "create", "carol!")
    unknown = await command(mc_settings, "disable", "dave")
    unknown_password = await command(
        mc_settings, "set-password", "dave", "--password-stdin", stdin=PASSWORD + "\n"
    )
    no_terminal = await command(mc_settings, "create", "erin")
    usage = await command(mc_settings, "frobnicate")

    assert weak == (1, "", "error: password: must be at least 12 characters\n")
    assert taken == (1, "", "error: a merchant account named 'ALICE' exists\n")
    assert bad_role[0] == 1 and "unknown role 'root'" in bad_role[2]
    assert bad_name[0] == 1 and bad_name[2].startswith("error: name: ")
    assert unknown == (1, "", "error: no merchant account named 'dave'\n")
    assert unknown_password == unknown
    assert no_terminal[0] == 1 and "--password-stdin" in no_terminal[2]
    assert usage[0] == 2
    assert await db.fetchval("SELECT count(*) FROM identity.merchants") == 1


async def test_the_terminal_prompt_asks_twice_and_refuses_two_different_answers(
    mc_settings: Settings, db: asyncpg.Connection
) -> None:
    differ = console("", PASSWORD, PASSWORD + "!")
    assert await run(["create", "alice"], mc_settings, differ) == 1
    same = console("", PASSWORD, PASSWORD)
    assert await run(["create", "alice", "--role", "operator,viewer"], mc_settings, same) == 0

    roles = await db.fetchval("SELECT roles FROM identity.merchants WHERE name = 'alice'")
    assert roles == ["operator", "viewer"]


async def test_list_shows_roles_and_state_without_hashes(
    client: Client, mc_settings: Settings, db: asyncpg.Connection
) -> None:
    await create(mc_settings, "alice")
    await create(mc_settings, "bob", "viewer")
    await command(mc_settings, "disable", "bob")
    for _ in range(MAX_FAILURES):
        await login(client, "alice", WRONG)

    code, out, _ = await command(mc_settings, "list")

    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["id", "name", "roles", "state", "last", "login"]
    assert lines[1].split()[:5] == ["1", "alice", "admin", "locked", "until"]
    assert lines[2].split() == ["2", "bob", "viewer", "disabled", "never"]
    assert "$argon2" not in out


async def test_no_password_or_hash_reaches_a_response_or_a_log_line(
    client: Client,
    mc_settings: Settings,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    await create(mc_settings)
    stored = await db.fetchval("SELECT password_hash FROM identity.merchants")
    answers = [await login(client), await login(client, "nobody", PASSWORD)]
    answers += [await login(client, "alice", WRONG) for _ in range(MAX_FAILURES + 1)]
    answers.append(await login(client, "alice", PASSWORD))
    outputs = await command(mc_settings, "list")

    # The lockout was logged (so the logs were captured), without secrets.
    assert any("locked for 30 s" in r.getMessage() for r in caplog.records)
    everything = caplog.text + repr(answers) + repr(outputs)
    for secret in (PASSWORD, WRONG, stored, stored.rsplit("$", 1)[1]):
        assert secret not in everything
