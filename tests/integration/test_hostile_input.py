"""Hostile input, class by class, against every route of every service on the wire (raw
sockets, so paths, headers and bodies arrive exactly as written): integers out of range or
of thousands of digits, NUL and invalid Unicode, non-ASCII header values, JWT claims of the
wrong type or size. Each is refused with a 4xx and the JSON {error, message} shape, never
a 5xx, and changes nothing: every table and every Redis key is as it was.

docs/operations.md, "Hostile input", lists the classes and where each is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from services.common.auth import mint_token
from services.common.settings import Settings
from services.coupon.domain import FIXED_FIELDS as FIXED
from services.order.domain import NewOrder, order_id_for
from services.order.payments import SIGNATURE_HEADER, sign
from services.order.repository import OrderRepository
from tests.helpers import (
    activity_body,
    campaign_body,
    parse_answer,
    raw_exchange,
    started_client,
    template_body,
    wait_for,
)
from tests.integration.test_identity_login import identity_settings
from tools.fake_wechat import FakeWeChat

# Every table a route could write to (tests.helpers.RESET_SQL's).
TABLES = (
    "seckill.activities",
    "seckill.admin_audit",
    "groupbuy.campaigns",
    "groupbuy.groups",
    "groupbuy.members",
    "groupbuy.admin_audit",
    "orders.orders",
    "orders.outbox",
    "orders.payments",
    "orders.admin_audit",
    "orders.cancelled_sales",
    "notify.templates",
    "notify.admin_audit",
    "notify.deliveries",
    "notify.subscriptions",
    "notify.recipients",
    "identity.users",
    "identity.merchants",
    "identity.token_families",
    "identity.refresh_tokens",
    "identity.login_failures",
    "identity.admin_login_audit",
    "identity.outbox",
    "coupon.templates",
    "coupon.coupons",
    "coupon.grant_rules",
    "coupon.grants",
    "coupon.orders",
    "coupon.outbox",
    "coupon.admin_audit",
)
REFUSALS = frozenset({400, 401, 404, 405})
WIDE = 5000  # digits or characters: past Python's 4300-digit int() limit

# --- the hostile values, by class -------------------------------------------------------

BIG_INTS: tuple[Any, ...] = (2**63, 2**64, -(2**63) - 1, -1, 10**30, 1.5, "1", True)
BIG_DIGITS = ("9" * WIDE, str(2**63), str(2**64), "-1", "0", "1.5", "1e3", "%2B1")
BAD_TIMES = (
    "0001-01-01T00:00:00+01:00",  # before the year 1 in UTC
    "9999-12-31T23:59:59-01:00",  # after the year 9999 in UTC
    "2026-01-01T00:00:00",  # no zone
    "+275760-09-13T00:00:00Z",
)
BAD_TEXT: tuple[Any, ...] = ("a\x00b", "\x00", "x" * WIDE, 7, "")
BAD_TEXT_IN_URL = ("%00", "a%00b", "1%00", "%ff", "%ed%a0%80", "%c0%80")
# Whole bodies: a lone surrogate and a number orjson refuses, NUL in a key, no object.
RAW_BODIES = (
    b'{"title": "\\ud800"}',
    b'{"quantity": ' + b"9" * WIDE + b"}",
    b'{"quantity": 1e400}',
    b'{"a\\u0000": 1}',
    b"[" * 2000 + b"]" * 2000,
    b"\xff\xfe",
    b'"x"',
)
NON_ASCII_VALUES = (b"\xff\xfe", "é".encode(), "令牌".encode(), b"\xed\xa0\x80")


@dataclass(frozen=True)
class Probe:
    what: str
    method: str
    path: str
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    allowed: frozenset[int] = REFUSALS


@dataclass
class Stack:
    """Every service's API in-process on one database and Redis, with a sale of each kind."""

    ports: dict[str, int]
    settings: Settings
    db: asyncpg.Connection
    redis: Redis
    admin: bytes  # an Authorization header value
    clients: list[TestClient[Any, Any]] = field(default_factory=list)


def _raw(probe: Probe, auth: bytes | None) -> bytes:
    lines = [f"{probe.method} {probe.path} HTTP/1.1".encode(), b"Host: x", b"Connection: close"]
    names = {name.lower() for name, _ in probe.headers}
    if auth is not None and b"authorization" not in names:
        lines.append(b"Authorization: " + auth)
    if b"content-type" not in names:
        lines.append(b"Content-Type: application/json")
    lines += [name + b": " + value for name, value in probe.headers]
    lines.append(b"Content-Length: %d" % len(probe.body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + probe.body


async def snapshot(stack: Stack) -> dict[str, Any]:
    """Every table's rows and every Redis key's value, to compare before and after."""
    seen: dict[str, Any] = {}
    for table in TABLES:
        seen[table] = await stack.db.fetchval(
            f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
        )
    for key in sorted(await stack.redis.keys("*")):
        seen[f"redis:{key!r}"] = await stack.redis.dump(key)
    return seen


async def refused_and_unchanged(stack: Stack, probes: Iterable[tuple[str, Probe]]) -> None:
    """Sends each probe to its service; fails listing every probe answered otherwise than
    with an allowed 4xx and the JSON error shape, and if anything changed."""
    before = await snapshot(stack)
    wrong = []
    count = 0
    for service, probe in probes:
        count += 1
        answer = await raw_exchange(stack.ports[service], _raw(probe, stack.admin))
        status, headers, body = parse_answer(answer)
        try:
            shaped = status < 400 or set(orjson.loads(body)) >= {"error", "message"}
        except orjson.JSONDecodeError:
            shaped = False
        ok = status in probe.allowed and shaped
        if not ok or headers.get("Content-Type") != "application/json":
            wrong.append(
                f"{service} {probe.what}: {probe.method} {probe.path[:80]} -> {answer[:300]!r}"
            )
    assert wrong == [], "\n".join(wrong)
    assert count > 0
    after = await snapshot(stack)
    assert {k: v for k, v in after.items() if before.get(k) != v} == {}
    assert before.keys() == after.keys()


@pytest.fixture
async def stack(
    settings: Settings, fake: FakeWeChat, db: asyncpg.Connection, redis: Redis
) -> AsyncIterator[Stack]:
    from services.console.app import create_app as console_app
    from services.coupon.app import create_app as coupon_app
    from services.groupbuy.app import create_app as groupbuy_app
    from services.identity.app import create_app as identity_app
    from services.notify.app import create_app as notify_app
    from services.order.app import create_app as order_app
    from services.seckill.app import create_app as seckill_app

    s = identity_settings(settings, fake)
    apps = {
        "seckill": seckill_app(s, run_relay=False, run_stock_return=False),
        "order": order_app(s),
        "groupbuy": groupbuy_app(s, run_relay=False, run_sweeper=False, run_consumers=False),
        "notify": notify_app(s, run_consumers=False, run_dispatcher=False, run_reminders=False),
        "identity": identity_app(s, run_keeper=False, run_relay=False),
        "console": console_app(s),
        "coupon": coupon_app(s, run_relay=False, run_consumers=False),
    }
    token = mint_token(s.jwt_keys(), "ops", ["admin"])
    world = Stack({}, s, db, redis, f"Bearer {token}".encode())
    for name, app in apps.items():
        client = await started_client(app)
        world.clients.append(client)
        world.ports[name] = client.port or 0
    admin = {"Authorization": world.admin.decode()}
    clients = dict(zip(apps, world.clients, strict=True))
    resp = await clients["seckill"].post(
        "/api/seckill/admin/activities", json=activity_body(), headers=admin
    )
    assert resp.status == 201, await resp.text()
    soon = datetime.now(UTC) + timedelta(hours=1)
    upcoming = campaign_body(
        starts_at=soon.isoformat(), ends_at=(soon + timedelta(hours=1)).isoformat()
    )
    resp = await clients["groupbuy"].post(
        "/api/groupbuy/admin/campaigns", json=upcoming, headers=admin
    )
    assert resp.status == 201, await resp.text()
    # Upcoming: an edit is validated (and refused) rather than answered already_started.
    resp = await clients["coupon"].post(CP, json=UPCOMING_TEMPLATE, headers=admin)
    assert resp.status == 201, await resp.text()
    await _place_order(s)
    # The order service's relay publishes the new order's event and empties its outbox:
    # before the first snapshot, not during the probes.
    empty = await wait_for(lambda: db.fetchval("SELECT count(*) FROM orders.outbox"), 0)
    assert empty == 0
    yield world
    for client in world.clients:
        await client.close()


async def _place_order(settings: Settings) -> None:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=1)
    assert pool is not None
    now = datetime.now(UTC)
    pay_before = now + timedelta(minutes=15)
    order = NewOrder(ORDER_ID, RESERVATION, 1, "ops", "sku-1", 1, 250, now, pay_before)
    try:
        await OrderRepository(pool).create_orders([order])
    finally:
        await pool.close()


# --- the routes -------------------------------------------------------------------------

SK = "/api/seckill/admin/activities"
GB = "/api/groupbuy/admin/campaigns"
GROUP = "1-" + "0" * 32
CP = "/api/coupons/admin/templates"
CLAIM = "/api/coupons/templates/1/claims"
_SOON = datetime.now(UTC) + timedelta(days=1)
UPCOMING_TEMPLATE = template_body(
    claim_starts_at=_SOON.isoformat(), claim_ends_at=(_SOON + timedelta(hours=1)).isoformat()
)
RESERVATION = f"1-{uuid.uuid4().hex}"
ORDER_ID = order_id_for(RESERVATION)  # the order of "ops", whom the admin token names
# (service, method, path with {id}, a valid body): every route with a path parameter.
PATH_ROUTES = (
    ("seckill", "GET", SK + "/{id}", None),
    ("seckill", "PATCH", SK + "/{id}", {"title": "t"}),
    ("seckill", "PUT", SK + "/{id}/stock", {"stock": 5}),
    ("seckill", "POST", SK + "/{id}/end", None),
    ("seckill", "POST", SK + "/{id}/cancel", None),
    ("seckill", "GET", SK + "/{id}/audit", None),
    ("seckill", "GET", SK + "/{id}/live", None),
    ("seckill", "GET", "/api/seckill/activities/{id}", None),
    ("seckill", "POST", "/api/seckill/activities/{id}/reservations", {"quantity": 1}),
    ("seckill", "GET", "/api/seckill/reservations/{id}", None),
    ("groupbuy", "GET", GB + "/{id}", None),
    ("groupbuy", "PATCH", GB + "/{id}", {"title": "t"}),
    ("groupbuy", "PUT", GB + "/{id}/stock", {"stock": 50}),
    ("groupbuy", "POST", GB + "/{id}/end", None),
    ("groupbuy", "POST", GB + "/{id}/cancel", None),
    ("groupbuy", "GET", GB + "/{id}/audit", None),
    ("groupbuy", "GET", GB + "/{id}/live", None),
    ("groupbuy", "GET", "/api/groupbuy/campaigns/{id}", None),
    ("groupbuy", "POST", "/api/groupbuy/campaigns/{id}/groups", None),
    ("groupbuy", "POST", "/api/groupbuy/groups/{id}/join", None),
    ("groupbuy", "GET", "/api/groupbuy/groups/{id}", None),
    ("coupon", "GET", CP + "/{id}", None),
    ("coupon", "PATCH", CP + "/{id}", {"name": "t"}),
    ("coupon", "PUT", CP + "/{id}/quantity", {"quantity": 5}),
    ("coupon", "POST", CP + "/{id}/end", None),
    ("coupon", "GET", CP + "/{id}/audit", None),
    ("coupon", "GET", CP + "/{id}/live", None),
    ("coupon", "GET", "/api/coupons/templates/{id}", None),
    ("coupon", "POST", "/api/coupons/templates/{id}/claims", None),
    ("order", "GET", "/api/orders/{id}", None),
    ("order", "POST", "/api/orders/{id}/cancel", None),
    ("order", "GET", "/api/orders/admin/orders/{id}", None),
    ("order", "POST", "/api/orders/admin/payments/{id}/refund", {"refund_id": "r-1"}),
    ("notify", "PUT", "/api/notify/admin/templates/{id}", {"provider_template_id": "abc"}),
    # Any hex version names the current bundle (an older page still loads): only the
    # name is looked up, and a version that is no hex is not routed.
    ("console", "GET", "/console/v/0123abcd/{id}", None),
)
# (service, path, parameters): every route that reads a query string.
QUERY_ROUTES = (
    ("seckill", SK, ("state", "limit", "offset")),
    ("groupbuy", GB, ("state", "limit", "offset")),
    ("coupon", CP, ("state", "limit", "offset")),
    ("coupon", "/api/coupons", ("state", "limit", "offset")),
    ("order", "/api/orders", ("limit",)),
    (
        "order",
        "/api/orders/admin/orders",
        ("order_id", "source", "sale_id", "state", "limit", "offset"),
    ),
    ("order", "/api/orders/admin/figures?source=seckill&sale_id=1", ("sale_id", "source")),
    ("order", "/api/orders/admin/live?source=seckill&sale_id=1", ("sale_id", "source")),
    ("notify", "/api/notify/messages", ("limit",)),
)
TEXT_QUERY = ("order", "/api/orders/admin/orders", "user_id")  # free text: 200 if storable
TEMPLATE_PATH = "/api/notify/admin/templates/order_paid"
SUBSCRIPTION = {"template": "payment_due", "kind": "one_time", "activity_id": 1}
# (service, method, path, a valid body): every route that reads a JSON body.
BODY_ROUTES: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("seckill", "POST", SK, activity_body()),
    ("seckill", "PATCH", SK + "/1", {k: v for k, v in activity_body().items() if k != "sku"}),
    ("seckill", "PUT", SK + "/1/stock", {"stock": 5}),
    ("seckill", "POST", "/api/seckill/activities/1/reservations", {"quantity": 1}),
    ("groupbuy", "POST", GB, campaign_body()),
    ("groupbuy", "PATCH", GB + "/1", {k: v for k, v in campaign_body().items() if k != "sku"}),
    ("groupbuy", "PUT", GB + "/1/stock", {"stock": 50}),
    ("coupon", "POST", CP, UPCOMING_TEMPLATE),
    ("coupon", "PATCH", CP + "/1", {k: v for k, v in UPCOMING_TEMPLATE.items() if k not in FIXED}),
    ("coupon", "PUT", CP + "/1/quantity", {"quantity": 5}),
    ("order", "POST", "/api/orders/admin/payments/t-1/refund", {"refund_id": "r-1"}),
    ("notify", "POST", "/api/notify/subscriptions", SUBSCRIPTION),
    ("notify", "PUT", "/api/notify/admin/templates/payment_due", {"provider_template_id": "abc"}),
    ("identity", "POST", "/api/auth/login", {"code": "c"}),
    ("identity", "POST", "/api/auth/refresh", {"refresh_token": "rt_x"}),
    ("identity", "POST", "/api/auth/logout", {"refresh_token": "rt_x"}),
    ("identity", "POST", "/api/auth/admin/login", {"name": "nobody", "password": "p"}),
)  # fmt: skip
# Bodies that are hostile as a whole go to every body route, and to these without one.
NO_BODY_POSTS = (
    ("seckill", SK + "/1/end"),
    ("seckill", SK + "/1/cancel"),
    ("order", f"/api/orders/{ORDER_ID}/cancel"),
    ("groupbuy", "/api/groupbuy/campaigns/1/groups"),
    ("groupbuy", f"/api/groupbuy/groups/{GROUP}/join"),
    ("coupon", CP + "/1/end"),
    ("coupon", CLAIM),
)


def _json(value: Any) -> bytes:
    """JSON as Python's json writes it: integers past 64 bits and lone surrogates too
    (orjson refuses both)."""
    return json.dumps(value).encode()


def _path_probes(segments: Iterable[str]) -> Iterator[tuple[str, Probe]]:
    for service, method, template, body in PATH_ROUTES:
        for segment in segments:
            path = template.replace("{id}", segment)
            payload = b"" if body is None else _json(body)
            yield service, Probe(f"path {segment[:20]!r}", method, path, body=payload)


def _query_probes(values: Iterable[str]) -> Iterator[tuple[str, Probe]]:
    for service, path, params in QUERY_ROUTES:
        base, _, fixed = path.partition("?")
        for name in params:
            for value in values:
                kept = [p for p in fixed.split("&") if p and not p.startswith(f"{name}=")]
                query = "&".join([*kept, f"{name}={value}"])
                yield service, Probe(f"query {name}={value[:20]!r}", "GET", f"{base}?{query}")


def _field_probes(kind: type, values: Iterable[Any]) -> Iterator[tuple[str, Probe]]:
    """Each field of each body whose valid value is of `kind` (str: text, not times)."""
    values = list(values)
    for service, method, path, body in BODY_ROUTES:
        for name, valid in body.items():
            is_time = name.endswith("_at")
            if (kind is datetime) != is_time or (not is_time and not isinstance(valid, kind)):
                continue
            for value in values:
                probe = Probe(
                    f"{name}={str(value)[:20]!r}", method, path, body=_json({**body, name: value})
                )
                if service == "identity" and name == "password":
                    # Any password is tried (a wrong one is a refused login, recorded).
                    continue
                yield service, probe


def _raw_body_probes() -> Iterator[tuple[str, Probe]]:
    targets = [(s, m, p) for s, m, p, _ in BODY_ROUTES] + [(s, "POST", p) for s, p in NO_BODY_POSTS]
    for service, method, path in targets:
        for body in RAW_BODIES:
            yield service, Probe(f"body {body[:20]!r}", method, path, body=body)


def _payment_probe(what: str, body: bytes, header: bytes | None = None) -> tuple[str, Probe]:
    """A payment callback, signed with the right secret unless a header is given."""
    if header is None:
        header = sign(_SECRET[0], int(time.time()), body).encode()
    headers = ((SIGNATURE_HEADER.encode(), header),)
    return "order", Probe(what, "POST", "/api/payments/callback", headers, body)


_SECRET: list[str] = [""]  # the payment secret of the running stack


def _notice(**changes: Any) -> bytes:
    body = {
        "transaction_id": "t-1",
        "order_id": str(uuid.uuid4()),
        "amount_cents": 250,
        "status": "success",
        "paid_at": datetime.now(UTC).isoformat(),
    }
    return _json({**body, **changes})


# --- the classes ------------------------------------------------------------------------


async def test_integers_out_of_range_or_of_thousands_of_digits_are_refused_everywhere(
    stack: Stack,
) -> None:
    _SECRET[0] = stack.settings.payment_webhook_secret
    probes = [
        *_path_probes(BIG_DIGITS),
        *_query_probes(d for d in BIG_DIGITS if d != "0"),
        *_field_probes(int, BIG_INTS),
        *_field_probes(datetime, BAD_TIMES),
        *[_payment_probe(f"amount {v!r}"[:30], _notice(amount_cents=v)) for v in BIG_INTS],
        _payment_probe("paid_at", _notice(paid_at=BAD_TIMES[0])),
        _payment_probe("amount digits", b'{"amount_cents": ' + b"9" * WIDE + b"}"),
        # The signature's timestamp: thousands of digits, negative, past any real time.
        *[
            _payment_probe(f"signature t={t[:20]}", _notice(), f"t={t},v1={'0' * 64}".encode())
            for t in ("9" * WIDE, "-1", str(2**64), "1e9")
        ],
        *[
            ("order", Probe(f"limit {v[:20]}", "GET", f"/api/orders?limit={v}"))
            for v in ("9" * WIDE, "0" * WIDE + "1")
        ],
        ("console", Probe("version digits", "GET", f"/console/v/{'9' * WIDE}/app.js")),
    ]
    await refused_and_unchanged(stack, probes)


async def test_nul_and_invalid_unicode_are_refused_everywhere(stack: Stack) -> None:
    _SECRET[0] = stack.settings.payment_webhook_secret
    service, path, name = TEXT_QUERY
    probes = [
        *_path_probes(BAD_TEXT_IN_URL),
        *_query_probes(BAD_TEXT_IN_URL),
        # Free text: NUL is refused; invalid UTF-8 arrives as U+FFFD, a name like any other.
        *[(service, Probe(f"{name}={v}", "GET", f"{path}?{name}={v}")) for v in ("%00", "a%00")],
        *[
            (service, Probe(f"{name}={v}", "GET", f"{path}?{name}={v}", allowed=frozenset({200})))
            for v in ("%ff", "%ed%a0%80")
        ],
        *_field_probes(str, BAD_TEXT),
        *_raw_body_probes(),
        *[_payment_probe(f"txn {v!r}"[:30], _notice(transaction_id=v)) for v in BAD_TEXT],
        *[_payment_probe(f"order {v!r}"[:30], _notice(order_id=v)) for v in BAD_TEXT],
        _payment_probe("surrogate", b'{"transaction_id": "\\ud800"}'),
    ]
    await refused_and_unchanged(stack, probes)


async def test_non_ascii_header_values_are_refused_everywhere(stack: Stack) -> None:
    _SECRET[0] = stack.settings.payment_webhook_secret
    key = b"Idempotency-Key"
    keyed = (
        ("seckill", "/api/seckill/activities/1/reservations"),
        ("groupbuy", "/api/groupbuy/campaigns/1/groups"),
        ("groupbuy", f"/api/groupbuy/groups/{GROUP}/join"),
        ("order", f"/api/orders/{uuid.uuid4()}/cancel"),
        ("coupon", CLAIM),
    )
    guarded = (
        ("seckill", "GET", "/api/seckill/activities"),
        ("seckill", "POST", "/api/seckill/activities/1/reservations"),
        ("groupbuy", "GET", "/api/groupbuy/campaigns/1"),
        ("order", "GET", "/api/orders"),
        ("notify", "GET", "/api/notify/messages"),
        ("notify", "POST", "/api/notify/subscriptions"),
        ("coupon", "GET", "/api/coupons"),
        ("coupon", "POST", CLAIM),
    )
    probes = [
        *[
            (s, Probe(f"key {v!r}", "POST", p, ((key, v),), b"{}"))
            for s, p in keyed
            for v in (*NON_ASCII_VALUES, b"a b", b"x" * 65)
        ],
        *[
            (s, Probe(f"auth {v!r}", m, p, ((b"Authorization", v),)))
            for s, m, p in guarded
            for v in (
                *(b"Bearer " + v for v in NON_ASCII_VALUES),
                b"Bearer " + b"a" * 5000,
                b"Bearer a.b.\xff",
                b"Basic \xff",
                b"\xff",
            )
        ],
        *[
            _payment_probe(f"signature {v!r}"[:40], _notice(), v)
            for v in (
                *(b"t=1,v1=" + v for v in NON_ASCII_VALUES),
                *(b"t=" + v + b",v1=00" for v in NON_ASCII_VALUES),
                b"\xff",
                b"v1=00",
                b"t=1",
                b"t=1,v1=" + "０".encode() * 64,
            )
        ],
    ]
    await refused_and_unchanged(stack, probes)


async def test_a_client_address_header_that_is_no_address_is_ignored_not_a_500(
    stack: Stack,
) -> None:
    values = (*NON_ASCII_VALUES, b"1.2.3.4, 5.6.7.8", b"9" * WIDE, b"::ffff:1.2.3.4%\xff")
    for i, value in enumerate(values):
        # A name each: a name's failures would lock it before the last value is tried.
        body = _json({"name": f"nobody-{i}", "password": "wrong"})
        headers = ((b"X-Real-IP", value),)
        probe = Probe("x-real-ip", "POST", "/api/auth/admin/login", headers, body)
        status, _, answer = parse_answer(
            await raw_exchange(stack.ports["identity"], _raw(probe, None))
        )
        assert (status, orjson.loads(answer)["error"]) == (401, "invalid_credentials"), value
    # The peer (a trusted proxy here) is recorded, never the header that names no address.
    rows = await stack.db.fetch("SELECT client_ip FROM identity.admin_login_audit")
    assert [r["client_ip"] for r in rows] == ["127.0.0.1"] * len(values)


def _forged(settings: Settings, payload: bytes, header: bytes | None = None) -> bytes:
    """A token signed with the stack's own key (so only its claims are wrong)."""
    keys = settings.jwt_keys()
    header = header or orjson.dumps({"alg": "HS256", "typ": "JWT", "kid": keys.signing_kid})

    def b64(raw: bytes) -> bytes:
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    signing_input = b64(header) + b"." + b64(payload)
    digest = hmac.new(keys.signing_secret.encode(), signing_input, hashlib.sha256).digest()
    return b"Bearer " + signing_input + b"." + b64(digest)


async def test_jwt_claims_of_the_wrong_type_or_size_are_refused_everywhere(stack: Stack) -> None:
    exp = int(time.time()) + 600
    claims = [
        {"sub": "u\x00", "exp": exp},
        {"sub": "\ud800", "exp": exp},
        {"sub": "u\n", "exp": exp},
        {"sub": "u" * 129, "exp": exp},
        {"sub": "u" * 2500, "exp": exp},
        {"sub": 42, "exp": exp},
        {"sub": ["u"], "exp": exp},
        {"sub": {"id": "u"}, "exp": exp},
        {"sub": "u", "exp": exp, "roles": "admin"},
        {"sub": "u", "exp": exp, "roles": [1]},
        {"sub": "u", "exp": exp, "roles": ["admin"] * 17},
        {"sub": "u", "exp": exp, "roles": ["a" * 200]},
        {"sub": "u", "exp": str(exp)},
        {"sub": "u", "exp": None},
        {"sub": "u", "exp": exp, "iat": "now"},
        {"sub": "u", "exp": exp, "nbf": [1]},
        {"sub": "u", "exp": exp, "pad": "x" * 3500},  # a token over 4096 characters
    ]
    raw_payloads = [
        b'{"sub":"u","exp":' + b"9" * WIDE + b"}",
        b'{"sub":"u","exp":Infinity}',
        b'{"sub":"u","exp":1e400}',
        b'{"sub":"u","exp":NaN}',
        b'{"sub":"u","exp":%d,"iat":-Infinity}' % exp,
        b"[1]",
        b'"u"',
    ]
    s = stack.settings
    tokens = [
        *(_forged(s, _json(c)) for c in claims),
        *(_forged(s, p) for p in raw_payloads),
        _forged(s, _json(claims[0]), b'{"alg":"HS256","kid":["k1"]}'),
        _forged(s, _json(claims[0]), b'{"alg":"HS256","kid":"' + b"k" * 5000 + b'"}'),
        _forged(s, _json(claims[0]), b'{"alg":"none","kid":"k1"}'),
    ]
    guarded = (
        ("seckill", "GET", "/api/seckill/activities", b""),
        ("seckill", "POST", "/api/seckill/activities/1/reservations", b"{}"),
        ("seckill", "POST", SK, _json(activity_body())),
        ("groupbuy", "POST", "/api/groupbuy/campaigns/1/groups", b"{}"),
        ("groupbuy", "POST", GB, _json(campaign_body())),
        ("order", "GET", "/api/orders", b""),
        ("order", "POST", "/api/orders/admin/payments/t-1/refund", b'{"refund_id":"r"}'),
        ("notify", "POST", "/api/notify/subscriptions", b'{"template":"order_paid"}'),
        ("notify", "PUT", TEMPLATE_PATH, b'{"provider_template_id":"x"}'),
        ("coupon", "POST", CLAIM, b"{}"),
        ("coupon", "POST", CP, _json(UPCOMING_TEMPLATE)),
    )  # fmt: skip
    probes: list[tuple[str, Probe]] = [
        (service, Probe(f"token {i}", method, path, ((b"Authorization", token),), body))
        for service, method, path, body in guarded
        for i, token in enumerate(tokens)
    ]
    # Identity's refresh tokens: their own format, refused before any lookup.
    for path in ("/api/auth/refresh", "/api/auth/logout"):
        for value in ("rt_\x00", "rt_" + "x" * 200, "rt_ x", "\ud800", 12, ["rt_x"], None):
            body = _json({"refresh_token": value})
            probes.append(("identity", Probe(f"refresh {value!r}"[:30], "POST", path, body=body)))
    await refused_and_unchanged(stack, probes)


async def test_a_token_of_a_megabyte_is_refused_by_the_parser_in_json_or_cut_off(
    stack: Stack,
) -> None:
    before = await snapshot(stack)
    huge = ((b"Authorization", b"Bearer " + b"a" * 1_000_000),)
    for service in ("seckill", "order", "groupbuy", "notify", "coupon"):
        probe = Probe("1 MB token", "POST", "/api/x", huge, b"{}")
        try:
            answer = await raw_exchange(stack.ports[service], _raw(probe, None))
        except ConnectionResetError:
            # The parser answered at 8 KB and closed with the rest unread: the kernel's
            # reset may overtake the answer. Nothing reached a handler either way.
            continue
        status, _, body = parse_answer(answer)
        assert (status, orjson.loads(body)["error"]) == (431, "request_header_fields_too_large")
    assert await snapshot(stack) == before
