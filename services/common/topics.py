"""Kafka topic names (contracts: docs/architecture.md, "Events") and how each is created.

The partition counts and retention here are the production ones: bootstrap creates topics
with them where it may create topics (local runs), and deploy/k8s declares the same as
Strimzi KafkaTopic resources (tests/deploy checks that the two agree).
"""

from __future__ import annotations

from dataclasses import dataclass

SECKILL_RESERVATIONS = "seckill.reservations"
ORDERS = "orders"
GROUPBUY = "groupbuy"
NOTIFY_DLQ = "notify.dlq"
USERS = "users"
COUPONS = "coupons"

MAIN_TOPICS = (SECKILL_RESERVATIONS, ORDERS, GROUPBUY, USERS, COUPONS)

WEEK_MS = 7 * 24 * 3600 * 1000
# Dead letters wait for an operator: kept twice as long as the events they came from.
DLQ_RETENTION_MS = 2 * WEEK_MS
DLQ_PARTITIONS = 3


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic as the platform creates it. Partitions bound how many consumer replicas
    share the work (an HPA must not scale a consumer past them)."""

    name: str
    partitions: int
    retention_ms: int
    # Compacted topics keep the latest event per key for good (retention_ms is then -1):
    # a consumer added later reads every user's registration from the start.
    compacted: bool = False

    def config(self) -> dict[str, str]:
        """The topic-level Kafka configuration (what bootstrap and Strimzi both set)."""
        policy = "compact" if self.compacted else "delete"
        return {"cleanup.policy": policy, "retention.ms": str(self.retention_ms)}


# Reservations, orders and coupon claims carry a rush's whole burst: 12 partitions let 12
# consumer replicas work in parallel; group events and registrations are fewer.
PARTITIONS = {SECKILL_RESERVATIONS: 12, ORDERS: 12, GROUPBUY: 6, USERS: 6, COUPONS: 12}
# A user's registration (user id -> openid) is needed for as long as the user exists.
COMPACTED_TOPICS = frozenset({USERS})


def dlq(topic: str) -> str:
    """Dead-letter topic of a consumed topic."""
    return f"{topic}.dlq"


def topic_specs() -> tuple[TopicSpec, ...]:
    """Every topic the platform uses, dead-letter topics included."""
    specs = [
        TopicSpec(t, PARTITIONS[t], -1, compacted=True)
        if t in COMPACTED_TOPICS
        else TopicSpec(t, PARTITIONS[t], WEEK_MS)
        for t in MAIN_TOPICS
    ]
    dlqs = [*(dlq(t) for t in MAIN_TOPICS), NOTIFY_DLQ]
    specs += [TopicSpec(name, DLQ_PARTITIONS, DLQ_RETENTION_MS) for name in dict.fromkeys(dlqs)]
    return tuple(specs)


def all_topics() -> tuple[str, ...]:
    return tuple(spec.name for spec in topic_specs())


def partitions(topic: str) -> int:
    """A topic's partition count (what bootstrap creates and Strimzi declares)."""
    for spec in topic_specs():
        if spec.name == topic:
            return spec.partitions
    raise KeyError(topic)
