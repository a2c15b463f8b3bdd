"""Invariant checks after a Locust run, against PostgreSQL and Redis (docs/architecture.md,
"Invariants", 1-7).

    python -m loadtest.verify RUN_DIR [--orders-timeout 120]

RUN_DIR holds what the locustfile wrote with --answers-dir: run.json (the sale and/or the
campaign, and the user classes that ran) and one answers-<pid>.json per Locust process
(reservation ids answered with 201, definitive presses per user, groups opened and joins
answered 201, payments answered). Which checks run follows what ran.

The flash sale (the demo's checks, loadtest.demo, fed from the stores):
- no oversell: units reserved in Redis <= stock, and = min(stock, demand), where demand
  counts the shoppers who got a definitive answer (201, sold out, limit reached): stock
  left while someone was told "sold out" fails too;
- per-user limit, from the answers, the orders and Redis's holdings;
- every reservation recorded in Redis is exactly one order, and every 201 answered is
  one of them (nothing acknowledged was lost);
- stock conservation (Redis, API) and no unexpected answers.

Group buying (waits, bounded by --orders-timeout, until the groups past their deadline
are swept and PostgreSQL and the orders caught up with Redis):
- no campaign oversold: units held by open groups + sold to completed groups <= stock,
  and = stock - remaining;
- a group completed in full has exactly N members and exactly one join was told it
  completed it; no group over N;
- every open/join answered 201 is a member in Redis; PostgreSQL records the same groups;
- every member of a group has exactly one order, of that group;
- a failed group's orders are all cancelled (group_failed), and no other order is.

Payments:
- no order both paid and cancelled, except a paid order of a failed group (refunded);
  a paid order has exactly one applied payment;
- every payment answered 200 paid is the order's applied payment and the order is paid;
  every 200 refund_requested is recorded as a refund.

Coupons (loadtest.verify_coupons; waits, bounded by --orders-timeout, until the record
consumer wrote a row for every coupon Redis issued and every 201 answered):
- within quantity: rows and Redis's issued <= quantity, and = min(quantity, demand);
- quantity conserved (Redis and the template page), per-user limit (answers, rows, Redis);
- every 201 answered is exactly one row, of that shopper and template; no duplicates
  (no coupon answered twice or recorded twice; Idempotency-Key retries got the same
  coupon); every coupon issued recorded; no claim answered 5xx.

Exit status: 0 all pass, 1 a check failed, 2 the checks could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import redis.asyncio as aioredis

from loadtest.demo import (
    CheckResult,
    Press,
    StoreSnapshot,
    check_no_oversell,
    check_per_user_limit,
    check_reservations_became_orders,
    check_stock_conservation,
    demand_units,
    format_checks,
    snapshot_stores,
    units_by_user,
    wait_for_orders,
)
from loadtest.scenarios import PAYING_CLASSES, RUN_FILE, Answer, AnswerLog, load_answers
from loadtest.verify_coupons import coupon_checks
from services.common.auth import mint_token
from services.common.settings import Settings
from services.groupbuy.keys import campaign_keys
from services.seckill.keys import activity_keys

CHECKS_FILE = "checks.txt"


@dataclass(frozen=True, slots=True)
class RedisReservation:
    reservation_id: str
    user: str
    qty: int
    state: str


def parse_reservations(raw: Mapping[bytes | str, bytes | str]) -> list[RedisReservation]:
    """The activity's reservations hash (id -> JSON written by reserve.lua)."""
    out = []
    for key, value in raw.items():
        rid = key.decode() if isinstance(key, bytes) else key
        record = orjson.loads(value)
        out.append(RedisReservation(rid, str(record["user"]), int(record["qty"]), record["state"]))
    return out


def check_acknowledged_recorded(
    answered: Sequence[str], recorded: Sequence[RedisReservation]
) -> CheckResult:
    """Every reservation id answered with 201 is recorded in Redis, once."""
    known = {r.reservation_id for r in recorded}
    lost = sorted(set(answered) - known)
    dups = len(answered) - len(set(answered))
    ok = not lost and not dups
    detail = f"{len(answered)} answered, {len(lost)} not in Redis, {dups} answered twice"
    if lost:
        detail += f" (e.g. {lost[0]})"
    return CheckResult("201 answers recorded", ok, detail)


def check_answers(answers: AnswerLog, processes: int) -> CheckResult:
    unexpected = answers.answers.get(Answer.UNEXPECTED, 0)
    ok = processes > 0 and unexpected == 0 and sum(answers.answers.values()) > 0
    counts = ", ".join(f"{k} {v}" for k, v in sorted(answers.answers.items())) or "none"
    return CheckResult(
        "answers as expected",
        ok,
        f"{processes} Locust process files; {counts}",
    )


def run_load_checks(
    *,
    stock: int,
    per_user_limit: int,
    answers: AnswerLog,
    processes: int,
    recorded: Sequence[RedisReservation],
    snapshot: StoreSnapshot,
) -> list[CheckResult]:
    """Pure: the invariants over what the shoppers were answered and what the stores hold.
    No release runs during a load test, so every recorded reservation is a live one."""
    presses = [
        Press(user, 0.0, 201, reservation_id=rid, quantity=qty)
        for user, rid, qty in answers.reservations
    ]
    recorded_units = sum(r.qty for r in recorded)
    return [
        check_no_oversell(
            stock, recorded_units, demand_units(answers.definitive_presses, per_user_limit)
        ),
        check_per_user_limit(
            per_user_limit,
            units_by_user(presses),
            snapshot.order_units_by_user,
            snapshot.redis_held_by_user,
        ),
        check_acknowledged_recorded([p.reservation_id or "" for p in presses], recorded),
        check_reservations_became_orders(
            [r.reservation_id for r in recorded],
            snapshot.order_reservation_ids,
            recorded_units,
            snapshot.order_units_total,
        ),
        check_stock_conservation(
            stock,
            recorded_units,
            snapshot.redis_remaining,
            snapshot.api_remaining,
            sum(snapshot.redis_held_by_user.values()),
        ),
        check_answers(answers, processes),
    ]


# ------------------------------------------------------------------- group buying


@dataclass(frozen=True, slots=True)
class GroupState:
    """One group as Redis (the gate) or PostgreSQL (the record) holds it."""

    group_id: str
    state: str  # open | completed | failed
    how: str  # full | virtual | "" (not completed)
    size: int
    members: tuple[str, ...]  # in joining order
    deadline_ms: int = 0
    released: int = 0  # units of completed members given back (release_unit.lua)


@dataclass(frozen=True, slots=True)
class OrderRow:
    id: str
    reservation_id: str
    user_id: str
    state: str  # pending_payment | paid | cancelled
    cancel_reason: str | None
    paid: bool  # paid_at is set (stays set when a paid group order is cancelled)
    group_id: str | None = None
    group_state: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentRow:
    transaction_id: str
    order_id: str
    outcome: str  # applied | refund_requested
    refund_reason: str | None


@dataclass(frozen=True, slots=True)
class GroupbuySnapshot:
    """The campaign after the run: Redis's groups and stock, PostgreSQL's groups and
    the group orders (source groupbuy)."""

    remaining: int | None
    redis_groups: dict[str, GroupState]
    pg_groups: dict[str, GroupState]
    orders: list[OrderRow]
    now_ms: int  # Redis server time, the clock of the deadlines


def parse_group(
    group_id: str, raw: Mapping[bytes | str, bytes | str], members: Sequence[bytes | str]
) -> GroupState:
    """A group's Redis hash (written by open/join/expire.lua) and its member list."""
    h = {_s(k): _s(v) for k, v in raw.items()}
    return GroupState(
        group_id=group_id,
        state=h.get("state", ""),
        how=h.get("how", ""),
        size=int(h.get("size", 0)),
        members=tuple(_s(m) for m in members),
        deadline_ms=int(h.get("deadline", 0)),
        released=sum(1 for k in h if k.startswith("released:")),
    )


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _eg(items: Sequence[str]) -> str:
    return f" (e.g. {items[0]})" if items else ""


def check_group_no_oversell(stock: int, snapshot: GroupbuySnapshot) -> CheckResult:
    """Units taken by groups never exceed the stock, and the stock is conserved: stock =
    remaining + N x open groups + members of completed groups (less units given back)."""
    groups = snapshot.redis_groups.values()
    open_units = sum(g.size for g in groups if g.state == "open")
    completed_units = sum(len(g.members) - g.released for g in groups if g.state == "completed")
    taken = open_units + completed_units
    remaining = snapshot.remaining
    ok = remaining is not None and remaining >= 0 and taken <= stock and remaining + taken == stock
    return CheckResult(
        "group-buy: no oversell",
        ok,
        f"stock {stock}: {open_units} held by open groups, {completed_units} sold to "
        f"completed groups, remaining {remaining}",
    )


def check_groups_complete_once(snapshot: GroupbuySnapshot, answers: AnswerLog) -> CheckResult:
    """Each group completed in full has exactly N members and was completed by exactly one
    join (the one answered "completed"); no group ever holds more than N."""
    told_completed = Counter(g for g, _user, completed in answers.joins if completed)
    bad: list[str] = []
    for g in snapshot.redis_groups.values():
        n = len(g.members)
        if n > g.size:
            bad.append(f"{g.group_id} has {n} members, N={g.size}")
        if g.state == "completed" and g.how == "full":
            if n != g.size:
                bad.append(f"{g.group_id} completed with {n} of {g.size}")
            if told_completed[g.group_id] != 1:
                bad.append(f"{g.group_id}: {told_completed[g.group_id]} joins told completed")
        elif told_completed[g.group_id]:
            bad.append(f"{g.group_id} is {g.state} but a join was told it completed")
    unknown = sorted(set(told_completed) - set(snapshot.redis_groups))
    bad += [f"{gid} told completed, not in Redis" for gid in unknown]
    full = sum(1 for g in snapshot.redis_groups.values() if g.how == "full")
    return CheckResult(
        "group-buy: N members, one completion",
        not bad,
        f"{len(snapshot.redis_groups)} groups, {full} completed full, "
        f"{sum(told_completed.values())} completing joins answered; {len(bad)} problems" + _eg(bad),
    )


def check_groups_recorded(snapshot: GroupbuySnapshot, answers: AnswerLog) -> CheckResult:
    """Every 201 (open or join) is a member in Redis, and PostgreSQL's record of the
    groups (state, members) is Redis's."""
    bad: list[str] = []
    for gid, leader in answers.groups:
        g = snapshot.redis_groups.get(gid)
        if g is None or not g.members or g.members[0] != leader:
            bad.append(f"opened {gid} by {leader}: not its leader in Redis")
    for gid, user, _completed in answers.joins:
        g = snapshot.redis_groups.get(gid)
        if g is None or user not in g.members:
            bad.append(f"{user} joined {gid}: not a member in Redis")
    for gid, g in snapshot.redis_groups.items():
        rec = snapshot.pg_groups.get(gid)
        if rec is None:
            bad.append(f"{gid} not recorded in PostgreSQL")
        elif (rec.state, rec.how, set(rec.members)) != (g.state, g.how, set(g.members)):
            redis_says, pg_says = f"{g.state}/{len(g.members)}", f"{rec.state}/{len(rec.members)}"
            bad.append(f"{gid}: Redis {redis_says}, PostgreSQL {pg_says}")
    bad += [
        f"{gid} recorded, not in Redis"
        for gid in sorted(set(snapshot.pg_groups) - set(snapshot.redis_groups))
    ]
    acked = len(answers.groups) + len(answers.joins)
    return CheckResult(
        "group-buy: 201 answers recorded",
        not bad,
        f"{acked} opens and joins answered 201, {len(snapshot.pg_groups)} groups recorded; "
        f"{len(bad)} problems" + _eg(bad),
    )


def check_group_members_one_order(snapshot: GroupbuySnapshot) -> CheckResult:
    """Every member of every group has exactly one order, of that group; no order of the
    campaign belongs to anyone else."""
    expected = {
        f"{gid}:{user}": gid for gid, g in snapshot.redis_groups.items() for user in g.members
    }
    counts = Counter(o.reservation_id for o in snapshot.orders)
    missing = sorted(set(expected) - set(counts))
    extra = sorted(set(counts) - set(expected))
    twice = sorted(k for k, n in counts.items() if n > 1)
    wrong_group = sorted(
        o.reservation_id
        for o in snapshot.orders
        if o.reservation_id in expected and o.group_id != expected[o.reservation_id]
    )
    ok = not (missing or extra or twice or wrong_group)
    return CheckResult(
        "group member -> exactly one order",
        ok,
        f"{len(expected)} members, {len(snapshot.orders)} orders; {len(missing)} without, "
        f"{len(extra)} not members, {len(twice)} twice, {len(wrong_group)} of another group"
        + _eg(missing or extra or twice or wrong_group),
    )


def check_failed_groups_cancelled(snapshot: GroupbuySnapshot) -> CheckResult:
    """A failed group's orders are all cancelled (reason group_failed, paid ones too, with
    a refund); no order of a group that did not fail is cancelled for that reason."""
    failed = {gid for gid, g in snapshot.redis_groups.items() if g.state == "failed"}
    bad = [
        o.reservation_id
        for o in snapshot.orders
        if (o.group_id in failed) != (o.state == "cancelled" and o.cancel_reason == "group_failed")
    ]
    of_failed = sum(1 for o in snapshot.orders if o.group_id in failed)
    return CheckResult(
        "failed groups' orders cancelled",
        not bad,
        f"{len(failed)} failed groups, {of_failed} of their orders; {len(bad)} wrong" + _eg(bad),
    )


def groups_settled(snapshot: GroupbuySnapshot) -> bool:
    """Whether the pipeline caught up with Redis: no group is past its deadline unswept,
    PostgreSQL records every group as Redis has it, and every member's order exists and
    knows its group's state. The checks wait for this (bounded) before judging."""
    if any(
        g.state == "open" and g.deadline_ms <= snapshot.now_ms
        for g in snapshot.redis_groups.values()
    ):
        return False
    for gid, g in snapshot.redis_groups.items():
        rec = snapshot.pg_groups.get(gid)
        if rec is None or (rec.state, set(rec.members)) != (g.state, set(g.members)):
            return False
    by_key = {o.reservation_id: o for o in snapshot.orders}
    for gid, g in snapshot.redis_groups.items():
        for user in g.members:
            order = by_key.get(f"{gid}:{user}")
            if order is None or order.group_state != g.state:
                return False
    return True


def run_groupbuy_checks(
    *, stock: int, answers: AnswerLog, snapshot: GroupbuySnapshot
) -> list[CheckResult]:
    """Pure: invariants 5 and 6 of docs/architecture.md, over the stores and answers."""
    return [
        check_group_no_oversell(stock, snapshot),
        check_groups_complete_once(snapshot, answers),
        check_groups_recorded(snapshot, answers),
        check_group_members_one_order(snapshot),
        check_failed_groups_cancelled(snapshot),
    ]


# ----------------------------------------------------------------------- payments


def check_no_order_paid_and_cancelled(
    orders: Sequence[OrderRow], payments: Sequence[PaymentRow]
) -> CheckResult:
    """A payment never revives a cancelled order and a paid order is never cancelled,
    except a paid order of a failed group (cancelled group_failed, refunded). A paid order
    has exactly one applied payment."""
    applied = Counter(p.order_id for p in payments if p.outcome == "applied")
    bad: list[str] = []
    for o in orders:
        was_paid = o.paid or applied[o.id] > 0
        if o.state == "cancelled" and was_paid and o.cancel_reason != "group_failed":
            bad.append(f"{o.id} paid and cancelled ({o.cancel_reason})")
        if applied[o.id] > 1:
            bad.append(f"{o.id} has {applied[o.id]} applied payments")
        if o.state == "paid" and applied[o.id] != 1:
            bad.append(f"{o.id} paid without an applied payment")
    paid = sum(1 for o in orders if o.state == "paid")
    refunded = sum(1 for o in orders if o.state == "cancelled" and o.paid)
    return CheckResult(
        "no order both paid and cancelled",
        not bad,
        f"{len(orders)} orders, {paid} paid, {refunded} paid then cancelled group_failed; "
        f"{len(bad)} problems" + _eg(bad),
    )


def check_acknowledged_payments(
    answered: Sequence[tuple[str, str, str]],
    payments: Sequence[PaymentRow],
    orders: Sequence[OrderRow],
) -> CheckResult:
    """Every payment answered 200 paid is the order's applied payment and the order is
    paid (or, for a group that failed afterwards, cancelled group_failed); every 200
    refund_requested is recorded as a refund. A replay answered differently fails."""
    by_txn = {p.transaction_id: p for p in payments}
    by_order = {o.id: o for o in orders}
    answers: dict[str, tuple[str, str]] = {}
    bad: list[str] = []
    for order_id, txn, result in answered:
        if answers.setdefault(txn, (order_id, result)) != (order_id, result):
            bad.append(f"{txn} answered {answers[txn]} and {(order_id, result)}")
    for txn, (order_id, result) in answers.items():
        row = by_txn.get(txn)
        order = by_order.get(order_id)
        if row is None or row.order_id != order_id:
            bad.append(f"{txn} ({result}) not recorded for order {order_id}")
        elif result == "paid":
            settled = order is not None and (
                order.state == "paid"
                or (order.state == "cancelled" and order.cancel_reason == "group_failed")
            )
            if row.outcome != "applied" or not settled:
                state = order.state if order else "missing"
                bad.append(f"{txn} answered paid: payment {row.outcome}, order {state}")
        elif row.outcome != "refund_requested":
            bad.append(f"{txn} answered refund_requested, recorded {row.outcome}")
    paid = sum(1 for _o, r in answers.values() if r == "paid")
    return CheckResult(
        "acknowledged payments applied",
        not bad,
        f"{len(answers)} payments answered ({paid} paid, {len(answers) - paid} refund "
        f"requested); {len(bad)} problems" + _eg(bad),
    )


def run_payment_checks(
    *, answers: AnswerLog, orders: Sequence[OrderRow], payments: Sequence[PaymentRow]
) -> list[CheckResult]:
    return [
        check_no_order_paid_and_cancelled(orders, payments),
        check_acknowledged_payments(answers.payments, payments, orders),
    ]


class VerifyError(Exception):
    """The checks could not run."""


GROUP_ORDERS = """
SELECT id::text, reservation_id, user_id, state, cancel_reason, paid_at IS NOT NULL AS paid,
       group_id, group_state
FROM orders.orders WHERE activity_id = $1 AND source = 'groupbuy'
"""
PG_GROUPS = """
SELECT g.id, g.state, coalesce(g.completion, '') AS how, g.size,
       coalesce(array_agg(m.user_id ORDER BY m.position)
                FILTER (WHERE m.user_id IS NOT NULL), '{}') AS members
FROM groupbuy.groups g LEFT JOIN groupbuy.members m ON m.group_id = g.id
WHERE g.campaign_id = $1 GROUP BY g.id
"""
RUN_ORDERS = """
SELECT id::text, reservation_id, user_id, state, cancel_reason, paid_at IS NOT NULL AS paid,
       group_id, group_state
FROM orders.orders
WHERE (activity_id = $1 AND source = 'seckill') OR (activity_id = $2 AND source = 'groupbuy')
   OR id = ANY($3::uuid[])
"""
RUN_PAYMENTS = """
SELECT transaction_id, order_id::text, outcome, refund_reason FROM orders.payments
WHERE order_id = ANY($1::uuid[]) OR transaction_id = ANY($2::text[])
"""
GROUPS_POLL_SECONDS = 0.5


def _order(row: Mapping[str, Any]) -> OrderRow:
    return OrderRow(
        row["id"],
        row["reservation_id"],
        row["user_id"],
        row["state"],
        row["cancel_reason"],
        row["paid"],
        row["group_id"],
        row["group_state"],
    )


async def snapshot_groupbuy(
    pg: asyncpg.Connection, r: aioredis.Redis, campaign_id: int
) -> GroupbuySnapshot:
    """Redis first (the gate), then PostgreSQL (the record, which follows it)."""
    keys = campaign_keys(campaign_id)
    ids = []
    async for key in r.scan_iter(match=f"{keys.tag}:g:*", count=1000):
        name = _s(key)
        if not name.endswith(":members"):
            ids.append(name[len(f"{keys.tag}:g:") :])
    pipe = r.pipeline(transaction=False)
    pipe.get(keys.stock)
    pipe.time()
    for gid in ids:
        pipe.hgetall(keys.group(gid))
        pipe.zrange(keys.members(gid), 0, -1)
    replies = await pipe.execute()
    raw_stock, (secs, micros) = replies[0], replies[1]
    redis_groups = {
        gid: parse_group(gid, replies[2 + 2 * i], replies[3 + 2 * i]) for i, gid in enumerate(ids)
    }
    pg_groups = {
        row["id"]: GroupState(
            row["id"], row["state"], row["how"], row["size"], tuple(row["members"])
        )
        for row in await pg.fetch(PG_GROUPS, campaign_id)
    }
    orders = [_order(row) for row in await pg.fetch(GROUP_ORDERS, campaign_id)]
    return GroupbuySnapshot(
        remaining=int(raw_stock) if raw_stock is not None else None,
        redis_groups=redis_groups,
        pg_groups=pg_groups,
        orders=orders,
        now_ms=int(secs) * 1000 + int(micros) // 1000,
    )


async def wait_for_groups(
    pg: asyncpg.Connection, r: aioredis.Redis, campaign_id: int, timeout_s: float
) -> GroupbuySnapshot:
    """Snapshots until the pipeline settled (groups_settled) or the timeout; the checks
    then judge the last one, so a pipeline that never caught up fails them."""
    deadline = time.monotonic() + timeout_s
    while True:
        snapshot = await snapshot_groupbuy(pg, r, campaign_id)
        if groups_settled(snapshot) or time.monotonic() >= deadline:
            return snapshot
        await asyncio.sleep(GROUPS_POLL_SECONDS)


async def _sale_checks(
    run: Mapping[str, Any],
    answers: AnswerLog,
    processes: int,
    pg: asyncpg.Connection,
    r: aioredis.Redis,
    settings: Settings,
    orders_timeout: float,
) -> list[CheckResult]:
    activity_id = int(run["activity_id"])
    admin = mint_token(settings.jwt_keys(), "loadtest-verify", roles=["admin"])
    raw = await r.hgetall(activity_keys(activity_id).reservations)
    recorded = parse_reservations(raw)
    await wait_for_orders(pg, activity_id, len(recorded), orders_timeout)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        snapshot = await snapshot_stores(pg, r, session, run["admin_url"], admin, activity_id)
    return run_load_checks(
        stock=int(run["stock"]),
        per_user_limit=int(run["per_user_limit"]),
        answers=answers,
        processes=processes,
        recorded=recorded,
        snapshot=snapshot,
    )


async def _payment_checks(
    run: Mapping[str, Any], answers: AnswerLog, pg: asyncpg.Connection
) -> list[CheckResult]:
    answered_orders = sorted({o for o, _t, _r in answers.payments})
    txns = sorted({t for _o, t, _r in answers.payments})
    campaign_id = int(run.get("campaign", {}).get("campaign_id", 0))
    orders = [
        _order(row)
        for row in await pg.fetch(
            RUN_ORDERS, int(run.get("activity_id", 0)), campaign_id, answered_orders
        )
    ]
    payments = [
        PaymentRow(row["transaction_id"], row["order_id"], row["outcome"], row["refund_reason"])
        for row in await pg.fetch(RUN_PAYMENTS, [o.id for o in orders], txns)
    ]
    return run_payment_checks(answers=answers, orders=orders, payments=payments)


async def verify(run_dir: Path, settings: Settings, orders_timeout: float) -> list[CheckResult]:
    try:
        run = json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise VerifyError(f"no readable {RUN_FILE} in {run_dir}: {exc}") from exc
    answers, processes = load_answers(run_dir)
    classes = set(run.get("user_classes") or ())
    pg = await asyncpg.connect(settings.database_url, timeout=10)
    r = aioredis.from_url(settings.redis_url)
    checks: list[CheckResult] = []
    try:
        if "activity_id" in run:
            checks += await _sale_checks(run, answers, processes, pg, r, settings, orders_timeout)
        else:
            checks.append(check_answers(answers, processes))
        campaign = run.get("campaign")
        if campaign:
            snapshot = await wait_for_groups(pg, r, int(campaign["campaign_id"]), orders_timeout)
            checks += run_groupbuy_checks(
                stock=int(campaign["stock"]), answers=answers, snapshot=snapshot
            )
        if classes & PAYING_CLASSES or answers.payments:
            checks += await _payment_checks(run, answers, pg)
        if run.get("template"):
            token = mint_token(settings.jwt_keys(), "loadtest-verify")
            checks += await coupon_checks(run, answers, pg, r, token, orders_timeout)
    finally:
        await pg.close()
        await r.aclose()
    return checks


def report(checks: Sequence[CheckResult]) -> tuple[str, bool]:
    failed = [c.name for c in checks if not c.passed]
    verdict = f"FAILED: {', '.join(failed)}" if failed else "ALL PASS"
    return f"Invariants\n\n{format_checks(checks)}\n\n{verdict}\n", not failed


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.verify", description=(__doc__ or "").split("\n")[0]
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument("--orders-timeout", type=float, default=120.0)
    args = p.parse_args(argv)
    settings = Settings.from_env()
    try:
        checks = asyncio.run(verify(args.run_dir, settings, args.orders_timeout))
    except (VerifyError, OSError, aiohttp.ClientError, asyncpg.PostgresError) as exc:
        print(f"invariant checks could not run: {exc}", file=sys.stderr)
        return 2
    except aioredis.RedisError as exc:
        print(f"invariant checks could not run: Redis: {exc}", file=sys.stderr)
        return 2
    text, ok = report(checks)
    (args.run_dir / CHECKS_FILE).write_text(text)
    print(text, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
