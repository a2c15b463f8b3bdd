"""Pure parts of the Locust scenarios: the scenario table, the spike's load shape, scenario
picking by tag, and the per-process record of what the shoppers were answered.

Nothing here imports Locust, gevent or the services' asyncio code: the locustfile (gevent)
and the post-run checker (asyncio) both use it, and unit tests run it without I/O.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    user_classes: tuple[str, ...]
    shape: str  # "spike" or "steady"
    about: str


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "spike",
            ("SpikeShopper",),
            "spike",
            "the flash-sale spike: early birds, thousands arriving within seconds of the "
            "start, then the tail",
        ),
        Scenario("repeat", ("RepeatPresser",), "steady", "one shopper pressing again and again"),
        Scenario("browse", ("Browser",), "steady", "browsing activities and one's orders"),
        Scenario(
            "groupbuy",
            ("GroupBuyInviter",),
            "steady",
            "open a group, share the link, friends race to join; some leaders pay",
        ),
        Scenario(
            "payment",
            ("Payer",),
            "steady",
            "reserve, then pay a share of the orders through the signed provider callback",
        ),
        Scenario(
            "coupon-rush",
            ("CouponRusher",),
            "spike",
            "a coupon rush (抢券): early birds, thousands pressing claim within seconds of "
            "the window opening, some double-tapping, for a few hundred coupons",
        ),
        Scenario(
            "mixed",
            (
                "Browser",
                "SpikeShopper",
                "RepeatPresser",
                "Payer",
                "GroupBuyInviter",
                "CouponRusher",
            ),
            "steady",
            "a mixed day: mostly browsing, some buying and paying, a few impatient "
            "double-tappers, group buys shared among friends, coupons claimed",
        ),
    )
}

# Which stores a user class needs set up at test start: the flash sale (seckill activity),
# the group-buy campaign or the coupon template. The post-run checks follow the same split.
CAMPAIGN_CLASSES = frozenset({"GroupBuyInviter"})
TEMPLATE_CLASSES = frozenset({"CouponRusher"})
PAYING_CLASSES = frozenset({"Payer", "GroupBuyInviter"})


def needs_sale(user_classes: Iterable[str]) -> bool:
    return any(c not in CAMPAIGN_CLASSES | TEMPLATE_CLASSES for c in user_classes)


def needs_campaign(user_classes: Iterable[str]) -> bool:
    return any(c in CAMPAIGN_CLASSES for c in user_classes)


def needs_template(user_classes: Iterable[str]) -> bool:
    return any(c in TEMPLATE_CLASSES for c in user_classes)


# ------------------------------------------------------------------------ load shape


@dataclass(frozen=True, slots=True)
class SpikePlan:
    """Warm-up (early birds on the page), the spike at the sale start, then the tail.

    `peak` users and `spawn_rate` come from Locust's -u and -r; the spike reaches the
    peak within peak / spawn_rate seconds of the start, as a real sale does.
    """

    peak: int
    spawn_rate: float
    run_time_s: float
    warmup_s: float = 10.0
    spike_s: float = 15.0
    early_share: float = 0.05
    tail_share: float = 0.1

    def target(self, elapsed_s: float) -> tuple[int, float] | None:
        """(users, spawn rate) at `elapsed_s` into the run; None once the run is over."""
        if elapsed_s >= self.run_time_s:
            return None
        early = max(1, math.ceil(self.peak * self.early_share))
        if elapsed_s < self.warmup_s:
            return early, max(1.0, early / max(self.warmup_s / 2, 1.0))
        if elapsed_s < self.warmup_s + self.spike_s:
            return self.peak, self.spawn_rate
        tail_start = self.warmup_s + self.spike_s
        span = max(self.run_time_s - tail_start, 1e-9)
        done = min(1.0, (elapsed_s - tail_start) / span)
        floor = max(1, math.ceil(self.peak * self.tail_share))
        users = round(self.peak - (self.peak - floor) * done)
        return max(floor, users), self.spawn_rate


def steady_target(
    elapsed_s: float, users: int, spawn_rate: float, run_time_s: float | None
) -> tuple[int, float] | None:
    if run_time_s is not None and elapsed_s >= run_time_s:
        return None
    return users, spawn_rate


# ------------------------------------------------------------------ picking classes


def pick_user_classes(
    available: Mapping[str, Iterable[str]],
    names: Sequence[str] = (),
    tags: Iterable[str] | None = None,
    exclude_tags: Iterable[str] | None = None,
) -> list[str]:
    """Which user classes run. `available` maps a class name to the tags of its tasks.

    Locust filters tasks by --tags but still spawns a class left without tasks (and it
    then fails); this picks whole classes instead. Classes named on the command line
    always run; otherwise a class runs when one of its tags is asked for (or no tag is)
    and none is excluded.
    """
    if names:
        unknown = [n for n in names if n not in available]
        if unknown:
            raise ValueError(f"unknown user classes: {', '.join(unknown)}")
        return list(dict.fromkeys(names))
    wanted = set(tags) if tags else None
    excluded = set(exclude_tags or ())
    picked = []
    for name, class_tags in available.items():
        own = set(class_tags)
        if own & excluded:
            continue
        if wanted is not None and not own & wanted:
            continue
        picked.append(name)
    return picked


# ------------------------------------------------------------------ answers record


class Answer:
    """How a reservation answer is classified (the codes are in README's API table)."""

    RESERVED = "reserved"
    SOLD_OUT = "sold_out"
    LIMIT_REACHED = "limit_reached"
    RATE_LIMITED = "rate_limited"
    NOT_STARTED = "not_started"
    ENDED = "sale_ended"
    UNEXPECTED = "unexpected"

    # Answers after which the shopper's demand is known: served, or refused for good.
    DEFINITIVE = frozenset({RESERVED, SOLD_OUT, LIMIT_REACHED})
    # Answers a healthy sale gives (any other is a failure in Locust's statistics).
    EXPECTED = frozenset({RESERVED, SOLD_OUT, LIMIT_REACHED, RATE_LIMITED, NOT_STARTED, ENDED})


def classify(status: int | None, error: str | None) -> str:
    if status == 201:
        return Answer.RESERVED
    pairs = {
        (410, "sold_out"): Answer.SOLD_OUT,
        (410, "sale_ended"): Answer.ENDED,
        (409, "limit_reached"): Answer.LIMIT_REACHED,
        (409, "not_started"): Answer.NOT_STARTED,
        (429, "rate_limited"): Answer.RATE_LIMITED,
    }
    return pairs.get((status or 0, error or ""), Answer.UNEXPECTED)


class GroupAnswer:
    """How an open or join answer of group buying is classified (docs/groupbuy.md,
    "Errors"). Kept apart from the reservation answers' names in the shared counter."""

    OPENED = "group_opened"
    JOINED = "group_joined"
    COMPLETED = "group_completed_by_join"  # the join that filled the last slot
    FULL = "group_full"
    ALREADY_MEMBER = "group_already_member"
    CLOSED = "group_closed"  # completed virtually, slots left but closed
    EXPIRED = "group_expired"
    SOLD_OUT = "campaign_sold_out"
    LIMIT_REACHED = "campaign_limit_reached"
    NOT_STARTED = "campaign_not_started"
    ENDED = "campaign_ended"

    # A friend racing others for the last slot gets group_full: an answer, not a failure.
    EXPECTED = frozenset(
        {
            OPENED,
            JOINED,
            COMPLETED,
            FULL,
            ALREADY_MEMBER,
            CLOSED,
            EXPIRED,
            SOLD_OUT,
            LIMIT_REACHED,
            NOT_STARTED,
            ENDED,
        }
    )


def classify_group(action: str, status: int | None, error: str | None, state: str | None) -> str:
    """`action` is "open" or "join"; `state` the answered group state of a 201."""
    if status == 201:
        if action == "open":
            return GroupAnswer.OPENED
        return GroupAnswer.COMPLETED if state == "completed" else GroupAnswer.JOINED
    pairs = {
        (409, "group_full"): GroupAnswer.FULL,
        (409, "already_member"): GroupAnswer.ALREADY_MEMBER,
        (409, "group_completed"): GroupAnswer.CLOSED,
        (410, "group_expired"): GroupAnswer.EXPIRED,
        (410, "sold_out"): GroupAnswer.SOLD_OUT,
        (409, "limit_reached"): GroupAnswer.LIMIT_REACHED,
        (409, "not_started"): GroupAnswer.NOT_STARTED,
        (410, "campaign_ended"): GroupAnswer.ENDED,
    }
    return pairs.get((status or 0, error or ""), Answer.UNEXPECTED)


class PaymentAnswer:
    """What the payment callback answered (200 with the outcome; services/order/routes.py)."""

    PAID = "payment_paid"
    REFUND_REQUESTED = "payment_refund_requested"

    EXPECTED = frozenset({PAID, REFUND_REQUESTED})


def classify_payment(status: int | None, result: str | None) -> str:
    if status == 200 and result == "paid":
        return PaymentAnswer.PAID
    if status == 200 and result == "refund_requested":
        return PaymentAnswer.REFUND_REQUESTED
    return Answer.UNEXPECTED


class ClaimAnswer:
    """What a coupon claim was answered (docs/coupons.md, "Errors"). Kept apart from the
    reservation answers' names in the shared counter."""

    CLAIMED = "coupon_claimed"
    EXHAUSTED = "coupon_exhausted"
    LIMIT_REACHED = "coupon_limit_reached"
    NOT_STARTED = "coupon_not_started"
    ENDED = "coupon_claim_ended"
    RATE_LIMITED = "coupon_rate_limited"
    # An Idempotency-Key retry of a claim answered 201 with the first press's coupon.
    REPLAYED = "coupon_replayed"
    # A 5xx: never an answer of a healthy rush (a transport error is Answer.UNEXPECTED).
    SERVER_ERROR = "coupon_server_error"

    # Answers after which the shopper's demand is known: served, or refused for good.
    DEFINITIVE = frozenset({CLAIMED, EXHAUSTED, LIMIT_REACHED})
    EXPECTED = frozenset(
        {CLAIMED, EXHAUSTED, LIMIT_REACHED, NOT_STARTED, ENDED, RATE_LIMITED, REPLAYED}
    )


def classify_claim(status: int | None, error: str | None) -> str:
    if status == 201:
        return ClaimAnswer.CLAIMED
    if status is not None and status >= 500:
        return ClaimAnswer.SERVER_ERROR
    pairs = {
        (410, "exhausted"): ClaimAnswer.EXHAUSTED,
        (410, "claim_ended"): ClaimAnswer.ENDED,
        (409, "limit_reached"): ClaimAnswer.LIMIT_REACHED,
        (409, "not_started"): ClaimAnswer.NOT_STARTED,
        (429, "rate_limited"): ClaimAnswer.RATE_LIMITED,
    }
    return pairs.get((status or 0, error or ""), Answer.UNEXPECTED)


@dataclass(slots=True)
class AnswerLog:
    """What one Locust process's shoppers were answered: enough to check the invariants
    afterwards (reservation ids, units per user, demand, groups and joins acknowledged,
    payments acknowledged, coupons claimed) without keeping every request."""

    reservations: list[tuple[str, str, int]] = field(default_factory=list)  # user, id, qty
    definitive_presses: Counter[str] = field(default_factory=Counter)  # user -> presses
    answers: Counter[str] = field(default_factory=Counter)  # Answer -> count
    groups: list[tuple[str, str]] = field(default_factory=list)  # group id, leader
    joins: list[tuple[str, str, bool]] = field(default_factory=list)  # group, user, completed
    payments: list[tuple[str, str, str]] = field(default_factory=list)  # order, txn, result
    claims: list[tuple[str, str]] = field(default_factory=list)  # user, coupon id
    claim_presses: Counter[str] = field(default_factory=Counter)  # user -> definitive claims
    # Idempotency-Key retries of a 201: user, the first coupon id, the retry's ("" if none)
    replays: list[tuple[str, str, str]] = field(default_factory=list)

    def record(
        self, user: str, status: int | None, error: str | None, rid: str | None, qty: int
    ) -> str:
        kind = classify(status, error)
        if kind == Answer.RESERVED and not rid:
            kind = Answer.UNEXPECTED
        self.answers[kind] += 1
        if kind in Answer.DEFINITIVE:
            self.definitive_presses[user] += 1
        if kind == Answer.RESERVED and rid:
            self.reservations.append((user, rid, qty))
        return kind

    def record_group(
        self,
        action: str,
        user: str,
        status: int | None,
        error: str | None,
        group_id: str | None,
        state: str | None = None,
    ) -> str:
        kind = classify_group(action, status, error, state)
        if kind in (GroupAnswer.OPENED, GroupAnswer.JOINED, GroupAnswer.COMPLETED):
            if not group_id:
                kind = Answer.UNEXPECTED
            elif kind == GroupAnswer.OPENED:
                self.groups.append((group_id, user))
            else:
                self.joins.append((group_id, user, kind == GroupAnswer.COMPLETED))
        self.answers[kind] += 1
        return kind

    def record_payment(
        self, order_id: str, transaction_id: str, status: int | None, result: str | None
    ) -> str:
        kind = classify_payment(status, result)
        self.answers[kind] += 1
        if kind != Answer.UNEXPECTED and result:
            self.payments.append((order_id, transaction_id, result))
        return kind

    def record_claim(
        self, user: str, status: int | None, error: str | None, coupon_id: str | None
    ) -> str:
        kind = classify_claim(status, error)
        if kind == ClaimAnswer.CLAIMED and not coupon_id:
            kind = Answer.UNEXPECTED
        self.answers[kind] += 1
        if kind in ClaimAnswer.DEFINITIVE:
            self.claim_presses[user] += 1
        if kind == ClaimAnswer.CLAIMED and coupon_id:
            self.claims.append((user, coupon_id))
        return kind

    def record_claim_replay(
        self, user: str, first: str, status: int | None, coupon_id: str | None
    ) -> str:
        """A retry, with the same Idempotency-Key, of the claim that answered `first`:
        not a new press, so it is not counted as a claim or as demand."""
        if status is not None and status >= 500:
            kind = ClaimAnswer.SERVER_ERROR
        elif status == 201 and coupon_id == first:
            kind = ClaimAnswer.REPLAYED
        else:
            kind = Answer.UNEXPECTED
        self.answers[kind] += 1
        self.replays.append((user, first, coupon_id if status == 201 and coupon_id else ""))
        return kind

    def to_json(self) -> dict[str, Any]:
        return {
            "reservations": [list(r) for r in self.reservations],
            "definitive_presses": dict(self.definitive_presses),
            "answers": dict(self.answers),
            "groups": [list(g) for g in self.groups],
            "joins": [list(j) for j in self.joins],
            "payments": [list(p) for p in self.payments],
            "claims": [list(c) for c in self.claims],
            "claim_presses": dict(self.claim_presses),
            "replays": [list(r) for r in self.replays],
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> AnswerLog:
        log = cls()
        log.reservations = [(str(u), str(r), int(q)) for u, r, q in raw.get("reservations", [])]
        log.definitive_presses.update(
            {str(k): int(v) for k, v in raw.get("definitive_presses", {}).items()}
        )
        log.answers.update({str(k): int(v) for k, v in raw.get("answers", {}).items()})
        log.groups = [(str(g), str(u)) for g, u in raw.get("groups", [])]
        log.joins = [(str(g), str(u), bool(c)) for g, u, c in raw.get("joins", [])]
        log.payments = [(str(o), str(t), str(r)) for o, t, r in raw.get("payments", [])]
        log.claims = [(str(u), str(c)) for u, c in raw.get("claims", [])]
        log.claim_presses.update({str(k): int(v) for k, v in raw.get("claim_presses", {}).items()})
        log.replays = [(str(u), str(f), str(a)) for u, f, a in raw.get("replays", [])]
        return log

    def merge(self, other: AnswerLog) -> None:
        self.reservations.extend(other.reservations)
        self.definitive_presses.update(other.definitive_presses)
        self.answers.update(other.answers)
        self.groups.extend(other.groups)
        self.joins.extend(other.joins)
        self.payments.extend(other.payments)
        self.claims.extend(other.claims)
        self.claim_presses.update(other.claim_presses)
        self.replays.extend(other.replays)


ANSWERS_GLOB = "answers-*.json"
RUN_FILE = "run.json"


def load_answers(directory: Path) -> tuple[AnswerLog, int]:
    """Merge every process's answers file in `directory`; returns the log and file count."""
    merged = AnswerLog()
    files = sorted(directory.glob(ANSWERS_GLOB))
    for path in files:
        merged.merge(AnswerLog.from_json(json.loads(path.read_text())))
    return merged, len(files)
