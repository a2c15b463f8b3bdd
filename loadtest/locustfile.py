"""Locust scenarios of a flash sale, through the gateway.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8080 \\
        --admin-url http://127.0.0.1:8081 SpikeShopper          # pick by class
    locust -f loadtest/locustfile.py --tags browse ...           # or by tag

Scenarios (docs/loadtest.md has the details; `make loadtest` runs them headless and
checks the invariants afterwards):

| class           | tags              | what                                                     |
|-----------------|-------------------|----------------------------------------------------------|
| SpikeShopper    | spike, mixed      | open the page early, press until served or refused        |
| RepeatPresser   | repeat, mixed     | one shopper pressing again and again (limit, rate limit)  |
| Browser         | browse, mixed     | list activities, open one, look at one's orders           |
| GroupBuyInviter | groupbuy, waiting | open a group, share it, friends join: WAITING for groupbuy|
| Payer           | payment, waiting  | reserve, then pay a share of orders: WAITING for payments |

The load shape (FlashSaleShape) follows --shape: `spike` models the warm-up (early birds,
5% of -u), the spike (all -u users arriving at -r per second at the sale start) and the
tail; `steady` holds -u users. -t ends both.

The sale is created at test start through --admin-url (the seckill service itself: admin
routes are not on the public gateway) unless --activity-id names one. Shoppers mint their
own JWTs (PyJWT, --jwt-secret) for ids unique to the run. With --answers-dir every Locust
process writes what its shoppers were answered, for the invariant checks
(`python -m loadtest.verify`).

Locust runs on gevent: this file imports nothing of the services' asyncio code (only the
pure loadtest.scenarios and the settings defaults).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import gevent
import jwt
import requests
from locust import LoadTestShape, between, events, tag, task
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `locust -f` from anywhere

from loadtest.scenarios import (
    RUN_FILE,
    WAITING,
    Answer,
    AnswerLog,
    SpikePlan,
    pick_user_classes,
    steady_target,
)
from services.common.settings import DEV_JWT_SECRET

log = logging.getLogger("loadtest")

DEFAULT_HOST = "http://127.0.0.1:8080"
RESERVE = "/api/seckill/activities/{id}/reservations"
ACTIVITY = "/api/seckill/activities/{id}"
TOKEN_TTL_SECONDS = 6 * 3600
ORDER_POLL_SECONDS = 1.0
ORDER_POLL_ATTEMPTS = 30

ANSWERS = AnswerLog()
_user_numbers = itertools.count(1)


# --------------------------------------------------------------------------- options


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    g = parser  # Locust's parser (its groups do not take is_secret)
    g.add_argument(
        "--admin-url",
        env_var="LOADTEST_ADMIN_URL",
        default="http://127.0.0.1:8081",
        help="seckill service URL for admin setup (not on the public gateway)",
    )
    g.add_argument(
        "--order-host",
        env_var="LOADTEST_ORDER_HOST",
        default="",
        help="base URL of /api/orders (default: --host, i.e. the gateway)",
    )
    g.add_argument(
        "--jwt-secret",
        env_var="JWT_SECRET",
        default=DEV_JWT_SECRET,
        help="HS256 secret to mint the shoppers' tokens with",
        is_secret=True,
    )
    g.add_argument(
        "--activity-id",
        type=int,
        default=0,
        help="existing activity to load (0: create one at test start)",
    )
    g.add_argument("--stock", type=int, default=1000, help="stock of a created activity")
    g.add_argument("--per-user-limit", type=int, default=1, help="of a created activity")
    g.add_argument(
        "--shape",
        choices=("spike", "steady"),
        default="steady",
        help="load shape: warm-up/spike/tail, or steady -u users",
    )
    g.add_argument(
        "--warmup-seconds",
        type=float,
        default=10.0,
        help="spike shape: seconds of early birds before the sale starts",
    )
    g.add_argument(
        "--spike-seconds",
        type=float,
        default=15.0,
        help="spike shape: seconds at peak before the tail",
    )
    g.add_argument(
        "--start-in",
        type=float,
        default=-1.0,
        help="seconds from test start to the sale start (-1: the warm-up for "
        "the spike shape, at once for steady)",
    )
    g.add_argument(
        "--answers-dir",
        default="",
        help="write run.json and each process's answers here (for the checks)",
    )
    g.add_argument("--run-id", default="", help="tag of this run's user ids (default: time)")
    g.add_argument(
        "--pay-share",
        type=float,
        default=0.6,
        help="payment scenario: share of orders that get paid",
    )
    g.add_argument(
        "--campaign-id", type=int, default=0, help="groupbuy scenario: an existing campaign"
    )
    g.add_argument("--group-size", type=int, default=3, help="groupbuy scenario: N")
    g.add_argument(
        "--payment-secret",
        env_var="PAYMENT_SECRET",
        default="",
        is_secret=True,
        help="payment scenario: HMAC key of the payment callback",
    )


def _opts(environment: Any) -> Any:
    return environment.parsed_options


# ------------------------------------------------------------------ picking classes


def _tags_of(user_class: Any) -> set[str]:
    tags: set[str] = set()
    for t in getattr(user_class, "tasks", []):
        tags |= set(getattr(t, "locust_tag_set", set()))
    return tags


@events.init.add_listener
def _pick_classes(environment: Any, **_: Any) -> None:
    """Whole classes by --tags (Locust would spawn a class left without tasks and fail),
    and no WAITING scenario unless asked for."""
    opts = _opts(environment)
    if opts is None:
        return
    available = {c.__name__: _tags_of(c) for c in environment.user_classes}
    names = [n for n in (opts.user_classes or []) if n in available]
    picked = set(pick_user_classes(available, names, opts.tags, opts.exclude_tags))
    if not picked:
        raise ValueError("no scenario left after --tags/--exclude-tags")
    environment.user_classes[:] = [c for c in environment.user_classes if c.__name__ in picked]


# --------------------------------------------------------------------- test setup


def _admin_headers(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(secret, 'loadtest-admin', ['admin'])}"}


def mint(secret: str, user_id: str, roles: list[str] | None = None) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + TOKEN_TTL_SECONDS}
    if roles:
        claims["roles"] = roles
    return jwt.encode(claims, secret, algorithm="HS256")


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@events.test_start.add_listener
def _setup_sale(environment: Any, **_: Any) -> None:
    """On the master (or the only process): create the sale unless one is given, and
    record the run for the checks. Workers get the id with Locust's parsed options."""
    if isinstance(environment.runner, WorkerRunner):
        return
    opts = _opts(environment)
    if not opts.run_id:
        opts.run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S") + f"-{random.randrange(1000)}"
    admin = opts.admin_url.rstrip("/")
    headers = _admin_headers(opts.jwt_secret)
    if not opts.activity_id:
        start_in = opts.start_in
        if start_in < 0:
            start_in = opts.warmup_seconds if opts.shape == "spike" else 0.0
        starts = datetime.now(UTC) + timedelta(seconds=start_in)
        run_s = float(opts.run_time or 3600)
        body = {
            "sku": f"lt-{opts.run_id}",
            "title": f"Load test {opts.run_id}",
            "price_cents": 990,
            "stock": opts.stock,
            "starts_at": _rfc3339(starts - timedelta(seconds=1) if start_in == 0 else starts),
            "ends_at": _rfc3339(starts + timedelta(seconds=run_s + 600)),
            "per_user_limit": opts.per_user_limit,
            "payment_timeout_seconds": 900,
        }
        resp = requests.post(
            f"{admin}/api/seckill/admin/activities", json=body, headers=headers, timeout=10
        )
        if resp.status_code != 201:
            raise RuntimeError(f"creating the sale at {admin}: {resp.status_code} {resp.text}")
        opts.activity_id = int(resp.json()["id"])
        log.info(
            "created activity %s (stock %s) starting %s",
            opts.activity_id,
            opts.stock,
            body["starts_at"],
        )
    activity = requests.get(
        f"{admin}{ACTIVITY.format(id=opts.activity_id)}", headers=headers, timeout=10
    )
    activity.raise_for_status()
    if opts.answers_dir:
        out = Path(opts.answers_dir)
        out.mkdir(parents=True, exist_ok=True)
        info = activity.json()
        record = {
            "run_id": opts.run_id,
            "activity_id": opts.activity_id,
            "stock": info["stock"],
            "per_user_limit": info["per_user_limit"],
            "admin_url": admin,
            "host": environment.host,
            "order_host": opts.order_host or environment.host,
            "started_at": _rfc3339(datetime.now(UTC)),
        }
        (out / RUN_FILE).write_text(json.dumps(record, indent=2))


@events.test_stop.add_listener
@events.quitting.add_listener
def _write_answers(environment: Any, **_: Any) -> None:
    opts = _opts(environment)
    if isinstance(environment.runner, MasterRunner) or not opts or not opts.answers_dir:
        return
    out = Path(opts.answers_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"answers-{os.getpid()}.json").write_text(json.dumps(ANSWERS.to_json()))


# --------------------------------------------------------------------------- shape


class FlashSaleShape(LoadTestShape):
    """--shape spike: warm-up, spike, tail (loadtest.scenarios.SpikePlan); steady: -u."""

    use_common_options = True

    def tick(self) -> tuple[int, float] | None:
        opts = self.runner.environment.parsed_options
        users = int(opts.num_users or 1)
        rate = float(opts.spawn_rate or 1)
        run_time = float(opts.run_time) if opts.run_time else None
        if opts.shape == "spike":
            plan = SpikePlan(users, rate, run_time or 60.0, opts.warmup_seconds, opts.spike_seconds)
            return plan.target(self.get_run_time())
        return steady_target(self.get_run_time(), users, rate, run_time)


# --------------------------------------------------------------------------- users


class Shopper(FastHttpUser):
    """A signed-in shopper of this run; --host is the gateway."""

    abstract = True
    host = DEFAULT_HOST
    network_timeout = 10.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        opts = _opts(self.environment)
        self.opts = opts
        self.activity_id = int(opts.activity_id)
        if not self.activity_id:
            raise StopUser()  # the sale could not be set up; test_start logged why
        self.user_id = f"lt-{opts.run_id}-{os.getpid()}-{next(_user_numbers)}"
        self.auth = {"Authorization": f"Bearer {mint(opts.jwt_secret, self.user_id)}"}
        self.order_host = (opts.order_host or self.host).rstrip("/")
        self.held = 0

    def view_activity(self) -> None:
        self.client.get(ACTIVITY.format(id=self.activity_id), headers=self.auth, name=ACTIVITY)

    def my_orders(self) -> list[dict[str, Any]]:
        with self.client.get(
            f"{self.order_host}/api/orders?limit=20",
            headers=self.auth,
            name="/api/orders",
            catch_response=True,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
                return []
            return list((resp.json() or {}).get("orders", []))

    def press(self) -> tuple[str, float]:
        """One press of the buy button; returns (Answer, seconds to wait if told to)."""
        with self.client.post(
            RESERVE.format(id=self.activity_id),
            data=b'{"quantity": 1}',
            headers={**self.auth, "Content-Type": "application/json"},
            name=RESERVE,
            catch_response=True,
        ) as resp:
            try:
                body = resp.json() if resp.content else {}
            except ValueError:
                body = {}
            body = body if isinstance(body, dict) else {}
            kind = ANSWERS.record(
                self.user_id,
                resp.status_code or None,
                body.get("error"),
                body.get("reservation_id"),
                int(body.get("quantity") or 1),
            )
            if kind in Answer.EXPECTED:
                resp.success()
            else:
                resp.failure(f"HTTP {resp.status_code} {body.get('error', '-')}")
            if kind == Answer.RESERVED:
                self.held += 1
            retry_after = 0.0
            if kind == Answer.RATE_LIMITED:
                try:
                    retry_after = float(resp.headers.get("Retry-After") or 1)
                except ValueError:
                    retry_after = 1.0
            return kind, retry_after


class SpikeShopper(Shopper):
    """Arrives (maybe before the start), opens the sale page, presses until served or
    refused for good, then looks for the order and browses idly."""

    weight = 3

    def wait_time(self) -> float:
        return random.uniform(2.0, 5.0) if self.done else random.uniform(0.1, 0.4)

    def on_start(self) -> None:
        super().on_start()
        self.done = False
        self.order_seen = False
        self.view_activity()

    @tag("spike", "mixed")
    @task
    def buy(self) -> None:
        if self.done:
            if self.held and not self.order_seen:
                self.order_seen = bool(self.my_orders())
            else:
                self.view_activity()
            return
        kind, retry_after = self.press()
        if kind == Answer.RATE_LIMITED:
            gevent.sleep(retry_after)
        elif kind in (Answer.SOLD_OUT, Answer.LIMIT_REACHED, Answer.ENDED):
            self.done = True
        elif kind == Answer.RESERVED and self.held >= int(self.opts.per_user_limit):
            self.done = True


class RepeatPresser(Shopper):
    """Presses again and again (double taps, an auto-clicker): the per-user limit and the
    rate limit must hold. More 201s than the limit for one user is a failure here and an
    invariant failure in the checks."""

    weight = 1
    wait_time = between(0.02, 0.15)

    @tag("repeat", "mixed")
    @task
    def hammer(self) -> None:
        kind, _ = self.press()
        if kind == Answer.RESERVED and self.held > int(self.opts.per_user_limit):
            events.request.fire(
                request_type="CHECK",
                name="per-user limit",
                response_time=0,
                response_length=0,
                exception=AssertionError(f"{self.user_id} got {self.held} reservations"),
            )


class Browser(Shopper):
    """Browses: the activity list, the sale page, their own orders."""

    weight = 6
    wait_time = between(1.0, 3.0)

    @tag("browse", "mixed")
    @task(3)
    def list_activities(self) -> None:
        self.client.get(
            "/api/seckill/activities", headers=self.auth, name="/api/seckill/activities"
        )

    @tag("browse", "mixed")
    @task(5)
    def open_sale(self) -> None:
        self.view_activity()

    @tag("browse", "mixed")
    @task(1)
    def orders(self) -> None:
        self.my_orders()


# --------------------------------------------------- WAITING for later services
# Written against the API contract of ../shared/DESIGN.md; tagged `waiting`, excluded from
# default runs, never faked. Field names the contract leaves open are marked ASSUMED.


class GroupBuyInviter(Shopper):
    """WAITING for the groupbuy service. A leader opens a group of --campaign-id, shares
    it, and N-1 friends (fresh tokens) join by the link; then the share card is read."""

    weight = 1
    wait_time = between(1.0, 3.0)

    def on_start(self) -> None:
        opts = _opts(self.environment)
        if not opts.campaign_id:
            log.error("GroupBuyInviter needs --campaign-id (and the groupbuy service)")
            raise StopUser()
        self.opts = opts
        self.user_id = f"lt-{opts.run_id}-{os.getpid()}-{next(_user_numbers)}"
        self.auth = {"Authorization": f"Bearer {mint(opts.jwt_secret, self.user_id)}"}

    @tag("groupbuy", WAITING)
    @task
    def open_share_join(self) -> None:
        with self.client.post(
            f"/api/groupbuy/campaigns/{self.opts.campaign_id}/groups",
            json={},
            headers=self.auth,
            catch_response=True,
            name="/api/groupbuy/campaigns/{id}/groups",
        ) as resp:
            if resp.status_code != 201:
                resp.failure(f"open group: HTTP {resp.status_code}")
                return
            body = resp.json() or {}
            group_id = body.get("id") or body.get("group_id")  # ASSUMED field name
        for n in range(int(self.opts.group_size) - 1):
            friend = f"{self.user_id}-friend{n}"
            headers = {"Authorization": f"Bearer {mint(self.opts.jwt_secret, friend)}"}
            gevent.sleep(random.uniform(0.2, 2.0))  # friends open the shared link later
            with self.client.post(
                f"/api/groupbuy/groups/{group_id}/join",
                json={},
                headers=headers,
                catch_response=True,
                name="/api/groupbuy/groups/{id}/join",
            ) as join:
                if join.status_code in (200, 201, 409, 410):
                    join.success()  # 409 already joined / 410 full or expired: contract
        self.client.get(
            f"/api/groupbuy/groups/{group_id}", headers=self.auth, name="/api/groupbuy/groups/{id}"
        )


class Payer(Shopper):
    """WAITING for the payment callback. Reserves, waits for the order, and pays a share
    (--pay-share) of them through a signed provider callback (HMAC-SHA256 over the body,
    --payment-secret); the others let their order time out."""

    weight = 1
    wait_time = between(0.5, 2.0)

    @tag("payment", WAITING)
    @task
    def reserve_and_pay(self) -> None:
        kind, _ = self.press()
        if kind != Answer.RESERVED:
            raise StopUser()
        order = None
        for _attempt in range(ORDER_POLL_ATTEMPTS):
            order = next(iter(self.my_orders()), None)
            if order:
                break
            gevent.sleep(ORDER_POLL_SECONDS)
        if order is None or random.random() >= float(self.opts.pay_share):
            raise StopUser()
        body = json.dumps(
            {  # ASSUMED callback body: the payment issue will fix the fields
                "order_id": order["id"],
                "amount_cents": order["amount_cents"],
                "provider_txn_id": f"lt-{order['id']}",
                "paid_at": _rfc3339(datetime.now(UTC)),
            }
        ).encode()
        sig = hmac.new(self.opts.payment_secret.encode(), body, hashlib.sha256).hexdigest()
        self.client.post(
            f"{self.order_host}/api/payments/callback",
            data=body,
            headers={"Content-Type": "application/json", "X-Signature": sig},
            name="/api/payments/callback",
        )
        raise StopUser()
