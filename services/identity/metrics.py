"""Metrics of the identity service. Labels are bounded (kind, outcome, call): never user,
merchant, openid or address values."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Logins reach the provider and PostgreSQL (and argon2 for merchants): coarser than the
# hot path's buckets.
LOGIN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class IdentityMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.logins = Counter(
            "identity_logins_total",
            "Login attempts by kind (shopper, admin) and outcome (ok or the error code).",
            ["kind", "outcome"],
            registry=registry,
        )
        self.login_seconds = Histogram(
            "identity_login_seconds",
            "Time to answer a login, by kind.",
            ["kind"],
            buckets=LOGIN_BUCKETS,
            registry=registry,
        )
        self.provider_seconds = Histogram(
            "identity_provider_seconds",
            "Time of calls to the WeChat API, by call (code2session, stable_token).",
            ["call"],
            buckets=LOGIN_BUCKETS,
            registry=registry,
        )
        self.refreshes = Counter(
            "identity_refresh_total",
            "Refresh-token presentations by outcome (ok, reused, expired, revoked, unknown).",
            ["outcome"],
            registry=registry,
        )
        self.registered = Counter(
            "identity_users_registered_total",
            "Shoppers created at their first login.",
            registry=registry,
        )
        self.token_seconds_left = Gauge(
            "identity_access_token_seconds_left",
            "Remaining life of the shared WeChat access_token (-1: there is none).",
            registry=registry,
        )
        self.token_fetches = Counter(
            "identity_access_token_fetches_total",
            "Fetches of the WeChat access_token by outcome (ok, error) and reason "
            "(missing, expiring, reported_invalid).",
            ["outcome", "reason"],
            registry=registry,
        )
        self.throttle_skipped = Counter(
            "identity_login_throttle_unavailable_total",
            "Shopper logins let through without the per-address limit (Redis unavailable).",
            registry=registry,
        )
