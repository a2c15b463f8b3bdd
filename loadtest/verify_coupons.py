"""Invariant checks of a coupon rush after a Locust run (docs/coupons.md; invariant 7 of
docs/architecture.md: no coupon issued beyond its quantity): what the shoppers were
answered, against Redis (the gate: `cp:{t<id>}:meta` total, `stock`, `users`) and
PostgreSQL (the record: `coupon.coupons`, written by the service's record consumer
shortly after each claim). loadtest.verify runs them when run.json names a template.

The checks are pure (run_coupon_checks) over a TemplateSnapshot; wait_for_coupons takes
snapshots until the record consumer caught up with the gate, bounded, and the checks then
judge the last one, so a record that never caught up fails them.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp
import asyncpg
import redis.asyncio as aioredis

from loadtest.demo import CheckResult
from loadtest.scenarios import Answer, AnswerLog, ClaimAnswer
from services.coupon.keys import template_keys

COUPON_ROWS = """
SELECT id, user_id, template_id, origin FROM coupon.coupons
WHERE template_id = $1 OR id = ANY($2::text[])
"""
POLL_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class CouponRow:
    coupon_id: str
    user_id: str
    template_id: int
    origin: str  # claim | grant


@dataclass(frozen=True, slots=True)
class TemplateSnapshot:
    """The template after the run. `rows`: coupon.coupons of the template, and any row
    whose id a claim was answered with (so a coupon recorded under another template is
    seen). Redis: `total` (the quantity it applied), `remaining` (stock), claims per user.
    `api_remaining`: what the public template page says is left."""

    rows: list[CouponRow]
    total: int | None
    remaining: int | None
    redis_claims_by_user: dict[str, int] = field(default_factory=dict)
    api_remaining: int | None = None

    @property
    def issued(self) -> int | None:
        """Coupons the gate handed out (claims and grants)."""
        if self.total is None or self.remaining is None:
            return None
        return self.total - self.remaining


def _eg(items: Sequence[str]) -> str:
    return f" (e.g. {items[0]})" if items else ""


def _rows_of(template_id: int, snapshot: TemplateSnapshot) -> list[CouponRow]:
    return [r for r in snapshot.rows if r.template_id == template_id]


def _unanswered(answers: AnswerLog) -> int:
    """Presses whose outcome the shopper never learned (a transport error, a 5xx): each
    may still have taken a coupon."""
    return answers.answers.get(Answer.UNEXPECTED, 0) + answers.answers.get(
        ClaimAnswer.SERVER_ERROR, 0
    )


def claim_demand(answers: AnswerLog, per_user_limit: int) -> int:
    """Coupons the shoppers could legitimately get were the quantity unlimited: one per
    definitive answer (201, exhausted, limit reached), at most the limit per shopper."""
    return sum(min(n, per_user_limit) for n in answers.claim_presses.values())


def check_within_quantity(
    template_id: int, quantity: int, demand: int, snapshot: TemplateSnapshot
) -> CheckResult:
    """Never more coupons than the quantity, in the record or at the gate; and with
    enough demand, all of them issued (a shopper told "exhausted" while coupons were
    left fails too)."""
    recorded = len(_rows_of(template_id, snapshot))
    issued = snapshot.issued
    expected = min(quantity, demand)
    ok = recorded <= quantity and issued is not None and issued <= quantity
    ok = ok and recorded == expected
    if recorded > quantity or (issued or 0) > quantity:
        why = f"OVER QUANTITY by {max(recorded, issued or 0) - quantity}"
    elif issued is None:
        why = "the template is not in Redis"
    elif recorded < expected:
        why = f"{expected - recorded} left although demand was {demand}"
    else:
        why = "claimed out exactly" if expected == quantity else "every shopper served"
    return CheckResult(
        "coupons: within quantity",
        ok,
        f"{recorded} recorded, {issued} issued by Redis, of {quantity}; expected {expected} "
        f"({why})",
    )


def check_quantity_conserved(quantity: int, snapshot: TemplateSnapshot) -> CheckResult:
    """Redis applied the template's quantity, what is left is never negative, and the
    public page shows what Redis has left."""
    remaining, total = snapshot.remaining, snapshot.total
    ok = (
        total == quantity
        and remaining is not None
        and remaining >= 0
        and snapshot.api_remaining == remaining
    )
    return CheckResult(
        "coupons: quantity conserved",
        ok,
        f"quantity {quantity}: Redis total {total}, remaining {remaining}; "
        f"the template page says {snapshot.api_remaining} left",
    )


def check_per_user_limit(
    template_id: int, limit: int, answers: AnswerLog, snapshot: TemplateSnapshot
) -> CheckResult:
    """No shopper holds more than the limit: by the 201 answers, the recorded coupons,
    or Redis's claims per user."""
    sources = {
        "answers": Counter(user for user, _cid in answers.claims),
        "records": Counter(r.user_id for r in _rows_of(template_id, snapshot)),
        "redis": Counter(snapshot.redis_claims_by_user),
    }
    over = {name: sorted(u for u, n in c.items() if n > limit) for name, c in sources.items()}
    parts = [f"{name} {len(users)} over" for name, users in over.items()]
    worst = next((users for users in over.values() if users), [])
    return CheckResult(
        "coupons: per-user limit",
        not any(over.values()),
        f"limit {limit}: " + ", ".join(parts) + _eg(worst),
    )


def check_claims_recorded(
    template_id: int, answers: AnswerLog, snapshot: TemplateSnapshot
) -> CheckResult:
    """Every coupon answered with 201 is exactly one row: of this template, of the shopper
    who was answered, claimed (nothing acknowledged was lost or given to someone else).
    And no row nobody was told about, beyond the presses whose answer was lost."""
    by_id: dict[str, list[CouponRow]] = {}
    for r in snapshot.rows:
        by_id.setdefault(r.coupon_id, []).append(r)
    missing, wrong = [], []
    for user, cid in answers.claims:
        rows = by_id.get(cid, [])
        if not rows:
            missing.append(cid)
        elif any(
            (r.user_id, r.template_id, r.origin) != (user, template_id, "claim") for r in rows
        ):
            wrong.append(
                f"{cid} answered to {user}, recorded {rows[0].user_id}/{rows[0].template_id}"
            )
    answered = {cid for _user, cid in answers.claims}
    untold = sorted(
        r.coupon_id for r in _rows_of(template_id, snapshot) if r.coupon_id not in answered
    )
    ok = not missing and not wrong and len(untold) <= _unanswered(answers)
    return CheckResult(
        "coupons: 201 answers recorded",
        ok,
        f"{len(answers.claims)} answered 201; {len(missing)} without a row, {len(wrong)} "
        f"recorded differently; {len(untold)} rows nobody was answered "
        f"({_unanswered(answers)} presses got no answer)" + _eg(missing or wrong or untold),
    )


def check_no_duplicates(answers: AnswerLog, snapshot: TemplateSnapshot) -> CheckResult:
    """No coupon given twice: no two presses were answered the same coupon, no coupon id
    has two rows, and every retry with a press's Idempotency-Key got that press's coupon
    back (not a second one, not a refusal)."""
    told = Counter(cid for _user, cid in answers.claims)
    twice = sorted(cid for cid, n in told.items() if n > 1)
    rows = Counter(r.coupon_id for r in snapshot.rows)
    two_rows = sorted(cid for cid, n in rows.items() if n > 1)
    replays = [
        f"{first} retried -> {again or 'no coupon'}"
        for _u, first, again in answers.replays
        if again != first
    ]
    return CheckResult(
        "coupons: no duplicates",
        not (twice or two_rows or replays),
        f"{len(twice)} coupons answered to two presses, {len(two_rows)} recorded twice; "
        f"{len(answers.replays)} Idempotency-Key retries, {len(replays)} answered differently"
        + _eg(twice or two_rows or replays),
    )


def check_gate_recorded(template_id: int, snapshot: TemplateSnapshot) -> CheckResult:
    """The record caught up with the gate: one row per coupon Redis issued."""
    recorded = len(_rows_of(template_id, snapshot))
    issued = snapshot.issued
    return CheckResult(
        "coupons: every issued coupon recorded",
        issued is not None and recorded == issued,
        f"Redis issued {issued}, PostgreSQL records {recorded}",
    )


def check_no_server_errors(answers: AnswerLog) -> CheckResult:
    errors = answers.answers.get(ClaimAnswer.SERVER_ERROR, 0)
    definitive = sum(answers.claim_presses.values())
    return CheckResult(
        "claims: no 5xx",
        errors == 0 and definitive > 0,
        f"{errors} claims answered 5xx; {definitive} definitive answers",
    )


def run_coupon_checks(
    *,
    template_id: int,
    quantity: int,
    per_user_limit: int,
    answers: AnswerLog,
    snapshot: TemplateSnapshot,
) -> list[CheckResult]:
    """Pure: the coupon rush's invariants over what the shoppers were answered and what
    the stores hold."""
    return [
        check_within_quantity(
            template_id, quantity, claim_demand(answers, per_user_limit), snapshot
        ),
        check_quantity_conserved(quantity, snapshot),
        check_per_user_limit(template_id, per_user_limit, answers, snapshot),
        check_claims_recorded(template_id, answers, snapshot),
        check_no_duplicates(answers, snapshot),
        check_gate_recorded(template_id, snapshot),
        check_no_server_errors(answers),
    ]


def recorded_enough(template_id: int, answered: Sequence[str], snapshot: TemplateSnapshot) -> bool:
    """Whether the record consumer caught up: a row for every coupon the gate issued and
    for every coupon a claim was answered with."""
    ids = {r.coupon_id for r in snapshot.rows}
    issued = snapshot.issued
    return (
        issued is not None
        and len(_rows_of(template_id, snapshot)) >= issued
        and all(cid in ids for cid in answered)
    )


# ----------------------------------------------------------------------------- I/O


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _int(v: bytes | str | None) -> int | None:
    return None if v is None else int(_s(v))


async def snapshot_template(
    pg: asyncpg.Connection,
    r: aioredis.Redis,
    template_id: int,
    answered: Sequence[str],
    page: Mapping[str, object] | None = None,
) -> TemplateSnapshot:
    """Redis first (the gate), then PostgreSQL (the record, which follows it)."""
    keys = template_keys(template_id)
    pipe = r.pipeline(transaction=False)
    pipe.hget(keys.meta, "total")
    pipe.get(keys.stock)
    pipe.hgetall(keys.users)
    total, stock, users = await pipe.execute()
    rows = [
        CouponRow(row["id"], row["user_id"], int(row["template_id"]), row["origin"])
        for row in await pg.fetch(COUPON_ROWS, template_id, list(answered))
    ]
    api = (page or {}).get("remaining")
    return TemplateSnapshot(
        rows=rows,
        total=_int(total),
        remaining=_int(stock),
        redis_claims_by_user={_s(k): int(_s(v)) for k, v in users.items()},
        api_remaining=int(api) if isinstance(api, int) else None,
    )


async def wait_for_coupons(
    pg: asyncpg.Connection,
    r: aioredis.Redis,
    template_id: int,
    answered: Sequence[str],
    timeout_s: float,
) -> TemplateSnapshot:
    """Snapshots until the record consumer caught up (recorded_enough) or the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        snapshot = await snapshot_template(pg, r, template_id, answered)
        if recorded_enough(template_id, answered, snapshot) or time.monotonic() >= deadline:
            return snapshot
        await asyncio.sleep(POLL_SECONDS)


async def template_page(
    session: aiohttp.ClientSession, base: str, token: str, template_id: int
) -> dict[str, object]:
    """The public template page (its `remaining`), from the coupon service itself."""
    async with session.get(
        f"{base}/api/coupons/templates/{template_id}",
        headers={"Authorization": f"Bearer {token}"},
    ) as resp:
        if resp.status != 200:
            raise aiohttp.ClientError(f"template {template_id} page: HTTP {resp.status}")
        body = await resp.json()
        return body if isinstance(body, dict) else {}


async def coupon_checks(
    run: Mapping[str, object],
    answers: AnswerLog,
    pg: asyncpg.Connection,
    r: aioredis.Redis,
    token: str,
    timeout_s: float,
) -> list[CheckResult]:
    template = run["template"]
    assert isinstance(template, Mapping)
    template_id = int(template["template_id"])
    answered = sorted({cid for _user, cid in answers.claims})
    await wait_for_coupons(pg, r, template_id, answered, timeout_s)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        page = await template_page(session, str(template["admin_url"]), token, template_id)
    snapshot = await snapshot_template(pg, r, template_id, answered, page)
    return run_coupon_checks(
        template_id=template_id,
        quantity=int(template["quantity"]),
        per_user_limit=int(template["per_user_limit"]),
        answers=answers,
        snapshot=snapshot,
    )
