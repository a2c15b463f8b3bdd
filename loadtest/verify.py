"""Invariant checks after a Locust run, against PostgreSQL and Redis (DESIGN.md, 1-3).

    python -m loadtest.verify RUN_DIR [--orders-timeout 120]

RUN_DIR holds what the locustfile wrote with --answers-dir: run.json (the sale) and one
answers-<pid>.json per Locust process (reservation ids answered with 201, definitive
presses per user). The checks are the demo's (loadtest.demo), fed from the stores:

- no oversell: units reserved in Redis <= stock, and = min(stock, demand), where demand
  counts the shoppers who got a definitive answer (201, sold out, limit reached): stock
  left while someone was told "sold out" fails too;
- per-user limit, from the answers, the orders and Redis's holdings;
- every reservation recorded in Redis is exactly one order, and every 201 answered is
  one of them (nothing acknowledged was lost);
- stock conservation (Redis, API) and no unexpected answers.

Exit status: 0 all pass, 1 a check failed, 2 the checks could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

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
from loadtest.scenarios import RUN_FILE, Answer, AnswerLog, load_answers
from services.common.auth import mint_token
from services.common.settings import Settings
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


class VerifyError(Exception):
    """The checks could not run."""


async def verify(run_dir: Path, settings: Settings, orders_timeout: float) -> list[CheckResult]:
    try:
        run = json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise VerifyError(f"no readable {RUN_FILE} in {run_dir}: {exc}") from exc
    answers, processes = load_answers(run_dir)
    activity_id = int(run["activity_id"])
    admin = mint_token(settings.jwt_secret, "loadtest-verify", roles=["admin"])
    pg = await asyncpg.connect(settings.database_url, timeout=10)
    r = aioredis.from_url(settings.redis_url)
    try:
        raw = await r.hgetall(activity_keys(activity_id).reservations)
        recorded = parse_reservations(raw)
        await wait_for_orders(pg, activity_id, len(recorded), orders_timeout)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            snapshot = await snapshot_stores(pg, r, session, run["admin_url"], admin, activity_id)
    finally:
        await pg.close()
        await r.aclose()
    return run_load_checks(
        stock=int(run["stock"]),
        per_user_limit=int(run["per_user_limit"]),
        answers=answers,
        processes=processes,
        recorded=recorded,
        snapshot=snapshot,
    )


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
