"""Shopper login, refresh rotation and logout against real PostgreSQL, Redis and Kafka and a
real local WeChat-shaped provider (tools/fake_wechat.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import jwt
import pytest
from aiohttp.test_utils import TestClient

from services.common.auth import KeySet, principal_from_header
from services.common.events import USER_REGISTERED
from services.common.settings import Settings
from services.common.topics import USERS
from tests.helpers import free_port, read_topic, started_client, wait_for
from tools.fake_wechat import FakeWeChat, code_for, openid_for, unionid_for

NEXT_KEY = "next-key-secret-0123456789abcdef0123456789"


def identity_settings(settings: Settings, fake: FakeWeChat, **overrides: Any) -> Settings:
    return dataclasses.replace(
        settings,
        wechat_api_url=fake.url,
        wechat_appid=fake.appid,
        wechat_secret=fake.secret,
        wechat_timeout_seconds=1.0,
        **overrides,
    )


@pytest.fixture
async def ident_settings(settings: Settings, fake: FakeWeChat) -> Settings:
    return identity_settings(settings, fake)


@pytest.fixture
async def identity(ident_settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    from services.identity.app import create_app

    client = await started_client(create_app(ident_settings, run_keeper=False))
    yield client
    await client.close()


async def login(client: TestClient[Any, Any], who: str, **headers: str) -> Any:
    resp = await client.post("/api/auth/login", json={"code": code_for(who)}, headers=headers)
    return resp.status, await resp.json()


async def count(db: asyncpg.Connection, table: str) -> int:
    return int(await db.fetchval(f"SELECT count(*) FROM identity.{table}"))


async def test_a_first_login_creates_the_user_and_answers_an_access_and_a_refresh_token(
    identity: TestClient[Any, Any], ident_settings: Settings, fake: FakeWeChat, db: Any
) -> None:
    status, body = await login(identity, "alice")
    assert status == 200, body
    assert set(body) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "refresh_expires_in",
        "user",
    }
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["refresh_expires_in"] == 30 * 24 * 3600
    assert body["user"]["new"] is True
    user_id = body["user"]["id"]
    who = principal_from_header(f"Bearer {body['access_token']}", ident_settings.jwt_keys())
    assert who.user_id == user_id
    assert who.roles == frozenset({"shopper"})
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 900
    assert set(claims) == {"sub", "roles", "iat", "exp", "jti"}
    assert jwt.get_unverified_header(body["access_token"])["kid"] == "k1"
    row = await db.fetchrow("SELECT * FROM identity.users")
    assert (row["id"], row["appid"], row["openid"], row["unionid"]) == (
        user_id,
        fake.appid,
        openid_for(fake.appid, "alice"),
        unionid_for("alice"),
    )
    # Only a hash of the refresh token is stored.
    stored = await db.fetchval("SELECT token_hash FROM identity.refresh_tokens")
    assert body["refresh_token"].encode() not in bytes(stored)


async def test_the_answer_never_carries_the_session_key(identity: TestClient[Any, Any]) -> None:
    resp = await identity.post("/api/auth/login", json={"code": code_for("bob")})
    assert resp.status == 200
    assert b"session_key" not in await resp.read()


async def test_a_returning_shopper_keeps_one_user_and_is_announced_once(
    settings: Settings, ident_settings: Settings, fake: FakeWeChat, db: Any
) -> None:
    from services.identity.app import create_app

    client = await started_client(create_app(ident_settings, run_keeper=False))
    try:
        _, first = await login(client, "carol")
        _, second = await login(client, "carol")
        _, other = await login(client, "dave")
        assert await wait_for(lambda: count(db, "outbox"), 0) == 0
    finally:
        await client.close()
    assert first["user"] == {"id": first["user"]["id"], "new": True}
    assert second["user"] == {"id": first["user"]["id"], "new": False}
    assert other["user"]["new"] is True
    assert await count(db, "users") == 2
    events = await read_topic(settings, USERS, lambda seen: len(seen) >= 2)
    assert sorted((e.type, e.key, e.data["openid"]) for e in events) == sorted(
        [
            (USER_REGISTERED, first["user"]["id"], openid_for(fake.appid, "carol")),
            (USER_REGISTERED, other["user"]["id"], openid_for(fake.appid, "dave")),
        ]
    )
    assert all(e.data["appid"] == fake.appid for e in events)


async def test_a_refresh_rotates_the_pair_and_the_old_refresh_token_stops_working(
    identity: TestClient[Any, Any], ident_settings: Settings
) -> None:
    _, logged_in = await login(identity, "erin")
    resp = await identity.post(
        "/api/auth/refresh", json={"refresh_token": logged_in["refresh_token"]}
    )
    assert resp.status == 200
    rotated = await resp.json()
    assert rotated["refresh_token"] != logged_in["refresh_token"]
    who = principal_from_header(f"Bearer {rotated['access_token']}", ident_settings.jwt_keys())
    assert who.user_id == logged_in["user"]["id"]
    # The rotated token works once more.
    again = await identity.post(
        "/api/auth/refresh", json={"refresh_token": rotated["refresh_token"]}
    )
    assert again.status == 200


async def test_reusing_a_used_refresh_token_revokes_the_whole_family(
    identity: TestClient[Any, Any], db: Any
) -> None:
    _, logged_in = await login(identity, "frank")
    first = await identity.post(
        "/api/auth/refresh", json={"refresh_token": logged_in["refresh_token"]}
    )
    newer = (await first.json())["refresh_token"]
    # A thief replays the first token: refused, and the family is revoked ...
    replay = await identity.post(
        "/api/auth/refresh", json={"refresh_token": logged_in["refresh_token"]}
    )
    assert replay.status == 401
    assert (await replay.json())["error"] == "refresh_token_reused"
    # ... so the legitimate newer token stops working too.
    after = await identity.post("/api/auth/refresh", json={"refresh_token": newer})
    assert after.status == 401
    assert (await after.json())["error"] == "refresh_token_revoked"
    assert await db.fetchval("SELECT revoke_reason FROM identity.token_families") == "reuse"
    # Another login of the same shopper is a separate family and unaffected.
    _, fresh = await login(identity, "frank")
    ok = await identity.post("/api/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert ok.status == 200


async def test_two_concurrent_refreshes_of_one_token_rotate_once(
    identity: TestClient[Any, Any],
) -> None:
    _, logged_in = await login(identity, "gina")
    body = {"refresh_token": logged_in["refresh_token"]}
    answers = await asyncio.gather(*(identity.post("/api/auth/refresh", json=body) for _ in "ab"))
    assert sorted(r.status for r in answers) == [200, 401]


async def test_logout_revokes_the_refresh_token_and_is_repeatable(
    identity: TestClient[Any, Any], db: Any
) -> None:
    _, logged_in = await login(identity, "hank")
    body = {"refresh_token": logged_in["refresh_token"]}
    assert (await identity.post("/api/auth/logout", json=body)).status == 204
    assert (await identity.post("/api/auth/logout", json=body)).status == 204
    resp = await identity.post("/api/auth/refresh", json=body)
    assert resp.status == 401
    assert (await resp.json())["error"] == "refresh_token_revoked"
    assert await db.fetchval("SELECT revoke_reason FROM identity.token_families") == "logout"


async def test_an_expired_refresh_token_is_refused(settings: Settings, fake: FakeWeChat) -> None:
    from services.identity.app import create_app

    short = identity_settings(settings, fake, refresh_token_ttl_seconds=1)
    client = await started_client(create_app(short, run_keeper=False, run_relay=False))
    try:
        _, logged_in = await login(client, "ivan")
        await asyncio.sleep(1.2)
        resp = await client.post(
            "/api/auth/refresh", json={"refresh_token": logged_in["refresh_token"]}
        )
        assert resp.status == 401
        assert (await resp.json())["error"] == "refresh_token_expired"
    finally:
        await client.close()


@pytest.mark.parametrize(
    "token", ["rt_" + "x" * 43, "not-a-refresh-token", "rt_" + "x" * 200, "", 42]
)
async def test_unknown_or_malformed_refresh_tokens_are_refused_with_a_reason(
    identity: TestClient[Any, Any], token: Any
) -> None:
    resp = await identity.post("/api/auth/refresh", json={"refresh_token": token})
    body = await resp.json()
    expected = (
        (401, "invalid_refresh_token") if token == "rt_" + "x" * 43 else (400, "invalid_request")
    )
    assert (resp.status, body["error"]) == expected
    assert body["message"]


@pytest.mark.parametrize(
    ("code", "errcode", "status", "error"),
    [
        ("invalid-code", None, 401, "invalid_code"),
        ("someone.1", 45011, 429, "provider_rate_limited"),
        ("someone.2", -1, 503, "provider_unavailable"),
        ("someone.3", 40226, 403, "user_blocked"),
        ("someone.4", 40013, 502, "provider_error"),
    ],
)
async def test_a_provider_refusal_is_a_clear_error_and_creates_nothing(
    identity: TestClient[Any, Any],
    fake: FakeWeChat,
    db: Any,
    code: str,
    errcode: int | None,
    status: int,
    error: str,
) -> None:
    fake.login_errcode = errcode
    resp = await identity.post("/api/auth/login", json={"code": code})
    body = await resp.json()
    assert (resp.status, body["error"]) == (status, error), body
    assert body["message"]
    if status in (429, 503):
        assert int(resp.headers["Retry-After"]) >= 1
    assert await count(db, "users") == 0
    assert await count(db, "token_families") == 0


async def test_a_used_code_is_refused(identity: TestClient[Any, Any]) -> None:
    code = code_for("jane")
    first = await identity.post("/api/auth/login", json={"code": code})
    second = await identity.post("/api/auth/login", json={"code": code})
    assert first.status == 200
    assert (second.status, (await second.json())["error"]) == (401, "code_used")


async def test_a_slow_provider_is_cut_off_with_503_and_retry_after(
    identity: TestClient[Any, Any], fake: FakeWeChat, db: Any
) -> None:
    fake.login_delay_seconds = 2.0  # the service waits at most 1 s
    resp = await identity.post("/api/auth/login", json={"code": code_for("kate")})
    assert resp.status == 503
    assert (await resp.json())["error"] == "provider_unavailable"
    assert resp.headers["Retry-After"] == "2"
    assert await count(db, "users") == 0


async def test_a_provider_that_is_down_gives_503(settings: Settings, fake: FakeWeChat) -> None:
    from services.identity.app import create_app

    down = dataclasses.replace(
        identity_settings(settings, fake), wechat_api_url=f"http://127.0.0.1:{free_port()}"
    )
    client = await started_client(create_app(down, run_keeper=False, run_relay=False))
    try:
        resp = await client.post("/api/auth/login", json={"code": code_for("leo")})
        assert resp.status == 503
        assert (await resp.json())["error"] == "provider_unavailable"
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("raw", "status", "error"),
    [
        (b"not json", 400, "invalid_json"),
        (b"[]", 400, "invalid_json"),
        (b"{}", 400, "invalid_request"),
        (b'{"code": 12345}', 400, "invalid_request"),
        (b'{"code": "has space"}', 400, "invalid_request"),
        (b'{"code": "' + b"c" * 129 + b'"}', 400, "invalid_request"),
        (b'{"code": "\\u00e9t\\u00e9"}', 400, "invalid_request"),
        (b'{"code": "' + b"c" * 70_000 + b'"}', 413, "payload_too_large"),
    ],
)
async def test_a_malformed_login_body_is_refused_and_reaches_no_provider(
    identity: TestClient[Any, Any], fake: FakeWeChat, db: Any, raw: bytes, status: int, error: str
) -> None:
    resp = await identity.post(
        "/api/auth/login", data=raw, headers={"Content-Type": "application/json"}
    )
    body = await resp.json()
    assert (resp.status, body["error"]) == (status, error)
    assert fake.used_codes == set()
    assert await count(db, "users") == 0


async def test_logins_are_limited_per_client_address(settings: Settings, fake: FakeWeChat) -> None:
    from services.identity.app import create_app

    limited = identity_settings(
        settings, fake, login_rate_limit_per_minute=3, gateway_rate_limit_exempt="10.9.0.0/16"
    )
    client = await started_client(create_app(limited, run_keeper=False, run_relay=False))
    try:
        here = {"X-Real-IP": "203.0.113.7"}
        statuses = [(await login(client, f"m{i}", **here))[0] for i in range(4)]
        assert statuses == [200, 200, 200, 429]
        resp = await client.post("/api/auth/login", json={"code": code_for("m9")}, headers=here)
        assert (await resp.json())["error"] == "rate_limited"
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
        # Another address (the gateway on loopback is trusted to name it) is not limited.
        assert (await login(client, "n1", **{"X-Real-IP": "203.0.113.8"}))[0] == 200
        # Addresses the gateway exempts (a local load test) are exempt here too.
        exempt = {"X-Real-IP": "10.9.0.5"}
        assert [(await login(client, f"x{i}", **exempt))[0] for i in range(5)] == [200] * 5
    finally:
        await client.close()


async def test_a_key_rotation_keeps_everybody_logged_in(
    settings: Settings, fake: FakeWeChat
) -> None:
    """k1 signs; then every service accepts k2; then identity signs with k2 while k1 stays
    accepted; then k1 is retired. Tokens of both keys work while both are live, and a
    refresh token issued before the switch gets a k2 access token after it."""
    from services.identity.app import create_app

    before = identity_settings(settings, fake)
    client = await started_client(create_app(before, run_keeper=False, run_relay=False))
    try:
        _, old = await login(client, "olga")
    finally:
        await client.close()
    after = dataclasses.replace(
        before, jwt_secret=NEXT_KEY, jwt_key_id="k2", jwt_verify_keys=f"k1={before.jwt_secret}"
    )
    client = await started_client(create_app(after, run_keeper=False, run_relay=False))
    try:
        resp = await client.post("/api/auth/refresh", json={"refresh_token": old["refresh_token"]})
        assert resp.status == 200
        new = await resp.json()
    finally:
        await client.close()
    assert jwt.get_unverified_header(old["access_token"])["kid"] == "k1"
    assert jwt.get_unverified_header(new["access_token"])["kid"] == "k2"
    both_live = after.jwt_keys()
    for token in (old["access_token"], new["access_token"]):
        assert principal_from_header(f"Bearer {token}", both_live).user_id == old["user"]["id"]
    retired = KeySet.from_config(NEXT_KEY, "k2", "")
    assert principal_from_header(f"Bearer {new['access_token']}", retired).roles == {"shopper"}
    with pytest.raises(Exception, match="unknown or retired key"):
        principal_from_header(f"Bearer {old['access_token']}", retired)


async def test_the_ops_app_reports_readiness(
    ident_settings: Settings,
) -> None:
    from services.identity.app import create_app, create_ops

    api = create_app(ident_settings, run_keeper=False, run_relay=False)
    client = await started_client(api)
    ops = await started_client(create_ops(api))
    try:
        resp = await ops.get("/readyz")
        body = await resp.json()
        assert resp.status == 200, body
        assert body["checks"] == {"postgres": "ok", "redis": "ok", "kafka": "ok"}
        metrics = await (await ops.get("/metrics")).text()
        assert "identity_logins_total" in metrics
    finally:
        await ops.close()
        await client.close()


async def test_the_new_user_is_announced_even_if_kafka_was_down_at_login(
    settings: Settings, ident_settings: Settings, db: Any
) -> None:
    """Login commits the event to the outbox with the user; the relay publishes it later."""
    from services.identity.app import create_app

    client = await started_client(create_app(ident_settings, run_keeper=False, run_relay=False))
    try:
        status, body = await login(client, "pat")
        assert status == 200
        assert await count(db, "outbox") == 1
    finally:
        await client.close()
    client = await started_client(create_app(ident_settings, run_keeper=False))
    try:
        assert await wait_for(lambda: count(db, "outbox"), 0) == 0
    finally:
        await client.close()
    events = await read_topic(settings, USERS, lambda seen: len(seen) >= 1)
    assert [e.key for e in events] == [body["user"]["id"]]
