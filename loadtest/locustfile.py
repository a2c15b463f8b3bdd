"""Locust scenarios of a flash sale, through the gateway.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8080 \\
        --admin-url http://127.0.0.1:8081 SpikeShopper          # pick by class
    locust -f loadtest/locustfile.py --tags browse ...           # or by tag

Scenarios (docs/loadtest.md has the details; `make loadtest` runs them headless and
checks the invariants afterwards):

| class           | tags               | what                                                      |
|-----------------|--------------------|-----------------------------------------------------------|
| SpikeShopper    | spike, mixed       | open the page early, press until served or refused        |
| RepeatPresser   | repeat, mixed      | one shopper pressing again and again (limit, rate limit)  |
| Browser         | browse, mixed      | list activities, open one, look at one's orders           |
| Payer           | payment, mixed     | reserve, then pay a share of the orders (signed callback) |
| GroupBuyInviter | groupbuy, mixed    | open a group, share it, friends race to join, leaders pay |
| CouponRusher    | coupon-rush, mixed | press claim as the window opens until served or refused   |

The load shape (FlashSaleShape) follows --shape: `spike` models the warm-up (early birds,
5% of -u), the spike (all -u users arriving at -r per second at the sale start) and the
tail; `steady` holds -u users. -t ends both.

The sale is created at test start through --admin-url (the seckill service itself: admin
routes are not on the public gateway) unless --activity-id names one; the group-buy
campaign likewise through --groupbuy-admin-url unless --campaign-id names one, and the
coupon template through --coupon-admin-url unless --template-id names one. Each is
created only when a class that uses it runs. Each shopper logs in through the gateway
(POST /api/auth/login with a code unique to the run, as wx.login() would give it; the local
fake WeChat provider accepts any such code), or with --auth mint signs its own JWT
(PyJWT, --jwt-secret, --jwt-key-id) for an id unique to the run. With --answers-dir every Locust
process writes what its shoppers were answered, for the invariant checks
(`python -m loadtest.verify`).

Locust runs on gevent: this file imports nothing of the services' asyncio code (only the
pure loadtest.scenarios, the settings defaults and the payment provider's signature,
services.order.payments.sign, so the scenario signs exactly as the contract says).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import gevent
import gevent.pool
import jwt
import requests
from locust import LoadTestShape, between, events, tag, task
from locust.contrib.fasthttp import FastHttpUser
from locust.event import EventHook
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `locust -f` from anywhere

from loadtest.scenarios import (
    RUN_FILE,
    Answer,
    AnswerLog,
    ClaimAnswer,
    GroupAnswer,
    PaymentAnswer,
    SpikePlan,
    needs_campaign,
    needs_sale,
    needs_template,
    pick_user_classes,
    steady_target,
)
from services.common.auth import DEFAULT_KEY_ID
from services.common.idempotency import IDEMPOTENCY_KEY_HEADER
from services.common.settings import DEV_JWT_SECRET, DEV_PAYMENT_SECRET, Settings
from services.order.payments import SIGNATURE_HEADER, sign

log = logging.getLogger("loadtest")

DEFAULT_HOST = "http://127.0.0.1:8080"
RESERVE = "/api/seckill/activities/{id}/reservations"
ACTIVITY = "/api/seckill/activities/{id}"
TOKEN_TTL_SECONDS = 6 * 3600
ORDER_POLL_SECONDS = 1.0
ORDER_POLL_ATTEMPTS = 30
PAYMENT_CALLBACK = "/api/payments/callback"
CAMPAIGN = "/api/groupbuy/campaigns/{id}"
OPEN_GROUP = "/api/groupbuy/campaigns/{id}/groups"
JOIN_GROUP = "/api/groupbuy/groups/{id}/join"
GROUP = "/api/groupbuy/groups/{id}"
TEMPLATE = "/api/coupons/templates/{id}"
CLAIM = "/api/coupons/templates/{id}/claims"
MY_COUPONS = "/api/coupons"
# A provider retries a notification it got no answer to: this share of payments is sent
# twice (same transaction id), which must change nothing.
PAYMENT_REPLAY_SHARE = 0.1
# The shared link: most circles have more friends than free slots (they race, the late
# ones get 409 group_full); some too few (the group expires and fails, its orders are
# cancelled). A friend sometimes taps the link twice (409 already_member).
SHORT_CIRCLE_SHARE = 0.15
EXTRA_FRIENDS = 2
DOUBLE_TAP_SHARE = 0.1
# A shopper whose claim answer got lost retries with the same Idempotency-Key: this share
# of 201 claims is retried once, and must be answered with the same coupon.
CLAIM_REPLAY_SHARE = 0.1
_DEFAULTS = Settings()

ANSWERS = AnswerLog()
_user_numbers = itertools.count(1)

_Listener = TypeVar("_Listener", bound=Callable[..., None])


def _on(*hooks: EventHook) -> Callable[[_Listener], _Listener]:
    """Registers the decorated function on Locust's event hooks; EventHook.add_listener,
    unannotated, would leave it untyped as a decorator."""

    def register(handler: _Listener) -> _Listener:
        for hook in hooks:
            hook.add_listener(handler)
        return handler

    return register


# --------------------------------------------------------------------------- options


@_on(events.init_command_line_parser)
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
        help="HS256 secret to mint tokens with (the admin's; the shoppers' with --auth mint)",
        is_secret=True,
    )
    g.add_argument(
        "--jwt-key-id",
        env_var="JWT_KEY_ID",
        default=DEFAULT_KEY_ID,
        help="kid of --jwt-secret (services refuse tokens without a known kid)",
    )
    g.add_argument(
        "--auth",
        choices=["login", "mint"],
        default="login",
        help="login: each shopper logs in through the gateway (POST /api/auth/login with a "
        "wx.login()-shaped code, which the local fake WeChat provider accepts); mint: "
        "tokens minted with --jwt-secret (no login load, any provider)",
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
        "--groupbuy-admin-url",
        env_var="LOADTEST_GROUPBUY_ADMIN_URL",
        default=f"http://{_DEFAULTS.http_host}:{_DEFAULTS.groupbuy_port}",
        help="groupbuy service URL for creating the campaign (not on the public gateway)",
    )
    g.add_argument(
        "--campaign-id",
        type=int,
        default=0,
        help="groupbuy scenario: existing campaign to load (0: create one at test start)",
    )
    g.add_argument("--group-size", type=int, default=3, help="of a created campaign: N")
    g.add_argument(
        "--group-window-seconds",
        type=int,
        default=30,
        help="of a created campaign: how long a group stays open (short, so groups that "
        "do not fill fail within the run)",
    )
    g.add_argument(
        "--campaign-stock",
        type=int,
        default=0,
        help="stock of a created campaign (0: --stock)",
    )
    g.add_argument(
        "--coupon-admin-url",
        env_var="LOADTEST_COUPON_ADMIN_URL",
        default=f"http://{_DEFAULTS.http_host}:{_DEFAULTS.coupon_port}",
        help="coupon service URL for creating the template (not on the public gateway)",
    )
    g.add_argument(
        "--template-id",
        type=int,
        default=0,
        help="coupon-rush scenario: existing coupon template to load (0: create one at test start)",
    )
    g.add_argument(
        "--coupon-quantity",
        type=int,
        default=0,
        help="quantity of a created coupon template (0: --stock)",
    )
    g.add_argument(
        "--payment-secret",
        env_var="PAYMENT_WEBHOOK_SECRET",
        default=DEV_PAYMENT_SECRET,
        is_secret=True,
        help="HMAC key of the payment provider's callback (the order service's "
        "PAYMENT_WEBHOOK_SECRET)",
    )


def _opts(environment: Any) -> Any:
    return environment.parsed_options


# ------------------------------------------------------------------ picking classes


def _tags_of(user_class: Any) -> set[str]:
    tags: set[str] = set()
    for t in getattr(user_class, "tasks", []):
        tags |= set(getattr(t, "locust_tag_set", set()))
    return tags


@_on(events.init)
def _pick_classes(environment: Any, **_: Any) -> None:
    """Whole classes by --tags (Locust would spawn a class left without tasks and fail)."""
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


def _admin_headers(opts: Any) -> dict[str, str]:
    token = mint(opts.jwt_secret, "loadtest-admin", ["admin"], opts.jwt_key_id)
    return {"Authorization": f"Bearer {token}"}


def mint(
    secret: str, user_id: str, roles: list[str] | None = None, key_id: str = DEFAULT_KEY_ID
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + TOKEN_TTL_SECONDS}
    if roles:
        claims["roles"] = roles
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": key_id})


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _check(resp: requests.Response, expected: int, what: str) -> dict[str, Any]:
    if resp.status_code != expected:
        raise RuntimeError(f"{what}: {resp.status_code} {resp.text}")
    body = resp.json()
    return body if isinstance(body, dict) else {}


def _start_in(opts: Any) -> float:
    """Seconds from test start to the sale's start or the claim window's opening."""
    if opts.start_in >= 0:
        return float(opts.start_in)
    return float(opts.warmup_seconds) if opts.shape == "spike" else 0.0


def _create_or_read(
    admin: str,
    headers: dict[str, str],
    given: int,
    create: str,
    body: Callable[[], dict[str, Any]],
    read: str,
    what: str,
) -> tuple[int, dict[str, Any]]:
    """(id, what `read` says of it) of the sale, campaign or template `given` names, or
    of the one created with `body()` at `create` when `given` is 0."""
    if not given:
        sent = body()
        resp = requests.post(f"{admin}{create}", json=sent, headers=headers, timeout=10)
        given = int(_check(resp, 201, f"creating the {what} at {admin}")["id"])
        log.info("created %s %s: %s", what, given, sent)
    resp = requests.get(f"{admin}{read.format(id=given)}", headers=headers, timeout=10)
    return given, _check(resp, 200, f"reading {what} {given} at {admin}")


def _create_sale(opts: Any, run_s: float) -> dict[str, Any]:
    def body() -> dict[str, Any]:
        start_in = _start_in(opts)
        starts = datetime.now(UTC) + timedelta(seconds=start_in)
        return {
            "sku": f"lt-{opts.run_id}",
            "title": f"Load test {opts.run_id}",
            "price_cents": 990,
            "stock": opts.stock,
            "starts_at": _rfc3339(starts - timedelta(seconds=1) if start_in == 0 else starts),
            "ends_at": _rfc3339(starts + timedelta(seconds=run_s + 600)),
            "per_user_limit": opts.per_user_limit,
            "payment_timeout_seconds": 900,
        }

    admin = opts.admin_url.rstrip("/")
    opts.activity_id, info = _create_or_read(
        admin,
        _admin_headers(opts),
        opts.activity_id,
        "/api/seckill/admin/activities",
        body,
        ACTIVITY,
        "activity",
    )
    return {
        "activity_id": opts.activity_id,
        "stock": info["stock"],
        "per_user_limit": info["per_user_limit"],
        "admin_url": admin,
    }


def _create_campaign(opts: Any, run_s: float) -> dict[str, Any]:
    def body() -> dict[str, Any]:
        now = datetime.now(UTC)
        size = int(opts.group_size)
        return {
            "sku": f"lt-gb-{opts.run_id}",
            "title": f"Load test group buy {opts.run_id}",
            "group_price_cents": 1990,
            "single_price_cents": 2990,
            "group_size": size,
            "stock": max(size, int(opts.campaign_stock or opts.stock)),
            "starts_at": _rfc3339(now - timedelta(seconds=1)),
            "ends_at": _rfc3339(now + timedelta(seconds=run_s + 600)),
            "group_window_seconds": int(opts.group_window_seconds),
            "per_user_limit": 1,
            "payment_timeout_seconds": 900,
        }

    admin = opts.groupbuy_admin_url.rstrip("/")
    opts.campaign_id, info = _create_or_read(
        admin,
        _admin_headers(opts),
        opts.campaign_id,
        "/api/groupbuy/admin/campaigns",
        body,
        CAMPAIGN,
        "campaign",
    )
    return {
        "campaign_id": opts.campaign_id,
        "stock": info["stock"],
        "group_size": info["group_size"],
        "per_user_limit": info["per_user_limit"],
        "virtual_completion": info["virtual_completion"],
        "group_window_seconds": info["group_window_seconds"],
        "admin_url": admin,
    }


def _create_template(opts: Any, run_s: float) -> dict[str, Any]:
    """A coupon template (无门槛, 3.00 off, valid 7 days from the claim) whose claim window
    opens when the spike arrives, as a sale does; or the one --template-id names."""

    def body() -> dict[str, Any]:
        start_in = _start_in(opts)
        opens = datetime.now(UTC) + timedelta(seconds=start_in)
        return {
            "name": f"Load test coupon {opts.run_id}",
            "kind": "no_threshold",
            "amount_off_cents": 300,
            "validity": "relative",
            "valid_days": 7,
            "quantity": int(opts.coupon_quantity or opts.stock),
            "per_user_limit": int(opts.per_user_limit),
            "claimable": True,
            "claim_starts_at": _rfc3339(opens - timedelta(seconds=1) if start_in == 0 else opens),
            "claim_ends_at": _rfc3339(opens + timedelta(seconds=run_s + 600)),
            "scope": "any",
            "usable_on_flash_sales": False,
        }

    admin = opts.coupon_admin_url.rstrip("/")
    opts.template_id, info = _create_or_read(
        admin,
        _admin_headers(opts),
        opts.template_id,
        "/api/coupons/admin/templates",
        body,
        "/api/coupons/admin/templates/{id}",
        "coupon template",
    )
    return {
        "template_id": opts.template_id,
        "quantity": info["quantity"],
        "per_user_limit": info["per_user_limit"],
        "admin_url": admin,
    }


@_on(events.test_start)
def _setup_sale(environment: Any, **_: Any) -> None:
    """On the master (or the only process): create the sale and/or the campaign the
    picked classes use, unless given, and record the run for the checks. Workers get the
    ids with Locust's parsed options."""
    if isinstance(environment.runner, WorkerRunner):
        return
    opts = _opts(environment)
    if not opts.run_id:
        opts.run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S") + f"-{random.randrange(1000)}"
    classes = [c.__name__ for c in environment.user_classes]
    run_s = float(opts.run_time or 3600)
    record: dict[str, Any] = {"run_id": opts.run_id, "user_classes": classes}
    if needs_sale(classes):
        record |= _create_sale(opts, run_s)
    if needs_campaign(classes):
        record["campaign"] = _create_campaign(opts, run_s)
    if needs_template(classes):
        record["template"] = _create_template(opts, run_s)
    if opts.answers_dir:
        out = Path(opts.answers_dir)
        out.mkdir(parents=True, exist_ok=True)
        record |= {
            "host": environment.host,
            "order_host": opts.order_host or environment.host,
            "started_at": _rfc3339(datetime.now(UTC)),
        }
        (out / RUN_FILE).write_text(json.dumps(record, indent=2))


@_on(events.test_stop, events.quitting)
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

    def get_run_time(self) -> float:
        # Locust leaves it unannotated; called through the class, not super(), for mypy's
        # untyped_calls_exclude (pyproject) to recognise it.
        return float(LoadTestShape.get_run_time(self))

    def tick(self) -> tuple[int, float] | None:
        # Locust asks for a tick only once its runner has parsed the command line.
        assert self.runner is not None and self.runner.environment.parsed_options is not None
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
        self.user_id, self.auth = self.sign_in(new_user_id(opts.run_id))
        self.order_host = (opts.order_host or self.host).rstrip("/")
        self.held = 0
        self.last_reservation_id: str | None = None

    def sign_in(self, who: str) -> tuple[str, dict[str, str]]:
        """(user id, Authorization header) of shopper <who>: logged in through the gateway
        (--auth login), or minted (--auth mint, the user id is then <who> itself)."""
        if self.opts.auth == "mint":
            token = mint(self.opts.jwt_secret, who, key_id=self.opts.jwt_key_id)
            return who, {"Authorization": f"Bearer {token}"}
        code = f"{who}.{uuid.uuid4().hex[:12]}"  # a fresh single-use code per login
        with self.client.post(
            "/api/auth/login", json={"code": code}, name="/api/auth/login", catch_response=True
        ) as resp:
            body = _body(resp)
            if resp.status_code != 200 or not isinstance(body.get("access_token"), str):
                resp.failure(f"login: HTTP {resp.status_code} {body.get('error')}")
                raise StopUser()
        return str(body["user"]["id"]), {"Authorization": f"Bearer {body['access_token']}"}

    def view_activity(self) -> None:
        self.client.get(ACTIVITY.format(id=self.activity_id), headers=self.auth, name=ACTIVITY)

    def my_orders(self, auth: dict[str, str] | None = None) -> list[dict[str, Any]]:
        with self.client.get(
            f"{self.order_host}/api/orders?limit=20",
            headers=auth or self.auth,
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
            data=cast(str, b'{"quantity": 1}'),  # sent as is; Locust annotates data as str
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
                self.last_reservation_id = body.get("reservation_id")
            return kind, _retry_after(resp) if kind == Answer.RATE_LIMITED else 0.0

    def wait_for_order(
        self, match: Callable[[dict[str, Any]], bool], auth: dict[str, str] | None = None
    ) -> dict[str, Any] | None:
        """The caller's order that `match`es, once the pipeline (Kafka -> order service)
        created it; no order after ORDER_POLL_ATTEMPTS polls is a failure."""
        for _attempt in range(ORDER_POLL_ATTEMPTS):
            found = next((o for o in self.my_orders(auth) if match(o)), None)
            if found is not None:
                return found
            gevent.sleep(ORDER_POLL_SECONDS)
        fail_check("order appears", f"no order after {ORDER_POLL_ATTEMPTS} polls")
        return None

    def pay(self, order: dict[str, Any]) -> str:
        """Pay `order` as the payment provider does: its signed notification to the
        callback (services/order/payments.py). A share is sent twice, as a provider
        retries; the replay must be answered like the first and change nothing."""
        txn = f"lt-{uuid.uuid4().hex[:24]}"
        body = json.dumps(
            {
                "transaction_id": txn,
                "order_id": order["id"],
                "amount_cents": int(order["amount_cents"]),
                "status": "success",
                "paid_at": _rfc3339(datetime.now(UTC)),
            }
        ).encode()
        kind = self._notify_payment(order["id"], txn, body)
        if kind != Answer.UNEXPECTED and random.random() < PAYMENT_REPLAY_SHARE:
            again = self._notify_payment(order["id"], txn, body)
            if again != kind:
                fail_check("payment replay", f"{txn}: first {kind}, replay {again}")
        return kind

    def _notify_payment(self, order_id: str, txn: str, body: bytes) -> str:
        signature = sign(self.opts.payment_secret, int(time.time()), body)
        with self.client.post(
            f"{self.order_host}{PAYMENT_CALLBACK}",
            data=cast(str, body),  # sent as is; Locust annotates data as str
            headers={"Content-Type": "application/json", SIGNATURE_HEADER: signature},
            name=PAYMENT_CALLBACK,
            catch_response=True,
        ) as resp:
            answer = _body(resp)
            kind = ANSWERS.record_payment(
                order_id, txn, resp.status_code or None, answer.get("result")
            )
            if kind == Answer.UNEXPECTED:
                resp.failure(f"HTTP {resp.status_code} {answer.get('error', '-')}")
            else:
                resp.success()
            return kind

    def order_state(self, order_id: str, auth: dict[str, str] | None = None) -> dict[str, Any]:
        with self.client.get(
            f"{self.order_host}/api/orders/{order_id}",
            headers=auth or self.auth,
            name="/api/orders/{id}",
            catch_response=True,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
                return {}
            return _body(resp)


def new_user_id(run_id: str) -> str:
    return f"lt-{run_id}-{os.getpid()}-{next(_user_numbers)}"


def _body(resp: Any) -> dict[str, Any]:
    try:
        body = resp.json() if resp.content else {}
    except ValueError:
        body = {}
    return body if isinstance(body, dict) else {}


def _retry_after(resp: Any) -> float:
    try:
        return float(resp.headers.get("Retry-After") or 1)
    except ValueError:
        return 1.0


def fail_check(name: str, why: str) -> None:
    """A broken expectation seen by the client, counted as a failure in Locust's stats."""
    events.request.fire(
        request_type="CHECK",
        name=name,
        response_time=0,
        response_length=0,
        exception=AssertionError(why),
    )


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
            fail_check("per-user limit", f"{self.user_id} got {self.held} reservations")


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


# --------------------------------------------------------- paying, group buying


class Payer(Shopper):
    """Reserves, waits for the order (Kafka -> order service), and pays a share
    (--pay-share) of them as the payment provider does: a callback signed with
    --payment-secret (`X-Payment-Signature: t=<unix>,v1=<HMAC-SHA256>`), sometimes sent
    twice. The others leave their order unpaid. A paid order must then read `paid`."""

    weight = 1

    def wait_time(self) -> float:
        return random.uniform(2.0, 5.0) if self.done else random.uniform(0.3, 1.0)

    def on_start(self) -> None:
        super().on_start()
        self.done = False

    @tag("payment", "mixed")
    @task
    def reserve_and_pay(self) -> None:
        if self.done:
            self.my_orders()
            return
        kind, retry_after = self.press()
        if kind == Answer.RATE_LIMITED:
            gevent.sleep(retry_after)
            return
        if kind in (Answer.NOT_STARTED, Answer.UNEXPECTED):
            return
        if kind != Answer.RESERVED:
            self.done = True  # sold out, limit reached, ended
            return
        self.done = self.held >= int(self.opts.per_user_limit)
        rid = self.last_reservation_id
        order = self.wait_for_order(lambda o: o.get("reservation_id") == rid)
        if order is None or random.random() >= float(self.opts.pay_share):
            return
        gevent.sleep(random.uniform(0.5, 3.0))  # the shopper confirms in the wallet
        if self.pay(order) == PaymentAnswer.PAID:
            state = self.order_state(order["id"]).get("state")
            if state != "paid":
                fail_check("paid order reads paid", f"order {order['id']} is {state}")


class GroupBuyInviter(Shopper):
    """Group buying (拼团) by shared link. Each round a new leader opens a group of the
    campaign (--campaign-id, or one created at test start), shares the link with a circle
    of friends (fresh shoppers) who open it within a second or two and race for the N-1
    free slots: the late ones are answered 409 group_full, a double tap 409
    already_member; a circle too small leaves the group to expire and fail. The leader
    then reads the share card and pays a share (--pay-share) of their group orders. Once
    the campaign is sold out (410), it only looks at the campaign page."""

    weight = 1
    wait_time = between(1.0, 3.0)

    def on_start(self) -> None:
        opts = _opts(self.environment)
        self.opts = opts
        self.campaign_id = int(opts.campaign_id)
        if not self.campaign_id:
            raise StopUser()  # the campaign could not be set up; test_start logged why
        self.order_host = (opts.order_host or self.host).rstrip("/")
        _, self.auth = self.sign_in(new_user_id(opts.run_id))  # for the campaign page
        self.sold_out = False

    @tag("groupbuy", "mixed")
    @task
    def open_share_join(self) -> None:
        if self.sold_out:
            self.client.get(CAMPAIGN.format(id=self.campaign_id), headers=self.auth, name=CAMPAIGN)
            return
        leader, leader_auth = self.sign_in(new_user_id(self.opts.run_id))
        group_id = self.open_group(leader, leader_auth)
        if group_id is None:
            return
        size = int(self.opts.group_size)
        if random.random() < SHORT_CIRCLE_SHARE:
            circle = max(0, size - 2)
        else:
            circle = size - 1 + random.randint(0, EXTRA_FRIENDS)
        friends = gevent.pool.Group()
        outcomes: list[str] = []
        for n in range(circle):
            friends.spawn(self.friend_joins, group_id, f"{leader}-f{n}", outcomes)
        if random.random() < DOUBLE_TAP_SHARE:  # the leader opens their own link
            friends.spawn(self.join, group_id, leader, leader_auth)
        friends.join()
        self.read_share_card(group_id, leader_auth, outcomes.count(GroupAnswer.COMPLETED))
        if random.random() < float(self.opts.pay_share):
            order = self.wait_for_order(lambda o: o.get("group_id") == group_id, leader_auth)
            if order is not None:
                self.pay(order)

    def open_group(self, leader: str, auth: dict[str, str]) -> str | None:
        with self.client.post(
            OPEN_GROUP.format(id=self.campaign_id),
            data=cast(str, b"{}"),  # sent as is; Locust annotates data as str
            headers={**auth, "Content-Type": "application/json"},
            name=OPEN_GROUP,
            catch_response=True,
        ) as resp:
            body = _body(resp)
            group_id = body.get("id")
            kind = ANSWERS.record_group(
                "open", leader, resp.status_code or None, body.get("error"), group_id
            )
            if kind not in GroupAnswer.EXPECTED:
                resp.failure(f"HTTP {resp.status_code} {body.get('error', '-')}")
                return None
            resp.success()
            if kind in (GroupAnswer.SOLD_OUT, GroupAnswer.ENDED):
                self.sold_out = True
            return group_id if kind == GroupAnswer.OPENED else None

    def friend_joins(self, group_id: str, friend: str, outcomes: list[str]) -> None:
        gevent.sleep(random.uniform(0.2, 2.0))  # the friend opens the shared link
        try:
            friend, auth = self.sign_in(friend)
        except StopUser:  # the login failed (counted as a failed request)
            outcomes.append("login_failed")
            return
        outcomes.append(self.join(group_id, friend, auth))
        if random.random() < DOUBLE_TAP_SHARE:
            self.join(group_id, friend, auth)

    def join(self, group_id: str, user: str, auth: dict[str, str]) -> str:
        with self.client.post(
            JOIN_GROUP.format(id=group_id),
            data=cast(str, b"{}"),  # sent as is; Locust annotates data as str
            headers={**auth, "Content-Type": "application/json"},
            name=JOIN_GROUP,
            catch_response=True,
        ) as resp:
            body = _body(resp)
            kind = ANSWERS.record_group(
                "join",
                user,
                resp.status_code or None,
                body.get("error"),
                body.get("id"),
                body.get("state"),
            )
            if kind in GroupAnswer.EXPECTED:
                resp.success()
            else:
                resp.failure(f"HTTP {resp.status_code} {body.get('error', '-')}")
            return kind

    def read_share_card(self, group_id: str, auth: dict[str, str], completions: int) -> None:
        """The card after the circle joined: a group some join completed reads
        completed with N members; no group completes twice or exceeds N."""
        with self.client.get(
            GROUP.format(id=group_id), headers=auth, name=GROUP, catch_response=True
        ) as resp:
            card = _body(resp)
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code} {card.get('error', '-')}")
                return
            size, joined = int(card.get("size", 0)), int(card.get("joined", 0))
            if completions > 1:
                resp.failure(f"{completions} joins were told they completed the group")
            elif joined > size:
                resp.failure(f"{joined} members in a group of {size}")
            elif completions and (card.get("state") != "completed" or joined != size):
                resp.failure(f"completed by a join but reads {card.get('state')} {joined}/{size}")
            else:
                resp.success()


# --------------------------------------------------------------------- coupon rush


class CouponRusher(Shopper):
    """A coupon rush (抢券): opens the coupon's page before the claim window opens (early
    birds are answered 409 not_started and press again), presses claim until served or
    refused for good (410 exhausted, 409 limit_reached, 410 claim_ended) or told to wait
    (429, honouring Retry-After), then opens their wallet once and browses idly. A share
    double-tap (two presses at once: at most one coupon per limit); a share of the served
    retry their press with its Idempotency-Key, as a client whose answer was lost does,
    and must get the same coupon back."""

    weight = 1

    def wait_time(self) -> float:
        return random.uniform(2.0, 5.0) if self.done else random.uniform(0.1, 0.4)

    def on_start(self) -> None:
        opts = _opts(self.environment)
        self.opts = opts
        self.template_id = int(opts.template_id)
        if not self.template_id:
            raise StopUser()  # the template could not be set up; test_start logged why
        self.user_id, self.auth = self.sign_in(new_user_id(opts.run_id))
        self.limit = int(opts.per_user_limit)
        self.claimed = 0
        self.done = False
        self.wallet_seen = False
        self.view_template()

    @tag("coupon-rush", "mixed")
    @task
    def rush(self) -> None:
        if self.done:
            if self.claimed and not self.wallet_seen:
                self.wallet_seen = self.my_coupons()
            else:
                self.view_template()
            return
        if random.random() < DOUBLE_TAP_SHARE:
            taps = gevent.pool.Group()
            presses = [taps.spawn(self.claim) for _ in range(2)]
            taps.join()
            outcomes = [p.value for p in presses if p.value is not None]
        else:
            outcomes = [self.claim()]
        kinds = {kind for kind, _ in outcomes}
        if self.claimed > self.limit:
            fail_check("coupon per-user limit", f"{self.user_id} got {self.claimed} coupons")
        if kinds & {ClaimAnswer.EXHAUSTED, ClaimAnswer.LIMIT_REACHED, ClaimAnswer.ENDED}:
            self.done = True
        elif self.claimed >= self.limit:
            self.done = True
        elif ClaimAnswer.RATE_LIMITED in kinds:
            gevent.sleep(max(wait for _, wait in outcomes))

    def claim(self) -> tuple[str, float]:
        """One press of the claim button; returns (ClaimAnswer, seconds to wait if told to)."""
        key = uuid.uuid4().hex
        with self.post_claim(key, CLAIM) as resp:
            body = _body(resp)
            coupon_id = body.get("coupon_id")
            kind = ANSWERS.record_claim(
                self.user_id, resp.status_code or None, body.get("error"), coupon_id
            )
            if kind in ClaimAnswer.EXPECTED:
                resp.success()
            else:
                resp.failure(f"HTTP {resp.status_code} {body.get('error', '-')}")
            wait = _retry_after(resp) if kind == ClaimAnswer.RATE_LIMITED else 0.0
        if kind == ClaimAnswer.CLAIMED:
            self.claimed += 1
            if random.random() < CLAIM_REPLAY_SHARE:
                self.replay_claim(key, str(coupon_id))
        return kind, wait

    def replay_claim(self, key: str, first: str) -> None:
        with self.post_claim(key, f"{CLAIM} (retry)") as resp:
            body = _body(resp)
            kind = ANSWERS.record_claim_replay(
                self.user_id, first, resp.status_code or None, body.get("coupon_id")
            )
            if kind == ClaimAnswer.REPLAYED:
                resp.success()
            else:
                resp.failure(
                    f"retry of {first}: HTTP {resp.status_code} "
                    f"{body.get('coupon_id') or body.get('error', '-')}"
                )

    def post_claim(self, key: str, name: str) -> Any:
        return self.client.post(
            CLAIM.format(id=self.template_id),
            data=cast(str, b"{}"),  # sent as is; Locust annotates data as str
            headers={
                **self.auth,
                "Content-Type": "application/json",
                IDEMPOTENCY_KEY_HEADER: key,
            },
            name=name,
            catch_response=True,
        )

    def view_template(self) -> None:
        self.client.get(TEMPLATE.format(id=self.template_id), headers=self.auth, name=TEMPLATE)

    def my_coupons(self) -> bool:
        """Whether the wallet lists a coupon of this template yet (the record consumer
        writes it shortly after the claim; not seeing it at once is not a failure)."""
        with self.client.get(
            MY_COUPONS, headers=self.auth, name=MY_COUPONS, catch_response=True
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
                return False
            resp.success()
            coupons = _body(resp).get("coupons") or []
            return any(
                isinstance(c, dict) and c.get("template_id") == self.template_id for c in coupons
            )
