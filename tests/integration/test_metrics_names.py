"""Every service's /metrics: the names SREs and the alert rules rely on, Prometheus naming
conventions, and bounded label cardinality (no user, order or reservation ids)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from services.common.settings import Settings
from tests.helpers import create_activity, running_relay, started_client, wait_for

Token = Callable[..., dict[str, str]]

# name -> label names (without `le`), per service. The dashboards and alert rules use these.
# Every process's ops port (services/common/observability.py): prometheus_client's process
# and GC collectors, and the event-loop lag.
RUNTIME = {
    "process_cpu_seconds": set(),
    "process_resident_memory_bytes": set(),
    "process_open_fds": set(),
    "process_max_fds": set(),
    "python_gc_collections": {"generation"},
    "event_loop_lag_seconds": set(),
}
COMMON = {
    **RUNTIME,
    "http_requests": {"route", "method", "status"},
    "http_request_duration_seconds": {"route", "method"},
}
SECKILL = {
    **COMMON,
    "seckill_reservations": {"result"},
    "seckill_idempotent_replays": set(),
    "seckill_sold_out_short_circuit": set(),
    "seckill_reserve_batch_size": set(),
    "seckill_activity_stock_remaining": {"activity"},
    "seckill_activity_stock_initial": {"activity"},
    "seckill_activities_missing_redis_state": set(),
    "seckill_outbox_published": set(),
    "seckill_outbox_publish_failures": set(),
    "seckill_outbox_reclaimed": set(),
    "seckill_outbox_backlog": set(),
    "seckill_outbox_oldest_entry_age_seconds": set(),
    "seckill_outbox_publish_delay_seconds": set(),
}
ORDER = {
    **COMMON,
    "order_orders_created": set(),
    "order_reservation_duplicates": set(),
    "order_reservation_to_order_seconds": set(),
    "order_orders": {"state"},
    "order_outbox_published": set(),
    "order_outbox_publish_failures": set(),
    "order_outbox_backlog": set(),
    "order_outbox_oldest_event_age_seconds": set(),
    "order_sale_cancelled_orders": set(),
    "order_sale_cancelled_swept": set(),
    "order_coupon_locks": {"result"},
    "kafka_consumer_messages": {"topic", "group", "result"},
    "kafka_consumer_retries": {"topic", "group"},
    "kafka_consumer_lag": {"topic", "group", "partition"},
    "kafka_dlq_messages": {"topic"},
}
NOTIFY = {
    **COMMON,
    "notify_messages": {"template", "channel", "result"},
    "notify_queued": {"template"},
    "notify_retries": {"template"},
    "notify_rate_limited": {"template"},
    "notify_no_consent": {"template"},
    "notify_duplicates": set(),
    "notify_resumed_sends": set(),
    "notify_dead_lettered": set(),
    "notify_waiting_for_recipient": {"template"},
    "notify_recipient_unknown": {"template"},
    "notify_recipients_registered": set(),
    "notify_token_reasks": {"result"},
    "notify_delivery_latency_seconds": {"template"},
    "notify_deliveries": {"state"},
    "notify_dispatcher_failures": set(),
    "kafka_consumer_messages": {"topic", "group", "result"},
    "kafka_consumer_retries": {"topic", "group"},
    "kafka_consumer_lag": {"topic", "group", "partition"},
    "kafka_dlq_messages": {"topic"},
}
GROUPBUY = {
    **COMMON,
    "groupbuy_groups": {"state"},
    "groupbuy_groups_opened": set(),
    "groupbuy_groups_completed": {"how"},
    "groupbuy_groups_failed": set(),
    "groupbuy_joins": {"result"},
    "groupbuy_idempotent_replays": {"kind"},
    "groupbuy_open_refusals": {"result"},
    "groupbuy_time_to_complete_seconds": set(),
    "groupbuy_unit_returns": {"result"},
    "groupbuy_sweeper_failures": set(),
    "groupbuy_outbox_published": set(),
    "groupbuy_outbox_publish_failures": set(),
    "groupbuy_outbox_reclaimed": set(),
    "groupbuy_outbox_backlog": set(),
    "groupbuy_outbox_publish_delay_seconds": set(),
}
COUPON = {
    **COMMON,
    "coupon_claims": {"result"},
    "coupon_idempotent_replays": set(),
    "coupon_coupons_recorded": set(),
    "coupon_remaining": {"template"},
    "coupon_outbox_published": set(),
    "coupon_outbox_publish_failures": set(),
    "coupon_outbox_reclaimed": set(),
    "coupon_outbox_backlog": set(),
    "coupon_outbox_publish_delay_seconds": set(),
    "coupon_grants": {"result"},
    "coupon_redemptions": {"result"},
    "coupon_refunded_grants_kept": set(),
    "coupon_expired": set(),
    "coupon_expiring_notices": set(),
    "coupon_sweeper_failures": set(),
    "coupon_pg_outbox_published": set(),
    "coupon_pg_outbox_publish_failures": set(),
    "coupon_pg_outbox_backlog": set(),
    "kafka_consumer_messages": {"topic", "group", "result"},
    "kafka_consumer_retries": {"topic", "group"},
    "kafka_consumer_lag": {"topic", "group", "partition"},
}
IDENTITY = {
    **COMMON,
    "identity_logins": {"kind", "outcome"},
    "identity_login_seconds": {"kind"},
    "identity_provider_seconds": {"call"},
    "identity_refresh": {"outcome"},
    "identity_users_registered": set(),
    "identity_access_token_seconds_left": set(),
    "identity_access_token_fetches": {"outcome", "reason"},
    "identity_login_throttle_unavailable": set(),
    "identity_outbox_published": set(),
    "identity_outbox_publish_failures": set(),
    "identity_outbox_backlog": set(),
}
# The coupon service (docs/coupons.md): what its dashboard and alert rules query. Its
# relay is the shared stream outbox relay (prefix coupon).
COUPON = {
    **COMMON,
    "coupon_claims": {"result"},
    "coupon_grants": {"result"},
    "coupon_redemptions": {"result"},
    "coupon_remaining": {"template"},
    "coupon_outbox_published": set(),
    "coupon_outbox_publish_failures": set(),
    "coupon_outbox_reclaimed": set(),
    "coupon_outbox_backlog": set(),
    "coupon_outbox_publish_delay_seconds": set(),
    "kafka_consumer_messages": {"topic", "group", "result"},
    "kafka_consumer_retries": {"topic", "group"},
    "kafka_consumer_lag": {"topic", "group", "partition"},
    # Not kafka_dlq_messages: the size of coupons.dlq is watched by the order service
    # (test_order_metrics_...), which alert FlashsaleCouponDeadLetters reads.
}
# Labels whose values come from a small, fixed set (or from live activities/partitions).
ALLOWED_LABELS = {"route", "method", "status", "result", "topic", "group", "partition"}
ALLOWED_LABELS |= {"activity", "state", "kind", "reason", "how", "le", "template", "channel"}
ALLOWED_LABELS |= {"outcome", "call"}
# Histograms that are counts, not durations: no unit suffix applies.
UNITLESS_HISTOGRAMS = {"seckill_reserve_batch_size"}
MAX_SERIES_PER_METRIC = 300
ID_LIKE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-|^u\d+$|^shopper|^user|^r[0-9a-z]{10,}")


def families(text: str) -> dict[str, Metric]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def check_conventions(found: dict[str, Metric], expected: dict[str, set[str]]) -> None:
    for name, wanted_labels in expected.items():
        assert name in found, f"{name} missing from /metrics"
        family = found[name]
        labels = {k for s in family.samples for k in s.labels} - {"le"}
        # A labelled metric with no series yet shows no labels: check those that have some.
        if family.samples:
            assert labels == wanted_labels, f"{name}: labels {labels} != {wanted_labels}"
    for name, family in found.items():
        if name.startswith(("python_", "process_")):
            continue
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert not re.search(r"_(ms|milliseconds|minutes|bytes_total)$", name), name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), name
        if family.type == "histogram":
            assert name.endswith("_seconds") or name in UNITLESS_HISTOGRAMS, name
        if family.type == "gauge":
            assert not name.endswith("_total"), name
        series = [s for s in family.samples if not s.name.endswith(("_bucket", "_created"))]
        assert len(series) <= MAX_SERIES_PER_METRIC, f"{name}: {len(series)} series"
        for sample in family.samples:
            assert set(sample.labels) <= ALLOWED_LABELS, f"{name}: {sample.labels}"
            for value in sample.labels.values():
                assert not ID_LIKE.search(value), f"{name}: id-like label value {value!r}"


def latency_buckets(found: dict[str, Metric]) -> list[float]:
    family = found["http_request_duration_seconds"]
    return sorted({float(s.labels["le"]) for s in family.samples if "le" in s.labels})


async def scrape(ops: TestClient[Any, Any]) -> str:
    resp = await ops.get("/metrics")
    assert resp.status == 200
    return await resp.text()


async def test_seckill_metrics_follow_the_conventions_and_carry_no_ids(
    settings: Settings, token: Token, redis: Redis, db: asyncpg.Connection
) -> None:
    from services.seckill.app import create_app, create_ops

    fast = dataclasses.replace(settings, metrics_refresh_seconds=0.1)
    api = await started_client(create_app(fast, run_relay=False))
    ops = await started_client(create_ops(api.app))
    try:
        activity = await create_activity(api, token("ops", admin=True), stock=3)
        url = f"/api/seckill/activities/{activity['id']}/reservations"
        statuses = await asyncio.gather(*(api.post(url, headers=token(f"u{i}")) for i in range(5)))
        assert sorted(r.status for r in statuses) == [201, 201, 201, 410, 410]
        await api.get(f"/api/seckill/activities/{activity['id']}", headers=token("u1"))
        await api.get("/api/seckill/reservations/r-nonexistent-123", headers=token("u1"))
        async with running_relay(redis, fast):
            await wait_for(lambda: redis.xlen(f"sk:{{a{activity['id']}}}:outbox"), 0)

        async def remaining() -> Any:
            found = families(await scrape(ops))
            samples = found["seckill_activity_stock_remaining"].samples
            return [(s.labels, s.value) for s in samples]

        assert await wait_for(remaining, [({"activity": str(activity["id"])}, 0.0)]) == [
            ({"activity": str(activity["id"])}, 0.0)
        ]
        found = families(await scrape(ops))
        check_conventions(found, SECKILL)
        # Buckets suited to a sub-10 ms hot path: several below 10 ms.
        assert len([b for b in latency_buckets(found) if b < 0.01]) >= 4
        routes = {s.labels["route"] for s in found["http_requests"].samples}
        assert "/api/seckill/activities/{id}/reservations" in routes
        assert "/api/seckill/reservations/{id}" in routes
        results = {
            s.labels["result"]: s.value
            for s in found["seckill_reservations"].samples
            if s.name.endswith("_total")
        }
        assert results == {"reserved": 3.0, "sold_out": 2.0}
    finally:
        await ops.close()
        await api.close()


async def test_order_metrics_follow_the_conventions_and_carry_no_ids(
    settings: Settings,
    token: Token,
    redis: Redis,
    db: asyncpg.Connection,
    seckill: TestClient[Any, Any],
) -> None:
    from services.order.app import create_app, create_ops

    fast = dataclasses.replace(settings, metrics_refresh_seconds=0.1)
    api = await started_client(create_app(fast))
    ops = await started_client(create_ops(api.app))
    try:
        activity = await create_activity(seckill, token("ops", admin=True), stock=4)
        url = f"/api/seckill/activities/{activity['id']}/reservations"
        await asyncio.gather(*(seckill.post(url, headers=token(f"u{i}")) for i in range(4)))
        async with running_relay(redis, fast):
            count = "SELECT count(*) FROM orders.orders WHERE activity_id=$1"
            assert await wait_for(lambda: db.fetchval(count, activity["id"]), 4) == 4
        orders = await (await api.get("/api/orders", headers=token("u1"))).json()
        await api.get(f"/api/orders/{orders['orders'][0]['id']}", headers=token("u1"))

        async def pending() -> Any:
            found = families(await scrape(ops))
            by_state = {s.labels["state"]: s.value for s in found["order_orders"].samples}
            lag = [s for s in found["kafka_consumer_lag"].samples]
            dlq = [s for s in found["kafka_dlq_messages"].samples]
            return by_state.get("pending_payment"), bool(lag), bool(dlq)

        assert await wait_for(pending, (4.0, True, True)) == (4.0, True, True)
        found = families(await scrape(ops))
        check_conventions(found, ORDER)
        assert len([b for b in latency_buckets(found) if b < 0.01]) >= 4
        routes = {s.labels["route"] for s in found["http_requests"].samples}
        assert "/api/orders/{id}" in routes
        partitions = {s.labels["partition"] for s in found["kafka_consumer_lag"].samples}
        assert partitions <= {"0", "1"}
        assert all(s.value == 0 for s in found["kafka_consumer_lag"].samples)
        dlq = {s.labels["topic"]: s.value for s in found["kafka_dlq_messages"].samples}
        assert dlq == {
            fast.topic("seckill.reservations.dlq"): 0.0,
            fast.topic("orders.dlq"): 0.0,
            fast.topic("groupbuy.dlq"): 0.0,
            fast.topic("coupons.dlq"): 0.0,
        }
    finally:
        await ops.close()
        await api.close()


async def test_notify_metrics_follow_the_conventions_and_carry_no_ids(
    settings: Settings, token: Token
) -> None:
    from services.common.kafka import publish_all, start_producer
    from services.notify.app import create_app, create_ops
    from tests.notify_helpers import notify_settings, order_paid, user_registered
    from tools.fake_wechat import running_fake_wechat

    async with running_fake_wechat() as fake:
        s = notify_settings(settings, fake, metrics_refresh_seconds=0.1)
        api = await started_client(create_app(s))
        ops = await started_client(create_ops(api.app))
        try:
            resp = await api.post(
                "/api/notify/subscriptions", json={"template": "order_paid"}, headers=token("u1")
            )
            assert resp.status == 201
            producer = await start_producer(s)
            try:
                await publish_all(producer, s.topic("users"), [user_registered("u1", fake.appid)])
                events = [order_paid(1, "u1"), order_paid(2, "u2"), order_paid(1, "u1")]
                await publish_all(producer, s.topic("orders"), events)
            finally:
                await producer.stop()

            async def delivered() -> Any:
                found = families(await scrape(ops))
                sent = {s.labels["state"]: s.value for s in found["notify_deliveries"].samples}
                dlq = [s for s in found["kafka_dlq_messages"].samples]
                return sent.get("sent"), sent.get("skipped"), bool(dlq)

            assert await wait_for(delivered, (1.0, 1.0, True)) == (1.0, 1.0, True)
            found = families(await scrape(ops))
            check_conventions(found, NOTIFY)
            messages = {
                (s.labels["template"], s.labels["channel"], s.labels["result"]): s.value
                for s in found["notify_messages"].samples
                if s.name.endswith("_total")
            }
            assert messages == {("order_paid", "http", "sent"): 1.0}
            no_consent = [
                s.value for s in found["notify_no_consent"].samples if s.name.endswith("_total")
            ]
            assert no_consent == [1.0]
            latency = found["notify_delivery_latency_seconds"].samples
            assert any(s.name.endswith("_count") and s.value == 1 for s in latency)
            dlq = {s.labels["topic"] for s in found["kafka_dlq_messages"].samples}
            assert s.topic("notify.dlq") in dlq
        finally:
            await ops.close()
            await api.close()


async def test_groupbuy_metrics_follow_the_conventions_and_carry_no_ids(
    settings: Settings, token: Token, redis: Redis, db: asyncpg.Connection
) -> None:
    from services.groupbuy.app import create_app, create_ops
    from tests.helpers import create_campaign

    api = await started_client(create_app(settings, run_consumers=False))
    ops = await started_client(create_ops(api.app))
    try:
        campaign = await create_campaign(api, token("ops", admin=True), group_size=2, stock=2)
        resp = await api.post(
            f"/api/groupbuy/campaigns/{campaign['id']}/groups", headers=token("u1")
        )
        gid = (await resp.json())["id"]
        for user in ("u1", "u2", "u3"):
            await api.post(f"/api/groupbuy/groups/{gid}/join", headers=token(user))
        await api.post(f"/api/groupbuy/campaigns/{campaign['id']}/groups", headers=token("u4"))
        await api.get(f"/api/groupbuy/groups/{gid}", headers=token("u1"))
        await wait_for(lambda: redis.xlen(f"gb:{{c{campaign['id']}}}:outbox"), 0)
        found = families(await scrape(ops))
        check_conventions(found, GROUPBUY)
        joins = {
            s.labels["result"]: s.value
            for s in found["groupbuy_joins"].samples
            if s.name.endswith("_total")
        }
        assert joins == {"already_member": 1.0, "joined": 1.0, "full": 1.0}
        completed = {
            s.labels["how"]: s.value
            for s in found["groupbuy_groups_completed"].samples
            if s.name.endswith("_total")
        }
        assert completed == {"full": 1.0, "virtual": 0.0}
        opened = found["groupbuy_groups_opened"].samples
        assert [s.value for s in opened if s.name.endswith("_total")] == [1.0]
        refused = {
            s.labels["result"]: s.value
            for s in found["groupbuy_open_refusals"].samples
            if s.name.endswith("_total")
        }
        assert refused == {"sold_out": 1.0}
        times = found["groupbuy_time_to_complete_seconds"].samples
        assert [s.value for s in times if s.name.endswith("_count")] == [1.0]
        routes = {s.labels["route"] for s in found["http_requests"].samples}
        assert "/api/groupbuy/groups/{id}/join" in routes
    finally:
        await ops.close()
        await api.close()


async def test_coupon_metrics_follow_the_conventions_and_carry_no_ids(
    settings: Settings, token: Token, db: asyncpg.Connection
) -> None:
    from services.coupon.app import create_app, create_ops
    from tests.helpers import create_template

    fast = dataclasses.replace(settings, metrics_refresh_seconds=0.1)
    api = await started_client(create_app(fast))
    ops = await started_client(create_ops(api.app))
    try:
        template = await create_template(api, token("ops", admin=True), quantity=2)
        url = f"/api/coupons/templates/{template['id']}/claims"
        statuses = [(await api.post(url, headers=token(f"u{i}"))).status for i in range(3)]
        assert statuses == [201, 201, 410]
        keyed = {**token("u0"), "Idempotency-Key": "k"}
        assert (await api.post(url, headers=keyed)).status == 409
        assert (await api.post(url, headers=keyed)).status == 409
        await api.get("/api/coupons", headers=token("u1"))
        count = "SELECT count(*) FROM coupon.coupons"
        assert await wait_for(lambda: db.fetchval(count), 2) == 2

        async def gauges() -> Any:
            found = families(await scrape(ops))
            left = [(s.labels, s.value) for s in found["coupon_remaining"].samples]
            recorded = [s.value for s in found["coupon_coupons_recorded"].samples]
            return left, recorded[:1]

        expected = ([({"template": str(template["id"])}, 0.0)], [2.0])
        assert await wait_for(gauges, expected) == expected
        found = families(await scrape(ops))
        check_conventions(found, COUPON)
        results = {
            s.labels["result"]: s.value
            for s in found["coupon_claims"].samples
            if s.name.endswith("_total")
        }
        assert results == {
            "claimed": 2.0,
            "exhausted": 1.0,
            "limit_reached": 1.0,
            "not_found": 0.0,
            "not_started": 0.0,
            "claim_ended": 0.0,
            "rate_limited": 0.0,
            "outcome_unknown": 0.0,
            "redis_unavailable": 0.0,
        }
        # The lifecycle's results exist at 0 before the first grant or redemption.
        for name, results in (
            ("coupon_grants", ("granted", "exhausted", "duplicate")),
            ("coupon_redemptions", ("locked", "used", "released", "revoked", "refused")),
        ):
            values = {
                s.labels["result"]: s.value
                for s in found[name].samples
                if s.name.endswith("_total")
            }
            assert values == dict.fromkeys(results, 0.0), name
        replays = [s.value for s in found["coupon_idempotent_replays"].samples]
        assert replays[:1] == [1.0]
        routes = {s.labels["route"] for s in found["http_requests"].samples}
        assert "/api/coupons/templates/{id}/claims" in routes
    finally:
        await ops.close()
        await api.close()
