"""Settings read once from the environment into a frozen dataclass.

Nothing else in the code base reads os.environ: services, tools and tests build a
Settings (from_env, or replace() in tests) and pass it down.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from services.common.auth import DEFAULT_KEY_ID, KeySet

DEV_JWT_SECRET = "dev-only-secret-change-me-0123456789abcdef"
DEV_PAYMENT_SECRET = "dev-only-payment-webhook-secret-0123456789"
DEV_WECHAT_SECRET = "dev-only-wechat-app-secret"


def _boolean(raw: str) -> bool:
    # bool("false") is True: spell the accepted words out.
    word = raw.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


@dataclass(frozen=True, slots=True)
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/flashsale"
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # Prepended to every topic and consumer-group name: isolates environments (and test
    # runs) that share a broker. A shared group id would make them rebalance each other.
    kafka_topic_prefix: str = ""
    # Idempotent producers (no duplicates from producer retries, per-partition order kept
    # across them). Only the optional light broker (Tansu) cannot do them: off for it.
    kafka_idempotence: bool = True
    # Whether bootstrap creates missing topics (local runs, tests). Off in Kubernetes,
    # where Strimzi KafkaTopic resources own them: bootstrap then waits for them instead.
    kafka_create_topics: bool = True
    # The broker `make up` starts when nothing answers at KAFKA_BOOTSTRAP_SERVERS:
    # "kafka" (Apache Kafka, KRaft, data on disk) or "tansu" (memory only, lightest).
    local_broker: str = "kafka"
    # Access tokens: HS256, signed by the identity service with JWT_SECRET under the key id
    # JWT_KEY_ID; every service also accepts the keys in JWT_VERIFY_KEYS ("kid=secret,...":
    # the next key before it signs, the previous one until its tokens expired). Rotation:
    # docs/identity.md.
    jwt_secret: str = DEV_JWT_SECRET
    jwt_key_id: str = DEFAULT_KEY_ID
    jwt_verify_keys: str = ""
    http_host: str = "127.0.0.1"
    # Listen queue of every HTTP port: connections the kernel completed and the process
    # has not accepted yet. A sale's opening brings thousands within a few milliseconds;
    # the kernel caps it at net.core.somaxconn (docs/operations.md).
    http_listen_backlog: int = 4096
    seckill_port: int = 8081
    seckill_ops_port: int = 9081
    # The seckill background work (outbox relay, stock returns, live gauges) runs in the
    # API process when true; false leaves it to `python -m services.seckill.worker`, whose
    # /healthz, /readyz and /metrics are on seckill_worker_ops_port (services/seckill/
    # background.py says why production runs it apart).
    seckill_embedded_worker: bool = True
    seckill_worker_ops_port: int = 9085
    order_port: int = 8082
    order_ops_port: int = 9082
    groupbuy_port: int = 8083
    groupbuy_ops_port: int = 9083
    # Local nginx gateway (`make up`) and Prometheus (`make up PROMETHEUS=1`). The per-IP
    # rate limit skips the exempt CIDRs (loopback by default, so a local load test is
    # not throttled); 0 turns it off.
    gateway_port: int = 8080
    gateway_rate_limit_per_second: int = 50
    gateway_rate_limit_burst: int = 100
    gateway_rate_limit_exempt: str = "127.0.0.0/8,::1/128"
    gateway_max_body_bytes: int = 16384
    # Shopper login and token refresh (/api/auth/login, /api/auth/refresh) have a stricter
    # per-IP limit of their own at the gateway (same exempt CIDRs; 0 turns it off). Each
    # gateway replica counts apart: identity's own LOGIN_RATE_LIMIT_PER_MINUTE is the
    # shared one.
    gateway_login_rate_limit_per_minute: int = 120
    gateway_login_rate_limit_burst: int = 60
    # The admin side of the gateway (/api/<service>/admin/... and /api/auth/, for the
    # merchant console and operators): a second server, on the loopback only locally and
    # behind a ClusterIP Service in Kubernetes. The public server routes nothing admin.
    admin_gateway_port: int = 8088
    prometheus_port: int = 9090
    # How often gauges read from Redis/PostgreSQL/Kafka (stock per live activity, orders
    # by state, outbox age, DLQ sizes) are refreshed: never per request.
    metrics_refresh_seconds: float = 5.0
    # Name of this process among its replicas: Redis stream consumer name, logs.
    instance_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    log_level: str = "INFO"
    # Hot path: presses one user may make per activity per second before 429.
    user_rate_limit_per_second: int = 5
    # How long an in-process "sold out" answer is trusted before asking Redis again
    # (stock can come back from cancellations, possibly on another replica).
    sold_out_recheck_seconds: float = 0.5
    # How old the remaining stock an activity page shows may be (read from Redis at most
    # once per this time per activity and process; 0: every request). Presses never use it.
    stock_display_max_age_seconds: float = 0.2
    # How long a seckill process trusts the activity it read for the shoppers' pages: a
    # merchant's edit, end or cancel shows on every process within this time (presses
    # never read it: the reserve script decides on the settings in Redis).
    seckill_activity_cache_seconds: float = 1.0
    # How long after a sale ends (a group-buy campaign: after its last group's window) an
    # Idempotency-Key still replays its first outcome; then its record expires with the sale.
    idempotency_key_retention_seconds: int = 24 * 3600
    # Concurrent reservation calls coalesced into one pipelined Redis round trip.
    reserve_batch_max: int = 256
    redis_pool_size: int = 32
    redis_timeout_seconds: float = 2.0
    # Outbox relay: entries read per batch, idle time after which a dead relay's
    # pending entries are reclaimed, and how often to look for them.
    relay_batch_size: int = 500
    relay_reclaim_idle_ms: int = 30_000
    relay_reclaim_interval_seconds: float = 5.0
    # Kafka consumers. A consumer's start takes about half the session timeout on the
    # local broker; tests lower it.
    kafka_session_timeout_ms: int = 10_000
    kafka_heartbeat_interval_ms: int = 3_000
    consumer_max_records: int = 1000
    consumer_max_attempts: int = 5
    # PostgreSQL outbox relay of the order service.
    order_outbox_batch_size: int = 500
    order_outbox_poll_seconds: float = 0.2
    db_pool_size: int = 10
    # Payments: the provider's callback signing secret and how old a signature may be.
    payment_webhook_secret: str = DEV_PAYMENT_SECRET
    payment_signature_max_age_seconds: int = 300
    # Unpaid-order sweeper and payment reminders (催单), in the order service.
    sweep_interval_seconds: float = 1.0
    sweep_batch_size: int = 500
    payment_reminder_lead_seconds: float = 300.0
    # Group-buy sweeper: how often it looks for groups past their deadline (to fail them,
    # or complete them virtually), and how many it settles per campaign per round.
    groupbuy_sweep_interval_seconds: float = 1.0
    groupbuy_sweep_batch_size: int = 200
    # Reconciliation (Redis reservations and groups vs PostgreSQL orders and the group
    # record): how old a difference must be to count (younger ones are in flight), how
    # often the job runs, how far back.
    reconcile_grace_seconds: float = 60.0
    reconcile_interval_seconds: float = 60.0
    reconcile_lookback_seconds: int = 7 * 24 * 3600
    reconcile_ops_port: int = 9089
    # Repairs are sent in batches (events republished per send, releases per step); a
    # batch gets reconcile_repair_attempts tries of at most reconcile_repair_timeout_seconds
    # each, reconcile_repair_backoff_seconds * 2^(try - 1) apart. A batch that still fails
    # ends that sale's repairs for this run: a broker that refused one batch would refuse
    # the next, and the next run tries again.
    reconcile_republish_batch: int = 500
    reconcile_repair_attempts: int = 3
    reconcile_repair_timeout_seconds: float = 10.0
    reconcile_repair_backoff_seconds: float = 0.5
    # Notifications (services/notify). Channel "log" writes messages to the log (local
    # runs); "http" posts them to a WeChat-shaped subscribe-message API at the provider URL.
    notify_port: int = 8084
    notify_ops_port: int = 9084
    notify_channel: str = "log"
    notify_provider_url: str = "https://api.weixin.qq.com"
    # A fixed access token (a non-WeChat provider, or a manual override). Empty: the http
    # channel sends with the platform token identity keeps in Redis for wechat_appid,
    # re-asking once (waiting up to notify_token_wait_seconds) when the provider refuses it.
    notify_access_token: str = ""
    notify_token_wait_seconds: float = 10.0
    # With the http channel a message goes to the user's openid, learnt from identity's
    # user.registered events; a message for a user not registered yet waits this long for
    # the registration, then is dead-lettered as recipient_unknown.
    notify_recipient_wait_seconds: float = 300.0
    # "template=provider template id" pairs, comma separated; a template not listed is
    # sent with its own name as the provider's id.
    notify_template_ids: str = ""
    # Every notify process reads the template ids merchants set in the console (which win
    # over notify_template_ids) at most this often: a change is in effect within it.
    notify_template_cache_seconds: float = 5.0
    notify_miniprogram_state: str = "formal"
    # One send may take this long before it counts as a retryable failure; a row being
    # sent is leased for notify_sending_lease_seconds (longer than the timeout), after
    # which a crashed dispatcher's row is sent again.
    notify_send_timeout_seconds: float = 5.0
    notify_sending_lease_seconds: float = 30.0
    notify_max_attempts: int = 5
    notify_backoff_base_seconds: float = 1.0
    notify_backoff_max_seconds: float = 300.0
    notify_dispatch_concurrency: int = 16
    notify_dispatch_poll_seconds: float = 0.5
    # Messages one user may be sent per rolling hour (0: no limit); excess is dropped.
    notify_rate_limit_per_hour: int = 5
    # "Sale starting soon" (预热) goes out this long before an activity starts.
    notify_reminder_lead_seconds: float = 600.0
    notify_reminder_interval_seconds: float = 5.0
    # Identity (services/identity): shopper login with the mini-program's wx.login() code,
    # refresh tokens, merchant accounts, and the WeChat access_token it keeps for notify.
    identity_port: int = 8086
    identity_ops_port: int = 9086
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    # Merchant sessions end sooner than a shopper's: a console left open overnight logs in
    # again.
    admin_access_token_ttl_seconds: int = 900
    admin_refresh_token_ttl_seconds: int = 12 * 3600
    # The mini-program's credentials and the WeChat server API (code2Session, stable_token)
    # identity calls, each call bounded by wechat_timeout_seconds. Like every default here,
    # the URL is a local component: the fake provider `make up` starts (tools/fake_wechat.py
    # on fake_wechat_port); Kubernetes sets the real one.
    wechat_appid: str = "wx0000000000000dev"
    wechat_secret: str = DEV_WECHAT_SECRET
    wechat_api_url: str = "http://127.0.0.1:8087"
    wechat_timeout_seconds: float = 3.0
    fake_wechat_port: int = 8087
    # The platform access_token (about 2 h): identity fetches it once for all replicas (a
    # Redis lock) this long before it expires, and looks every check interval whether it
    # must (notify may have reported it invalid).
    wechat_token_refresh_ahead_seconds: float = 300.0
    wechat_token_check_seconds: float = 2.0
    # Login throttles in the service (the gateway has its own per-IP limit): shopper logins
    # per client IP per minute (a carrier NAT puts many shoppers behind one address), and
    # failed merchant logins before an account or an address is made to wait (doubling
    # from admin_lockout_base_seconds up to admin_lockout_max_seconds).
    login_rate_limit_per_minute: int = 120
    admin_login_max_failures: int = 5
    admin_login_ip_max_failures: int = 20
    admin_lockout_base_seconds: float = 30.0
    admin_lockout_max_seconds: float = 3600.0
    # Merchant passwords checked (argon2, ~0.1 s of CPU and 64 MiB each) at once per
    # process; more wait their turn, off the event loop.
    admin_password_hash_concurrency: int = 2
    # Peers whose X-Real-IP header names the client (the gateway); anyone else's address
    # is taken as the client's own.
    trusted_proxy_cidrs: str = "127.0.0.0/8,::1/128"
    # The merchant console (services/console): static pages the admin side of the gateway
    # serves under /console/; the browser calls the admin API through that same origin.
    console_port: int = 8089
    console_ops_port: int = 9087
    # Coupons (services/coupon, docs/coupons.md): templates, claim rushes, grants after
    # paid orders (下单返券), redemption on pending orders, expiry.
    coupon_port: int = 8091
    coupon_ops_port: int = 9091
    # How old the remaining quantity of the public template page may be (read from Redis
    # at most once per this time per template and process); claims never use it.
    coupon_view_max_age_seconds: float = 0.2
    # The expiry sweeper's period, and how long before a coupon's end its holder is sent
    # "coupon expiring" (once per coupon, consented, through notify).
    coupon_sweep_interval_seconds: float = 30.0
    coupon_expiring_notice_seconds: float = 24 * 3600.0

    def jwt_keys(self) -> KeySet:
        """The key set every service verifies access tokens with (identity signs with it)."""
        return KeySet.from_config(self.jwt_secret, self.jwt_key_id, self.jwt_verify_keys)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from upper-cased field names (REDIS_URL, ORDER_PORT, ...)."""
        env = os.environ if environ is None else environ
        defaults = cls()
        # Each value has its field's type (converted with the type of the field's default),
        # which a single dict type cannot say field by field.
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.name.upper())
            if raw is None or raw == "":
                continue
            kind = type(getattr(defaults, f.name))
            try:
                values[f.name] = _boolean(raw) if kind is bool else kind(raw)
            except ValueError as exc:
                raise ValueError(
                    f"{f.name.upper()}={raw!r} is not a valid {kind.__name__}"
                ) from exc
        return cls(**values)

    def topic(self, name: str) -> str:
        return f"{self.kafka_topic_prefix}{name}"

    def group(self, name: str) -> str:
        return f"{self.kafka_topic_prefix}{name}"

    def set_apart(self, suffix: str, redis_db: int, topic_prefix: str = "") -> Settings:
        """The same servers, other data: database <name>_<suffix>, Redis database redis_db
        (unless REDIS_URL names a non-zero one: that choice is kept) and topic_prefix in
        front of the topics and groups. For runs that must not touch the dev stack's data
        (tests, the benchmark)."""
        db = urlsplit(self.database_url)
        rd = urlsplit(self.redis_url)
        named = rd.path.strip("/") or "0"
        return replace(
            self,
            database_url=urlunsplit(db._replace(path=f"{db.path.rstrip('/')}_{suffix}")),
            redis_url=urlunsplit(rd._replace(path=f"/{named if named != '0' else redis_db}")),
            kafka_topic_prefix=f"{topic_prefix}{self.kafka_topic_prefix}",
        )
