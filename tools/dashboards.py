"""Grafana dashboards as code: `python -m tools.deploy generate` writes them as JSON to
deploy/grafana/dashboards/, where Grafana's file provisioning (or the Kubernetes
ConfigMap built from them) loads them.

A board per service plus an overview for a live sale. A new service is a function that
returns its panels and one line in dashboards(); every query uses only metric names that
tests/integration/test_metrics_names.py checks the services export.

Gauges read from shared state (stock and outbox backlogs in Redis, rows in PostgreSQL,
DLQ offsets in Kafka) are exported alike by every replica that reads them: two seckill
workers export the same stock. They are aggregated with max (per activity, state,
topic), never sum; counters are summed. No query names a job for the seckill relay and
gauges: they come from seckill-worker, or from seckill when it runs them itself.
"""

from __future__ import annotations

from typing import Any

Panel = dict[str, Any]
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
HOT_ROUTE = 'route="/api/seckill/activities/{id}/reservations"'


def _target(expr: str, legend: str, ref: int) -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(65 + ref)}


def timeseries(title: str, queries: list[tuple[str, str]], unit: str = "short") -> Panel:
    return {
        "type": "timeseries",
        "title": title,
        "datasource": DS,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom"}},
        "targets": [_target(e, legend, i) for i, (e, legend) in enumerate(queries)],
    }


def stat(title: str, expr: str, unit: str = "short", legend: str = "") -> Panel:
    return {
        "type": "stat",
        "title": title,
        "datasource": DS,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"},
        "targets": [_target(expr, legend, 0)],
    }


def red_panels(job: str) -> list[Panel]:
    """Rate, errors, duration per route of one service."""
    sel = f'job="{job}"'
    return [
        timeseries(
            "Requests/s by route",
            [(f"sum by (route) (rate(http_requests_total{{{sel}}}[{RATE}]))", "{{route}}")],
            "reqps",
        ),
        timeseries(
            "Error ratio by route (5xx)",
            [
                (
                    f'sum by (route) (rate(http_requests_total{{{sel},status=~"5.."}}[{RATE}]))'
                    f" / sum by (route) (rate(http_requests_total{{{sel}}}[{RATE}]))",
                    "{{route}}",
                )
            ],
            "percentunit",
        ),
        timeseries(
            "Responses/s by status",
            [(f"sum by (status) (rate(http_requests_total{{{sel}}}[{RATE}]))", "{{status}}")],
            "reqps",
        ),
        timeseries(
            "Latency p50 / p99 by route",
            [
                (
                    f"histogram_quantile({q}, sum by (route, le) "
                    f"(rate(http_request_duration_seconds_bucket{{{sel}}}[{RATE}])))",
                    f"p{int(q * 100)} {{{{route}}}}",
                )
                for q in (0.5, 0.99)
            ],
            "s",
        ),
    ]


def consumer_panels(job: str) -> list[Panel]:
    sel = f'job="{job}"'
    return [
        timeseries(
            "Consumer lag by group and partition",
            [
                (
                    f"sum by (topic, group, partition) (kafka_consumer_lag{{{sel}}})",
                    "{{group}} {{topic}}/{{partition}}",
                )
            ],
        ),
        timeseries(
            "Messages handled/s by result",
            [
                (
                    "sum by (topic, result) "
                    f"(rate(kafka_consumer_messages_total{{{sel}}}[{RATE}]))",
                    "{{topic}} {{result}}",
                ),
                (
                    f"sum by (topic) (rate(kafka_consumer_retries_total{{{sel}}}[{RATE}]))",
                    "{{topic}} retries",
                ),
            ],
            "ops",
        ),
        timeseries(
            "Dead-letter topic sizes",
            [(f"max by (topic) (kafka_dlq_messages{{{sel}}})", "{{topic}}")],
        ),
    ]


def stream_outbox_panel(prefix: str) -> Panel:
    """A Redis stream outbox relay's <prefix>_outbox_* (services/common/stream_outbox.py,
    RelayMetrics): the backlog every replica reads alike (max), its counters (summed)."""
    return timeseries(
        "Outbox: backlog, published/s, failures/s, reclaimed/s",
        [
            (f"max({prefix}_outbox_backlog)", "backlog"),
            (f"sum(rate({prefix}_outbox_published_total[{RATE}]))", "published/s"),
            (f"sum(rate({prefix}_outbox_publish_failures_total[{RATE}]))", "failed rounds/s"),
            (f"sum(rate({prefix}_outbox_reclaimed_total[{RATE}]))", "reclaimed/s"),
        ],
    )


def overview() -> list[Panel]:
    return [
        stat(
            "Requests/s (all services)",
            f"sum(rate(http_requests_total[{RATE}]))",
            "reqps",
        ),
        stat(
            "5xx ratio",
            f'sum(rate(http_requests_total{{status=~"5.."}}[{RATE}]))'
            f" / sum(rate(http_requests_total[{RATE}]))",
            "percentunit",
        ),
        stat(
            "Reservation p99",
            "histogram_quantile(0.99, sum by (le) "
            f"(rate(http_request_duration_seconds_bucket{{{HOT_ROUTE}}}[{RATE}])))",
            "s",
        ),
        stat(
            "Stock left (live activities)",
            "sum(max by (activity) (seckill_activity_stock_remaining))",
        ),
        stat("DLQ messages", "sum(max by (topic) (kafka_dlq_messages)) or vector(0)"),
        stat("Reconciliation mismatches", "sum(reconciliation_mismatches) or vector(0)"),
        timeseries(
            "Requests/s by service",
            [(f"sum by (job) (rate(http_requests_total[{RATE}]))", "{{job}}")],
            "reqps",
        ),
        timeseries(
            "Responses/s by status",
            [(f"sum by (status) (rate(http_requests_total[{RATE}]))", "{{status}}")],
            "reqps",
        ),
        timeseries(
            "Latency p99 by service",
            [
                (
                    "histogram_quantile(0.99, sum by (job, le) "
                    f"(rate(http_request_duration_seconds_bucket[{RATE}])))",
                    "{{job}}",
                ),
                (
                    "histogram_quantile(0.99, sum by (le) "
                    f"(rate(http_request_duration_seconds_bucket{{{HOT_ROUTE}}}[{RATE}])))",
                    "reservations",
                ),
            ],
            "s",
        ),
        timeseries(
            "Stock left per activity",
            [("max by (activity) (seckill_activity_stock_remaining)", "activity {{activity}}")],
        ),
        timeseries(
            "Reservations vs orders (cumulative)",
            [
                ('sum(seckill_reservations_total{result="reserved"})', "reserved"),
                ("sum(order_orders_created_total)", "orders created"),
            ],
        ),
        timeseries(
            "Reservation results/s",
            [(f"sum by (result) (rate(seckill_reservations_total[{RATE}]))", "{{result}}")],
            "ops",
        ),
        timeseries(
            "Pipeline lag",
            [
                ("sum by (group, topic) (kafka_consumer_lag)", "consumer {{group}} {{topic}}"),
                ("max(seckill_outbox_backlog)", "seckill outbox"),
                ("max(order_outbox_backlog)", "order outbox"),
                ("max(identity_outbox_backlog)", "identity outbox"),
                ("max(coupon_outbox_backlog)", "coupon outbox"),
            ],
        ),
        timeseries(
            "Outbox oldest unpublished event",
            [
                ("max(seckill_outbox_oldest_entry_age_seconds)", "seckill"),
                ("max(order_outbox_oldest_event_age_seconds)", "order"),
            ],
            "s",
        ),
        timeseries(
            "Event-loop lag, worst process per service (30 s)",
            [("max by (job) (event_loop_lag_seconds)", "{{job}}")],
            "s",
        ),
    ]


def seckill() -> list[Panel]:
    return [
        *red_panels("seckill"),
        timeseries(
            "Reservations/s by result",
            [(f"sum by (result) (rate(seckill_reservations_total[{RATE}]))", "{{result}}")],
            "ops",
        ),
        timeseries(
            "Sold-out answers without Redis/s",
            [(f"sum(rate(seckill_sold_out_short_circuit_total[{RATE}]))", "short-circuit")],
            "ops",
        ),
        timeseries(
            "Scripts per Redis round trip (p50 / p99)",
            [
                (
                    f"histogram_quantile({q}, sum by (le) "
                    f"(rate(seckill_reserve_batch_size_bucket[{RATE}])))",
                    f"p{int(q * 100)}",
                )
                for q in (0.5, 0.99)
            ],
        ),
        timeseries(
            "Stock left / initial per activity",
            [
                ("max by (activity) (seckill_activity_stock_remaining)", "left {{activity}}"),
                ("max by (activity) (seckill_activity_stock_initial)", "initial {{activity}}"),
            ],
        ),
        stream_outbox_panel("seckill"),
        timeseries(
            "Outbox relay lag",
            [
                ("max(seckill_outbox_oldest_entry_age_seconds)", "oldest unpublished"),
                (
                    "histogram_quantile(0.99, sum by (le) "
                    f"(rate(seckill_outbox_publish_delay_seconds_bucket[{RATE}])))",
                    "p99 script -> Kafka ack",
                ),
            ],
            "s",
        ),
        stat("Activities with lost Redis state", "max(seckill_activities_missing_redis_state)"),
    ]


def order() -> list[Panel]:
    return [
        *red_panels("order"),
        timeseries(
            "Orders created/s and duplicates/s",
            [
                (f"sum(rate(order_orders_created_total[{RATE}]))", "created"),
                (f"sum(rate(order_reservation_duplicates_total[{RATE}]))", "duplicates"),
            ],
            "ops",
        ),
        timeseries(
            "Reservation -> order latency (p50 / p99)",
            [
                (
                    f"histogram_quantile({q}, sum by (le) "
                    f"(rate(order_reservation_to_order_seconds_bucket[{RATE}])))",
                    f"p{int(q * 100)}",
                )
                for q in (0.5, 0.99)
            ],
            "s",
        ),
        timeseries("Orders by state", [("max by (state) (order_orders)", "{{state}}")]),
        timeseries(
            "Outbox: backlog, published/s, failures/s",
            [
                ("max(order_outbox_backlog)", "backlog"),
                (f"sum(rate(order_outbox_published_total[{RATE}]))", "published/s"),
                (f"sum(rate(order_outbox_publish_failures_total[{RATE}]))", "failed rounds/s"),
            ],
        ),
        timeseries(
            "Outbox oldest unpublished event",
            [("max(order_outbox_oldest_event_age_seconds)", "age")],
            "s",
        ),
        *consumer_panels("order"),
    ]


def notify() -> list[Panel]:
    return [
        *red_panels("notify"),
        timeseries(
            "Provider answers/s by result",
            [
                (
                    f"sum by (result) (rate(notify_messages_total[{RATE}]))",
                    "{{result}}",
                )
            ],
            "ops",
        ),
        timeseries(
            "Dropped by rule/s and retries/s",
            [
                (f"sum(rate(notify_no_consent_total[{RATE}]))", "no consent"),
                (f"sum(rate(notify_rate_limited_total[{RATE}]))", "rate limited"),
                (f"sum(rate(notify_retries_total[{RATE}]))", "retries"),
                (f"sum(rate(notify_resumed_sends_total[{RATE}]))", "resumed after crash"),
            ],
            "ops",
        ),
        timeseries(
            "Event -> delivered latency (p50 / p99)",
            [
                (
                    f"histogram_quantile({q}, sum by (le) "
                    f"(rate(notify_delivery_latency_seconds_bucket[{RATE}])))",
                    f"p{int(q * 100)}",
                )
                for q in (0.5, 0.99)
            ],
            "s",
        ),
        timeseries(
            "Deliveries by state",
            [("max by (state) (notify_deliveries)", "{{state}}")],
        ),
        timeseries(
            "Dead letters",
            [
                ('max(kafka_dlq_messages{topic=~".*notify.dlq"})', "notify.dlq size"),
                (f"sum(rate(notify_dead_lettered_total[{RATE}]))", "dead-lettered/s"),
            ],
        ),
        timeseries(
            "Recipients: openids learnt, messages waiting for one, given up",
            [
                (f"sum(rate(notify_recipients_registered_total[{RATE}]))", "registered/s"),
                (f"sum(rate(notify_waiting_for_recipient_total[{RATE}]))", "had to wait/s"),
                (f"sum(rate(notify_recipient_unknown_total[{RATE}]))", "recipient unknown/s"),
            ],
            "ops",
        ),
        timeseries(
            "access_token re-asks/s (no_new_token: identity's keeper is not renewing)",
            [
                (
                    f"sum by (result) (rate(notify_token_reasks_total[{RATE}]))",
                    "{{result}}",
                )
            ],
            "ops",
        ),
        *consumer_panels("notify"),
    ]


def groupbuy() -> list[Panel]:
    return [
        *red_panels("groupbuy"),
        timeseries(
            "Groups opened / completed / failed per second",
            [
                (f"sum(rate(groupbuy_groups_opened_total[{RATE}]))", "opened"),
                (
                    f"sum by (how) (rate(groupbuy_groups_completed_total[{RATE}]))",
                    "completed {{how}}",
                ),
                (f"sum(rate(groupbuy_groups_failed_total[{RATE}]))", "failed"),
            ],
            "ops",
        ),
        timeseries(
            "Groups by state (PostgreSQL record)",
            [("max by (state) (groupbuy_groups)", "{{state}}")],
        ),
        timeseries(
            "Joins/s and refused opens/s by result",
            [
                (f"sum by (result) (rate(groupbuy_joins_total[{RATE}]))", "join {{result}}"),
                (
                    f"sum by (result) (rate(groupbuy_open_refusals_total[{RATE}]))",
                    "open {{result}}",
                ),
            ],
            "ops",
        ),
        timeseries(
            "Time to complete a group (p50 / p90)",
            [
                (
                    f"histogram_quantile({q}, sum by (le) "
                    f"(rate(groupbuy_time_to_complete_seconds_bucket[{RATE}])))",
                    f"p{int(q * 100)}",
                )
                for q in (0.5, 0.9)
            ],
            "s",
        ),
        stream_outbox_panel("groupbuy"),
        timeseries(
            "Sweeper failures/s and units returned/s",
            [
                (f"sum(rate(groupbuy_sweeper_failures_total[{RATE}]))", "sweeper failures"),
                (
                    f"sum by (result) (rate(groupbuy_unit_returns_total[{RATE}]))",
                    "unit return {{result}}",
                ),
            ],
            "ops",
        ),
        # Lag and results; DLQ sizes are on the order board (it watches every DLQ topic).
        *consumer_panels("groupbuy")[:2],
    ]


def results_per_second(title: str, counter: str) -> Panel:
    """A counter labelled `result`, one line per result."""
    return timeseries(title, [(f"sum by (result) (rate({counter}[{RATE}]))", "{{result}}")], "ops")


# The coupon service's two consumer groups (docs/coupons.md).
COUPON_GROUPS = 'group=~"coupon-record|coupon-orders"'


def coupon() -> list[Panel]:
    """Claim rushes, grants after paid orders, redemptions on orders, the coupons left per
    live template, the relay to the coupons topic, and the two consumer groups (coupon-record
    on coupons, coupon-orders on orders) with their dead letters."""
    quantiles = (0.5, 0.99)
    return [
        stat("Claims/s", f"sum(rate(coupon_claims_total[{RATE}]))", "ops"),
        stat(
            "Claimed (share of claims)",
            f'sum(rate(coupon_claims_total{{result="claimed"}}[{RATE}]))'
            f" / sum(rate(coupon_claims_total[{RATE}]))",
            "percentunit",
        ),
        stat("Coupons left (live templates)", "sum(max by (template) (coupon_remaining))"),
        stat("Outbox backlog", "max(coupon_outbox_backlog)"),
        stat(
            "Consumer lag (both groups)",
            "sum(max by (topic, group, partition) "
            f"(kafka_consumer_lag{{{COUPON_GROUPS}}})) or vector(0)",
        ),
        stat(
            "coupons.dlq messages",
            'max(kafka_dlq_messages{topic=~".*coupons.dlq"}) or vector(0)',
        ),
        *red_panels("coupon"),
        results_per_second("Claims/s by result", "coupon_claims_total"),
        results_per_second("Grants/s by result (下单返券)", "coupon_grants_total"),
        results_per_second(
            "Redemptions/s by result (locked, used, released, refused)",
            "coupon_redemptions_total",
        ),
        timeseries(
            "Coupons left per live template",
            [("max by (template) (coupon_remaining)", "template {{template}}")],
        ),
        stream_outbox_panel("coupon"),
        timeseries(
            "Outbox publish delay, script -> Kafka ack (p50 / p99)",
            [
                (
                    f"histogram_quantile({q}, sum by (le) "
                    f"(rate(coupon_outbox_publish_delay_seconds_bucket[{RATE}])))",
                    f"p{int(q * 100)}",
                )
                for q in quantiles
            ],
            "s",
        ),
        timeseries(
            "Consumer lag per group: coupon-record (coupons), coupon-orders (orders)",
            [
                (
                    # max per partition first: a partition moving in a rebalance is
                    # briefly exported by two replicas.
                    "sum by (group, topic) (max by (group, topic, partition) "
                    f"(kafka_consumer_lag{{{COUPON_GROUPS}}}))",
                    "{{group}} {{topic}}",
                ),
                (
                    "sum by (consumergroup, topic) "
                    "(max by (consumergroup, topic, partition) "
                    '(kafka_consumergroup_lag{consumergroup=~"coupon-record|coupon-orders"}))',
                    "{{consumergroup}} {{topic}} (brokers' view)",
                ),
            ],
        ),
        *consumer_panels("coupon"),
    ]


def identity() -> list[Panel]:
    """Logins (shoppers and merchants), refresh tokens, the WeChat API identity calls, the
    platform access_token it keeps for notify, and its users outbox."""
    quantiles = (0.5, 0.99)
    shopper = 'kind="shopper"'
    return [
        stat("Logins/s", f"sum(rate(identity_logins_total[{RATE}]))", "ops"),
        stat(
            "Shopper logins failing at the provider",
            "sum(rate(identity_logins_total"
            f'{{{shopper},outcome=~"provider_unavailable|provider_error"}}[{RATE}]))'
            f" / sum(rate(identity_logins_total{{{shopper}}}[{RATE}]))",
            "percentunit",
        ),
        # One token for the platform: every replica reads the same one.
        stat("WeChat access_token seconds left", "max(identity_access_token_seconds_left)", "s"),
        stat(
            "Refresh tokens reused (1h)",
            'sum(increase(identity_refresh_total{outcome="reused"}[1h])) or vector(0)',
        ),
        stat("New users (1h)", "sum(increase(identity_users_registered_total[1h])) or vector(0)"),
        stat("Users outbox backlog", "max(identity_outbox_backlog)"),
        *red_panels("identity"),
        timeseries(
            "Logins/s by kind and outcome",
            [
                (
                    f"sum by (kind, outcome) (rate(identity_logins_total[{RATE}]))",
                    "{{kind}} {{outcome}}",
                ),
                (
                    f"sum(rate(identity_login_throttle_unavailable_total[{RATE}]))",
                    "let through unthrottled (Redis down)",
                ),
            ],
            "ops",
        ),
        timeseries(
            "Login latency p50 / p99 by kind",
            [
                (
                    f"histogram_quantile({q}, sum by (kind, le) "
                    f"(rate(identity_login_seconds_bucket[{RATE}])))",
                    f"p{int(q * 100)} {{{{kind}}}}",
                )
                for q in quantiles
            ],
            "s",
        ),
        timeseries(
            "WeChat API latency p50 / p99 by call",
            [
                (
                    f"histogram_quantile({q}, sum by (call, le) "
                    f"(rate(identity_provider_seconds_bucket[{RATE}])))",
                    f"p{int(q * 100)} {{{{call}}}}",
                )
                for q in quantiles
            ],
            "s",
        ),
        timeseries(
            "Shopper logins failing at the provider (share)",
            [
                (
                    'sum by (outcome) (rate(identity_logins_total{kind="shopper",'
                    f'outcome=~"provider_unavailable|provider_error"}}[{RATE}]))'
                    " / scalar(sum(rate("
                    f'identity_logins_total{{kind="shopper"}}[{RATE}])))',
                    "{{outcome}}",
                )
            ],
            "percentunit",
        ),
        timeseries(
            "Refreshes/s by outcome (reused: a stolen token's family revoked)",
            [
                (
                    f"sum by (outcome) (rate(identity_refresh_total[{RATE}]))",
                    "{{outcome}}",
                ),
                (f"sum(rate(identity_users_registered_total[{RATE}]))", "new users"),
            ],
            "ops",
        ),
        timeseries(
            "WeChat access_token: seconds left, fetches by outcome",
            [
                ("max(identity_access_token_seconds_left)", "seconds left"),
                (
                    f"sum by (outcome) (increase(identity_access_token_fetches_total[{RATE}]))",
                    "fetches {{outcome}}",
                ),
            ],
        ),
        timeseries(
            "Outbox (users): backlog, published/s, failures/s",
            [
                ("max(identity_outbox_backlog)", "backlog"),
                (f"sum(rate(identity_outbox_published_total[{RATE}]))", "published/s"),
                (
                    f"sum(rate(identity_outbox_publish_failures_total[{RATE}]))",
                    "failed rounds/s",
                ),
            ],
        ),
    ]


def infrastructure() -> list[Panel]:
    """Redis, Kafka and the gateway through their exporters (Kubernetes only: redis_exporter
    and nginx-prometheus-exporter sidecars, Strimzi's Kafka exporter; docs/deploy.md)."""
    return [
        timeseries(
            "Redis memory",
            [
                ("max by (instance) (redis_memory_used_bytes)", "used {{instance}}"),
                ("max by (instance) (redis_memory_max_bytes > 0)", "maxmemory {{instance}}"),
            ],
            "bytes",
        ),
        timeseries(
            "Redis commands/s",
            [
                (
                    f"sum by (instance) (rate(redis_commands_processed_total[{RATE}]))",
                    "{{instance}}",
                )
            ],
            "ops",
        ),
        timeseries(
            "Redis connected clients",
            [("max by (instance) (redis_connected_clients)", "{{instance}}")],
        ),
        timeseries(
            "Kafka consumer lag by group and topic (brokers' view)",
            [
                (
                    # max per partition first: one value even while a new exporter pod
                    # and the old one are both scraped.
                    "sum by (consumergroup, topic) "
                    "(max by (consumergroup, topic, partition) (kafka_consumergroup_lag))",
                    "{{consumergroup}} {{topic}}",
                )
            ],
        ),
        timeseries(
            "Gateway requests/s",
            [
                (f"sum(rate(nginx_http_requests_total[{RATE}]))", "all pods"),
                (f"sum by (instance) (rate(nginx_http_requests_total[{RATE}]))", "{{instance}}"),
            ],
            "reqps",
        ),
        timeseries(
            "Gateway connections",
            [
                ("sum(nginx_connections_active)", "active"),
                ("sum(nginx_connections_reading)", "reading"),
                ("sum(nginx_connections_writing)", "writing"),
                ("sum(nginx_connections_waiting)", "idle keep-alive"),
                (
                    f"sum(rate(nginx_connections_accepted[{RATE}]))"
                    f" - sum(rate(nginx_connections_handled[{RATE}]))",
                    "dropped/s",
                ),
            ],
        ),
    ]


def processes() -> list[Panel]:
    """Every process of every service, by job and instance: prometheus_client's process
    and GC collectors and the event-loop lag, which each ops port exports. The exporters
    (Go) export process_* too: `and on (...) event_loop_lag_seconds` keeps to our own."""
    by, legend = "job, instance", "{{job}} {{instance}}"
    ours = f"and on ({by}) event_loop_lag_seconds"
    return [
        timeseries(
            "Event-loop lag (worst in 30 s)",
            [(f"max by ({by}) (event_loop_lag_seconds)", legend)],
            "s",
        ),
        timeseries(
            "CPU (cores)",
            [(f"sum by ({by}) (rate(process_cpu_seconds_total[{RATE}]) {ours})", legend)],
        ),
        timeseries(
            "Resident memory",
            [(f"max by ({by}) (process_resident_memory_bytes {ours})", legend)],
            "bytes",
        ),
        timeseries(
            "Open file descriptors (share of the limit)",
            [(f"max by ({by}) (process_open_fds / process_max_fds {ours})", legend)],
            "percentunit",
        ),
        timeseries(
            "Garbage collections/s by generation",
            [
                (
                    f"sum by (job, generation) (rate(python_gc_collections_total[{RATE}]))",
                    "{{job}} generation {{generation}}",
                )
            ],
            "ops",
        ),
    ]


def board(uid: str, title: str, panels: list[Panel]) -> dict[str, Any]:
    """A dashboard: panels laid out two per row (stats six per row), ids in order."""
    x = y = 0
    row_height = 0
    laid: list[Panel] = []
    for i, panel in enumerate(panels, start=1):
        w, h = (4, 4) if panel["type"] == "stat" else (12, 8)
        if x + w > 24:
            x, y = 0, y + row_height
            row_height = 0
        laid.append({"id": i, "gridPos": {"x": x, "y": y, "w": w, "h": h}, **panel})
        x += w
        row_height = max(row_height, h)
    return {
        "uid": uid,
        "title": title,
        "tags": ["flashsale"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "5s",
        "time": {"from": "now-30m", "to": "now"},
        "timezone": "utc",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "links": [{"title": "Flash sale", "type": "dashboards", "tags": ["flashsale"]}],
        "panels": laid,
    }


def dashboards() -> dict[str, dict[str, Any]]:
    """File name (without .json) -> dashboard."""
    return {
        "flashsale-overview": board("flashsale-overview", "Flash sale: live overview", overview()),
        "flashsale-seckill": board("flashsale-seckill", "Flash sale: seckill service", seckill()),
        "flashsale-order": board("flashsale-order", "Flash sale: order service", order()),
        "flashsale-notify": board("flashsale-notify", "Flash sale: notify service", notify()),
        "flashsale-groupbuy": board(
            "flashsale-groupbuy", "Flash sale: groupbuy service", groupbuy()
        ),
        "flashsale-identity": board(
            "flashsale-identity", "Flash sale: identity service", identity()
        ),
        "flashsale-coupon": board("flashsale-coupon", "Flash sale: coupon service", coupon()),
        "flashsale-infrastructure": board(
            "flashsale-infrastructure", "Flash sale: Redis, Kafka, gateway", infrastructure()
        ),
        "flashsale-processes": board(
            "flashsale-processes", "Flash sale: processes (CPU, memory, event loop)", processes()
        ),
    }
