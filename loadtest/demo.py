"""End-to-end flash-sale demo: one sale, thousands of shoppers, invariants checked.

`make demo` starts the services and runs `python -m loadtest.demo`. The demo

1. creates an activity (admin token) that starts a few seconds from now,
2. mints one token per simulated shopper up front; a share of shoppers double-tap,
3. fires every press at the start time, concurrently, recording status, error code
   and latency of each,
4. waits until PostgreSQL holds one order per successful reservation,
5. prints a report and checks the invariants of docs/architecture.md (no oversell, per-user
   limit, reservation -> exactly one order, stock conservation, no errors).

Exit status: 0 all checks passed, 1 an invariant failed, 2 the demo could not run
(services unreachable, activity not created, ...).

The invariant checks and statistics are pure functions over plain data; the HTTP,
Redis and PostgreSQL calls live at the edges (the `*_io` section below).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import orjson
import redis.asyncio as aioredis

from loadtest.board import BoardWatch, Lag, board_lag, settled, watching
from services.common.auth import mint_token
from services.common.settings import Settings

# Answers a healthy sale is expected to give besides 201.
SOLD_OUT = (410, "sold_out")
LIMIT_REACHED = (409, "limit_reached")
RATE_LIMITED = 429

ACTIVITY_DURATION = timedelta(minutes=10)
PAYMENT_TIMEOUT_SECONDS = 900
LIVE_WAIT_SECONDS = 10.0
ORDERS_POLL_SECONDS = 0.5
ORDER_API_SAMPLE = 5
# The board sends figures four times a second; after the sale it must match the truth within this.
BOARD_SETTLE_SECONDS = 5.0


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class Press:
    """One press of the buy button, as the client saw it."""

    user_id: str
    latency_s: float
    status: int | None = None  # None: no HTTP answer (client error / timeout)
    error: str | None = None  # `error` code of an error body, or the client exception
    reservation_id: str | None = None
    quantity: int = 0

    @property
    def reserved(self) -> bool:
        return self.status == 201 and self.reservation_id is not None

    @property
    def client_error(self) -> bool:
        return self.status is None


@dataclass(frozen=True, slots=True)
class PressSummary:
    sent: int
    reserved: int
    reserved_units: int
    sold_out: int
    limit_reached: int
    rate_limited: int
    server_errors: int
    client_errors: int
    other: Mapping[str, int]  # "409 not_started" -> count, for everything unexpected


@dataclass(frozen=True, slots=True)
class Latency:
    count: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True, slots=True)
class OrdersWait:
    count: int
    landed: bool
    seconds: float  # after the last response


@dataclass(frozen=True, slots=True)
class StoreSnapshot:
    """What Redis, PostgreSQL and the API say after the sale."""

    order_reservation_ids: list[str]
    order_units_by_user: dict[str, int]
    order_units_total: int
    redis_remaining: int | None
    redis_held_by_user: dict[str, int]
    api_remaining: int | None
    api_status: str | None


@dataclass(slots=True)
class Plan:
    """Who presses how often; built before the sale so nothing is minted at start."""

    presses: list[tuple[str, str]] = field(default_factory=list)  # (user_id, token)
    presses_per_user: dict[str, int] = field(default_factory=dict)


# ------------------------------------------------------------------ pure functions


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (pct in [0, 100]) of unsorted values; None if empty."""
    if not values:
        return None
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile must be within [0, 100], got {pct}")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_stats(presses: Sequence[Press]) -> Latency:
    """Latency of the presses that got an HTTP answer, in milliseconds."""
    ms = [p.latency_s * 1000 for p in presses if not p.client_error]
    return Latency(
        count=len(ms),
        p50_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p99_ms=percentile(ms, 99),
        max_ms=max(ms) if ms else None,
    )


def summarize(presses: Sequence[Press]) -> PressSummary:
    reserved = sold_out = limit = rate = server = client = units = 0
    other: Counter[str] = Counter()
    for p in presses:
        if p.client_error:
            client += 1
            other[f"client {p.error}"] += 1
        elif p.reserved:
            reserved += 1
            units += p.quantity
        elif (p.status, p.error) == SOLD_OUT:
            sold_out += 1
        elif (p.status, p.error) == LIMIT_REACHED:
            limit += 1
        elif p.status == RATE_LIMITED:
            rate += 1
        else:
            if p.status is not None and p.status >= 500:
                server += 1
            other[f"{p.status} {p.error or '-'}"] += 1
    return PressSummary(
        sent=len(presses),
        reserved=reserved,
        reserved_units=units,
        sold_out=sold_out,
        limit_reached=limit,
        rate_limited=rate,
        server_errors=server,
        client_errors=client,
        other=dict(other),
    )


def units_by_user(presses: Iterable[Press]) -> dict[str, int]:
    """Units each user reserved, from the 201 answers."""
    held: dict[str, int] = defaultdict(int)
    for p in presses:
        if p.reserved:
            held[p.user_id] += p.quantity
    return dict(held)


def demand_units(presses_per_user: Mapping[str, int], per_user_limit: int) -> int:
    """Units the shoppers could legitimately get if stock were unlimited (1 per press)."""
    return sum(min(n, per_user_limit) for n in presses_per_user.values())


def check_no_oversell(stock: int, reserved_units: int, demand: int) -> CheckResult:
    """Invariant 1: never more than `stock` sold; with enough demand, all of it is sold."""
    expected = min(stock, demand)
    ok = reserved_units <= stock and reserved_units == expected
    if reserved_units > stock:
        why = f"OVERSOLD by {reserved_units - stock}"
    elif reserved_units < expected:
        why = f"{expected - reserved_units} units unsold although demand was {demand}"
    else:
        why = "sold out exactly" if expected == stock else "every shopper served"
    return CheckResult(
        "no oversell",
        ok,
        f"reserved {reserved_units} of stock {stock}, expected {expected} ({why})",
    )


def _over_limit(units: Mapping[str, int], limit: int) -> list[tuple[str, int]]:
    return sorted((u, n) for u, n in units.items() if n > limit)


def check_per_user_limit(
    limit: int,
    response_units: Mapping[str, int],
    order_units: Mapping[str, int],
    redis_held: Mapping[str, int],
) -> CheckResult:
    """Invariant 2: no user holds more than the limit, per the answers, orders and Redis."""
    sources = {"responses": response_units, "orders": order_units, "redis": redis_held}
    parts = []
    ok = True
    for name, units in sources.items():
        over = _over_limit(units, limit)
        top = max(units.values(), default=0)
        parts.append(f"{name}: max {top}, {len(over)} over")
        if over:
            ok = False
            sample = ", ".join(f"{u}={n}" for u, n in over[:3])
            parts[-1] += f" ({sample}{', ...' if len(over) > 3 else ''})"
    return CheckResult("per-user limit", ok, f"limit {limit}; " + "; ".join(parts))


def check_reservations_became_orders(
    reserved_ids: Sequence[str],
    order_ids: Sequence[str],
    reserved_units: int,
    order_units: int,
) -> CheckResult:
    """Invariant 3: the 201 reservation ids and the orders' reservation ids are one set,
    with no duplicate on either side, and the same number of units."""
    reserved_set, order_set = set(reserved_ids), set(order_ids)
    missing = reserved_set - order_set
    extra = order_set - reserved_set
    dup_answers = len(reserved_ids) - len(reserved_set)
    dup_orders = len(order_ids) - len(order_set)
    ok = not missing and not extra and not dup_answers and not dup_orders
    ok = ok and reserved_units == order_units
    detail = (
        f"{len(reserved_ids)} reservations, {len(order_ids)} orders; "
        f"missing {len(missing)}, unexpected {len(extra)}, "
        f"duplicate ids in answers {dup_answers}, duplicate orders {dup_orders}; "
        f"units {reserved_units} vs {order_units}"
    )
    if missing:
        detail += f" (e.g. missing {sorted(missing)[0]})"
    return CheckResult("reservation -> exactly one order", ok, detail)


def check_stock_conservation(
    stock: int,
    reserved_units: int,
    redis_remaining: int | None,
    api_remaining: int | None,
    redis_held_total: int,
) -> CheckResult:
    """Stock is conserved: remaining (Redis and API) = stock - reserved, and the per-user
    holdings in Redis add up to what was reserved."""
    expected = stock - reserved_units
    ok = redis_remaining == expected and api_remaining == expected
    ok = ok and redis_held_total == reserved_units
    return CheckResult(
        "stock conservation",
        ok,
        f"expected remaining {expected}; redis {redis_remaining}, api {api_remaining}; "
        f"redis holdings {redis_held_total} vs reserved {reserved_units}",
    )


def check_no_errors(summary: PressSummary) -> CheckResult:
    ok = summary.server_errors == 0 and summary.client_errors == 0
    return CheckResult(
        "no 5xx / client errors",
        ok,
        f"5xx {summary.server_errors}, client errors/timeouts {summary.client_errors}",
    )


def run_checks(
    *,
    stock: int,
    per_user_limit: int,
    presses_per_user: Mapping[str, int],
    presses: Sequence[Press],
    snapshot: StoreSnapshot,
) -> list[CheckResult]:
    summary = summarize(presses)
    reserved_ids = [p.reservation_id for p in presses if p.reservation_id and p.reserved]
    return [
        check_no_oversell(
            stock, summary.reserved_units, demand_units(presses_per_user, per_user_limit)
        ),
        check_per_user_limit(
            per_user_limit,
            units_by_user(presses),
            snapshot.order_units_by_user,
            snapshot.redis_held_by_user,
        ),
        check_reservations_became_orders(
            reserved_ids,
            snapshot.order_reservation_ids,
            summary.reserved_units,
            snapshot.order_units_total,
        ),
        check_stock_conservation(
            stock,
            summary.reserved_units,
            snapshot.redis_remaining,
            snapshot.api_remaining,
            sum(snapshot.redis_held_by_user.values()),
        ),
        check_no_errors(summary),
    ]


def build_plan(
    shoppers: Sequence[tuple[str, str]],
    double_share: float,
    rng: random.Random,
) -> Plan:
    """shoppers: (user id, token) each; a `double_share` of them press twice, back to back."""
    tokens = dict(shoppers)
    ids = list(tokens)
    doubles = set(rng.sample(ids, round(len(ids) * double_share)))
    rng.shuffle(ids)
    plan = Plan()
    for uid in ids:
        token = tokens[uid]
        n = 2 if uid in doubles else 1
        plan.presses.extend([(uid, token)] * n)
        plan.presses_per_user[uid] = n
    return plan


def rfc3339(ts: datetime) -> str:
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def format_report(
    *,
    activity_id: int,
    stock: int,
    summary: PressSummary,
    latency: Latency,
    wall_s: float,
    orders: OrdersWait,
    snapshot: StoreSnapshot,
    order_api: str,
) -> str:
    rps = summary.sent / wall_s if wall_s > 0 else 0.0
    other = ", ".join(f"{k} x{v}" for k, v in sorted(summary.other.items())) or "none"
    other_total = sum(summary.other.values())
    if orders.landed:
        landed = f"{orders.seconds:.2f} s (polled every {ORDERS_POLL_SECONDS} s)"
    elif orders.count > summary.reserved:
        landed = f"{orders.count} orders for {summary.reserved} reservations"
    else:
        landed = f"NOT within {orders.seconds:.0f} s ({orders.count}/{summary.reserved})"
    rows = [
        ("activity", f"{activity_id} (stock {stock})"),
        ("requests sent", f"{summary.sent}"),
        ("201 reserved", f"{summary.reserved} ({summary.reserved_units} units)"),
        ("410 sold out", f"{summary.sold_out}"),
        ("409 limit reached", f"{summary.limit_reached}"),
        ("429 rate limited", f"{summary.rate_limited}"),
        ("other statuses / errors", f"{other_total} ({other})"),
        ("wall time", f"{wall_s:.3f} s ({rps:,.0f} requests/s)"),
        (
            "latency p50/p90/p99/max",
            f"{_fmt_ms(latency.p50_ms)} / {_fmt_ms(latency.p90_ms)} / "
            f"{_fmt_ms(latency.p99_ms)} / {_fmt_ms(latency.max_ms)} ms",
        ),
        ("orders persisted", f"{orders.count}"),
        ("orders landed after last answer", landed),
        ("remaining stock (redis)", f"{snapshot.redis_remaining}"),
        ("remaining stock (GET activity)", f"{snapshot.api_remaining} ({snapshot.api_status})"),
        ("order API spot check", order_api),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


@dataclass(frozen=True, slots=True)
class BoardOutcome:
    """What the merchant console's live board showed, against the truth."""

    settled: bool
    remaining_lag: Lag
    orders_lag: Lag
    last_seckill: dict[str, Any]
    last_orders: dict[str, Any]
    errors: list[str]


def judge_board(watch: BoardWatch, did_settle: bool) -> BoardOutcome:
    return BoardOutcome(
        settled=did_settle,
        remaining_lag=board_lag(watch.truth_remaining, watch.board_remaining, falling=True),
        orders_lag=board_lag(watch.truth_orders, watch.board_orders, falling=False),
        last_seckill=watch.last_seckill,
        last_orders=watch.last_orders,
        errors=list(watch.errors),
    )


def check_board(
    board: BoardOutcome, summary: PressSummary, redis_remaining: int | None
) -> CheckResult:
    """The board's final figures are the exact truth: remaining stock, reservations,
    orders created, presses and sold-out answers."""
    shown = (
        board.last_seckill.get("remaining"),
        board.last_seckill.get("reservations"),
        board.last_orders.get("created"),
        board.last_seckill.get("presses"),
        board.last_seckill.get("sold_out_answers"),
    )
    want = (redis_remaining, summary.reserved, summary.reserved, summary.sent, summary.sold_out)
    ok = board.settled and shown == want and not board.errors
    detail = f"remaining/reservations/orders/presses/sold out shown {shown}, truth {want}"
    if board.errors:
        detail += f"; {'; '.join(board.errors)}"
    return CheckResult("live board shows the truth", ok, detail)


def _fmt_lag(lag: Lag) -> str:
    return (
        f"p50 {_fmt_ms(lag.p50_ms)} ms, max {_fmt_ms(lag.max_ms)} ms "
        f"over {lag.changes} changes of the truth"
    )


def format_board(board: BoardOutcome) -> str:
    rows = [
        ("board lag, remaining stock", _fmt_lag(board.remaining_lag)),
        ("board lag, orders created", _fmt_lag(board.orders_lag)),
        (
            "board presses / sold-out answers",
            f"{board.last_seckill.get('presses')} / {board.last_seckill.get('sold_out_answers')}",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def format_checks(checks: Sequence[CheckResult]) -> str:
    width = max(len(c.name) for c in checks)
    return "\n".join(
        f"  {'PASS' if c.passed else 'FAIL'}  {c.name:<{width}}  {c.detail}" for c in checks
    )


# ----------------------------------------------------------------------------- I/O


class DemoError(Exception):
    """The demo could not run (as opposed to an invariant failing)."""


def log(msg: str) -> None:
    print(f"· {msg}", file=sys.stderr, flush=True)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _json(resp: aiohttp.ClientResponse) -> Any:
    body = await resp.read()
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


async def create_activity(
    session: aiohttp.ClientSession, base: str, admin: str, args: argparse.Namespace, run_id: str
) -> tuple[int, datetime]:
    starts_at = datetime.now(UTC) + timedelta(seconds=args.start_in)
    body = {
        "sku": f"demo-{run_id}",
        "title": f"Demo flash sale {run_id}",
        "price_cents": 990,
        "stock": args.stock,
        "starts_at": rfc3339(starts_at),
        "ends_at": rfc3339(starts_at + ACTIVITY_DURATION),
        "per_user_limit": args.per_user_limit,
        "payment_timeout_seconds": PAYMENT_TIMEOUT_SECONDS,
    }
    url = f"{base}/api/seckill/admin/activities"
    try:
        async with session.post(url, data=orjson.dumps(body), headers=_json_headers(admin)) as r:
            payload = await _json(r)
            if r.status != 201 or not isinstance(payload, dict) or "id" not in payload:
                raise DemoError(f"creating the activity: HTTP {r.status} {payload!r}")
    except aiohttp.ClientError as exc:
        raise DemoError(f"seckill service not reachable at {base}: {exc}") from exc
    return int(payload["id"]), starts_at


async def adopt_activity(
    session: aiohttp.ClientSession, base: str, admin: str, args: argparse.Namespace
) -> tuple[int, datetime]:
    """Press on a sale made elsewhere (the merchant console): it must be untouched, upcoming
    or live; its stock and per-user limit become the demo's, for the checks."""
    url = f"{base}/api/seckill/admin/activities/{args.activity}"
    try:
        async with session.get(url, headers=_auth(admin)) as r:
            found = await _json(r)
            if r.status != 200 or not isinstance(found, dict):
                raise DemoError(f"activity {args.activity}: HTTP {r.status} {found!r}")
    except aiohttp.ClientError as exc:
        raise DemoError(f"seckill service not reachable at {base}: {exc}") from exc
    if found["state"] not in ("upcoming", "live") or found["remaining_stock"] != found["stock"]:
        raise DemoError(
            f"activity {args.activity} is {found['state']} with {found['remaining_stock']} of "
            f"{found['stock']} left: the demo presses on an untouched upcoming or live sale"
        )
    args.stock, args.per_user_limit = found["stock"], found["per_user_limit"]
    starts_at = datetime.fromisoformat(found["starts_at"].replace("Z", "+00:00"))
    return int(found["id"]), starts_at


def _json_headers(token: str) -> dict[str, str]:
    return {**_auth(token), "Content-Type": "application/json"}


async def get_activity(
    session: aiohttp.ClientSession, base: str, token: str, activity_id: int
) -> dict[str, Any]:
    url = f"{base}/api/seckill/activities/{activity_id}"
    async with session.get(url, headers=_auth(token)) as r:
        payload = await _json(r)
        if r.status != 200 or not isinstance(payload, dict):
            raise DemoError(f"GET activity {activity_id}: HTTP {r.status} {payload!r}")
        return payload


async def wait_until_live(
    session: aiohttp.ClientSession, base: str, token: str, activity_id: int, starts_at: datetime
) -> None:
    """Sleep to the start time, then confirm with the server's own clock."""
    delay = (starts_at - datetime.now(UTC)).total_seconds()
    if delay > 0:
        log(f"sale starts in {delay:.1f} s")
        await asyncio.sleep(delay)
    deadline = time.monotonic() + LIVE_WAIT_SECONDS
    while True:
        status = (await get_activity(session, base, token, activity_id)).get("status")
        if status == "live":
            return
        if status != "upcoming" or time.monotonic() > deadline:
            raise DemoError(f"activity {activity_id} is {status!r}, expected it to go live")
        await asyncio.sleep(0.02)


async def press(
    session: aiohttp.ClientSession, url: str, user_id: str, token: str, body: bytes
) -> Press:
    t0 = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=_json_headers(token)) as r:
            payload = await _json(r)
            status = r.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Press(user_id, time.perf_counter() - t0, error=type(exc).__name__)
    latency = time.perf_counter() - t0
    if not isinstance(payload, dict):
        return Press(user_id, latency, status, error="non_json_body")
    if status == 201:
        rid = payload.get("reservation_id")
        return Press(
            user_id,
            latency,
            status,
            reservation_id=str(rid) if rid is not None else None,
            quantity=int(payload.get("quantity", 1)),
            error=None if rid is not None else "no_reservation_id",
        )
    return Press(user_id, latency, status, error=str(payload.get("error") or "-"))


async def fire(
    session: aiohttp.ClientSession, base: str, activity_id: int, plan: Plan
) -> tuple[list[Press], float]:
    url = f"{base}/api/seckill/activities/{activity_id}/reservations"
    body = orjson.dumps({"quantity": 1})
    t0 = time.perf_counter()
    tasks = [press(session, url, uid, token, body) for uid, token in plan.presses]
    presses = await asyncio.gather(*tasks)
    return list(presses), time.perf_counter() - t0


async def wait_for_orders(
    pg: asyncpg.Connection, activity_id: int, expected: int, timeout_s: float
) -> OrdersWait:
    t0 = time.monotonic()
    while True:
        count = await pg.fetchval(
            "SELECT count(*) FROM orders.orders WHERE activity_id = $1 AND source = 'seckill'",
            activity_id,
        )
        elapsed = time.monotonic() - t0
        if count >= expected:
            return OrdersWait(count, count == expected, elapsed)
        if elapsed >= timeout_s:
            return OrdersWait(count, False, elapsed)
        await asyncio.sleep(ORDERS_POLL_SECONDS)


async def snapshot_stores(
    pg: asyncpg.Connection,
    r: aioredis.Redis,
    session: aiohttp.ClientSession,
    base: str,
    token: str,
    activity_id: int,
) -> StoreSnapshot:
    order_ids = [
        row["reservation_id"]
        for row in await pg.fetch(
            "SELECT reservation_id FROM orders.orders WHERE activity_id = $1"
            " AND source = 'seckill'",
            activity_id,
        )
    ]
    per_user = await pg.fetch(
        "SELECT user_id, sum(quantity)::bigint AS units FROM orders.orders"
        " WHERE activity_id = $1 AND source = 'seckill' GROUP BY user_id",
        activity_id,
    )
    order_units = {row["user_id"]: int(row["units"]) for row in per_user}
    raw_stock = await r.get(f"sk:{{a{activity_id}}}:stock")
    raw_users = await r.hgetall(f"sk:{{a{activity_id}}}:users")
    activity = await get_activity(session, base, token, activity_id)
    api_remaining = activity.get("remaining_stock")
    return StoreSnapshot(
        order_reservation_ids=order_ids,
        order_units_by_user=order_units,
        order_units_total=sum(order_units.values()),
        redis_remaining=int(raw_stock) if raw_stock is not None else None,
        redis_held_by_user={_s(k): int(v) for k, v in raw_users.items()},
        api_remaining=int(api_remaining) if api_remaining is not None else None,
        api_status=activity.get("status"),
    )


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


async def spot_check_order_api(
    session: aiohttp.ClientSession, order_base: str, winners: Sequence[tuple[Press, str]]
) -> str:
    """Informational: a few winners list their orders and find their reservation."""
    if not winners:
        return "skipped (no reservations)"
    seen = 0
    for p, token in winners:
        try:
            async with session.get(
                f"{order_base}/api/orders", params={"limit": "50"}, headers=_auth(token)
            ) as r:
                body = await r.read()
                if r.status == 200 and p.reservation_id and p.reservation_id.encode() in body:
                    seen += 1
        except (aiohttp.ClientError, TimeoutError):
            pass
    return f"{seen}/{len(winners)} sampled winners see their order (info, not a check)"


@dataclass(frozen=True, slots=True)
class Logins:
    """Shoppers logged in through the real login route: (user id, access token) each."""

    wanted: int
    shoppers: list[tuple[str, str]]
    refusals: dict[str, int]
    per_second: float


async def log_in(session: aiohttp.ClientSession, base: str, run_id: str, count: int) -> Logins:
    """Log `count` shoppers in as their mini-program would (a wx.login() code, here one
    the local fake WeChat provider accepts: "<who>.<nonce>"), all at once."""

    async def one(n: int) -> tuple[str, str] | str:
        code = f"demo-{run_id}-login-{n}.{random.randrange(1 << 30):x}"
        try:
            async with session.post(f"{base}/api/auth/login", json={"code": code}) as r:
                body = await r.json(content_type=None)
                if r.status == 200 and isinstance(body, dict):
                    return str(body["user"]["id"]), str(body["access_token"])
                error = body.get("error") if isinstance(body, dict) else None
                return f"{r.status} {error}"
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
            return type(exc).__name__

    started = time.perf_counter()
    answers = await asyncio.gather(*(one(n) for n in range(count)))
    elapsed = max(time.perf_counter() - started, 1e-9)
    shoppers = [a for a in answers if isinstance(a, tuple)]
    refusals = Counter(a for a in answers if isinstance(a, str))
    return Logins(count, shoppers, dict(refusals), len(shoppers) / elapsed)


def check_logins(logins: Logins) -> CheckResult:
    """Every shopper who logged in through the gateway got a token, each a different user."""
    users = {uid for uid, _ in logins.shoppers}
    passed = len(logins.shoppers) == logins.wanted == len(users)
    detail = f"{len(logins.shoppers)}/{logins.wanted} logged in as {len(users)} users"
    if logins.refusals:
        detail += f"; refused: {logins.refusals}"
    return CheckResult("shoppers log in through the gateway", passed, detail)


@dataclass(frozen=True, slots=True)
class SaleOutcome:
    run_id: str
    activity_id: int
    plan: Plan
    presses: list[Press]
    wall_s: float
    orders: OrdersWait
    snapshot: StoreSnapshot
    order_api: str
    logins: Logins
    board: BoardOutcome | None


async def run_sale(args: argparse.Namespace, settings: Settings) -> SaleOutcome:
    """All the I/O: create the sale, fire the presses, wait for orders, read the stores."""
    seckill, order = args.seckill_url.rstrip("/"), args.order_url.rstrip("/")
    run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S") + f"-{random.randrange(1000):03d}"
    rng = random.Random(args.seed)
    admin = mint_token(settings.jwt_keys(), f"demo-{run_id}-admin", roles=["admin"])

    log(f"connecting to PostgreSQL and Redis; seckill at {seckill}, order at {order}")
    try:
        pg = await asyncpg.connect(settings.database_url, timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise DemoError(f"PostgreSQL not reachable: {exc}") from exc
    r = aioredis.from_url(settings.redis_url)
    try:
        try:
            await r.ping()
        except (aioredis.RedisError, OSError) as exc:
            raise DemoError(f"Redis not reachable at {settings.redis_url}: {exc}") from exc
        connector = aiohttp.TCPConnector(limit=args.connections)
        timeout = aiohttp.ClientTimeout(total=args.request_timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            if args.activity:
                activity_id, starts_at = await adopt_activity(session, seckill, admin, args)
                verb = "pressing on"
            else:
                activity_id, starts_at = await create_activity(
                    session, seckill, admin, args, run_id
                )
                verb = "created"
            log(f"{verb} activity {activity_id}: stock {args.stock}, starts {rfc3339(starts_at)}")

            logins = min(args.logins, args.users)
            log(f"logging {logins} shoppers in through {args.login_url}/api/auth/login")
            logged_in = await log_in(session, args.login_url.rstrip("/"), run_id, logins)
            keys = settings.jwt_keys()
            minted = [
                (uid, mint_token(keys, uid))
                for uid in (f"demo-{run_id}-{n}" for n in range(logins, args.users))
            ]
            plan = build_plan(logged_in.shoppers + minted, args.double_press_share, rng)
            log(
                f"{len(logged_in.shoppers)} logged in ({logged_in.per_second:.0f}/s), "
                f"{len(minted)} minted: {len(plan.presses)} presses"
            )

            board: BoardOutcome | None = None
            async with contextlib.AsyncExitStack() as stack:
                watch = None
                if args.board_url:
                    log(f"watching the live board through {args.board_url}")
                    watch = await stack.enter_async_context(
                        watching(
                            session, args.board_url, admin, activity_id, settings.database_url, r
                        )
                    )
                await wait_until_live(session, seckill, admin, activity_id, starts_at)
                log(f"firing {len(plan.presses)} presses over {args.connections} connections")
                presses, wall_s = await fire(session, seckill, activity_id, plan)

                reserved = sum(1 for p in presses if p.reserved)
                log(f"{reserved} reserved in {wall_s:.2f} s; waiting for the orders in PostgreSQL")
                orders = await wait_for_orders(pg, activity_id, reserved, args.orders_timeout)
                if watch is not None:
                    done = await settled(watch, BOARD_SETTLE_SECONDS, len(presses))
                    board = judge_board(watch, done)
            snapshot = await snapshot_stores(pg, r, session, seckill, admin, activity_id)

            tokens = dict(plan.presses)
            winners = [p for p in presses if p.reserved]
            sample = rng.sample(winners, min(ORDER_API_SAMPLE, len(winners)))
            order_api = await spot_check_order_api(
                session, order, [(p, tokens[p.user_id]) for p in sample]
            )
    except (aiohttp.ClientError, aioredis.RedisError, asyncpg.PostgresError, OSError) as exc:
        raise DemoError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        await pg.close()
        await r.aclose()
    return SaleOutcome(
        run_id, activity_id, plan, presses, wall_s, orders, snapshot, order_api, logged_in, board
    )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    out = await run_sale(args, settings)
    summary = summarize(out.presses)
    checks = run_checks(
        stock=args.stock,
        per_user_limit=args.per_user_limit,
        presses_per_user=out.plan.presses_per_user,
        presses=out.presses,
        snapshot=out.snapshot,
    )
    if out.logins.wanted:
        checks.append(check_logins(out.logins))
    if out.board is not None:
        checks.append(check_board(out.board, summary, out.snapshot.redis_remaining))
    report = format_report(
        activity_id=out.activity_id,
        stock=args.stock,
        summary=summary,
        latency=latency_stats(out.presses),
        wall_s=out.wall_s,
        orders=out.orders,
        snapshot=out.snapshot,
        order_api=out.order_api,
    )
    failed = [c.name for c in checks if not c.passed]
    verdict = f"FAILED: {', '.join(failed)}" if failed else "ALL PASS"
    if out.board is not None:
        report += "\n" + format_board(out.board)
    print(f"\nFlash sale demo {out.run_id}\n\n{report}\n\nInvariants\n\n{format_checks(checks)}")
    print(f"\n{verdict}", flush=True)
    return 1 if failed else 0


# ---------------------------------------------------------------------------- main


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _share(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {value}")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def parse_args(settings: Settings, argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.demo",
        description="Run one flash sale end to end against running services and check "
        "the invariants (exit 1 if any fails, 2 if the demo cannot run). "
        "Connection settings come from the environment (REDIS_URL, DATABASE_URL, "
        "JWT_SECRET, HTTP_HOST, SECKILL_PORT, ORDER_PORT, ...).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--stock", type=_positive_int, default=500, help="units on sale")
    p.add_argument("--users", type=_positive_int, default=5000, help="simulated shoppers")
    p.add_argument(
        "--double-press-share",
        type=_share,
        default=0.3,
        help="share of shoppers who press twice at once",
    )
    p.add_argument(
        "--connections", type=_positive_int, default=400, help="client connection pool size"
    )
    p.add_argument("--per-user-limit", type=_positive_int, default=1, help="units per shopper")
    p.add_argument(
        "--orders-timeout",
        type=_positive_float,
        default=90.0,
        help="seconds to wait for every reservation to become an order",
    )
    p.add_argument(
        "--start-in", type=_positive_float, default=3.0, help="seconds until the sale starts"
    )
    p.add_argument(
        "--request-timeout", type=_positive_float, default=30.0, help="per-request timeout (s)"
    )
    p.add_argument("--seed", type=int, default=None, help="seed for choosing double-tappers")
    p.add_argument(
        "--seckill-url",
        default=f"http://{settings.http_host}:{settings.seckill_port}",
        help="seckill base URL, e.g. a gateway (default from HTTP_HOST, SECKILL_PORT)",
    )
    p.add_argument(
        "--logins",
        type=int,
        default=500,
        help="shoppers who log in through POST /api/auth/login (the others get minted "
        "tokens, which is faster); 0: none",
    )
    p.add_argument(
        "--login-url",
        default=f"http://{settings.http_host}:{settings.gateway_port}",
        help="base URL of /api/auth/login: the gateway (default from HTTP_HOST, GATEWAY_PORT)",
    )
    p.add_argument(
        "--activity",
        type=_positive_int,
        default=None,
        help="press on this existing activity (made in the merchant console, untouched, "
        "upcoming or live) instead of creating one; its stock and per-user limit replace "
        "--stock and --per-user-limit",
    )
    p.add_argument(
        "--board-url",
        default=f"http://127.0.0.1:{settings.admin_gateway_port}",
        help="the gateway's admin side: watch the merchant console's live board of the "
        "sale there and check it shows the truth ('' to skip)",
    )
    p.add_argument(
        "--order-url",
        default=f"http://{settings.http_host}:{settings.order_port}",
        help="order base URL, e.g. a gateway (default from HTTP_HOST, ORDER_PORT)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    settings = Settings.from_env()
    args = parse_args(settings, argv)
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        return runner(run(args, settings))
    except DemoError as exc:
        print(f"demo could not run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
