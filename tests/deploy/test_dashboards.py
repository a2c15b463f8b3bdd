"""The Grafana dashboards load through provisioning and query only metrics that exist."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from tests.integration.test_metrics_names import COUPON, GROUPBUY, IDENTITY, NOTIFY, ORDER, SECKILL
from tools.dashboards import dashboards, red_panels
from tools.deploy import DASHBOARDS_DIR, DEPLOY

# Exported by jobs outside the two services: the reconciliation job.
EXTERNAL = {"reconciliation_mismatches"}
# Exported by the exporters in Kubernetes (their own names, as of the pinned versions):
# redis_exporter, Strimzi's Kafka exporter, nginx-prometheus-exporter.
EXPORTERS = {
    "redis_memory_used_bytes",
    "redis_memory_max_bytes",
    "redis_commands_processed",
    "redis_connected_clients",
    "kafka_consumergroup_lag",
    "nginx_http_requests",
    "nginx_connections_active",
    "nginx_connections_reading",
    "nginx_connections_writing",
    "nginx_connections_waiting",
    "nginx_connections_accepted",
    "nginx_connections_handled",
}
FUNCTIONS = {"histogram_quantile"}
# Gauges every replica reads from the same Redis, PostgreSQL or Kafka state and exports
# alike: summed over two replicas they count everything twice.
SHARED_STATE_GAUGES = {
    "seckill_activity_stock_remaining",
    "seckill_activity_stock_initial",
    "seckill_activities_missing_redis_state",
    "seckill_outbox_backlog",
    "seckill_outbox_oldest_entry_age_seconds",
    "order_outbox_backlog",
    "order_outbox_oldest_event_age_seconds",
    "order_orders",
    "groupbuy_outbox_backlog",
    "groupbuy_groups",
    "notify_deliveries",
    "identity_outbox_backlog",
    "identity_access_token_seconds_left",
    "coupon_remaining",
    "coupon_outbox_backlog",
    "kafka_dlq_messages",
    "kafka_consumergroup_lag",
}
MAX_OF = r"\bmax(?:\s*by\s*\([\w,\s]*\))?\s*\(\s*"  # max(, max by (a, b) (


def queried_metrics(expr: str) -> set[str]:
    # Label values ("provider_unavailable") are no metric names.
    expr = re.sub(r'"[^"]*"', '""', expr)
    names = set(re.findall(r"(?<![\w$])([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\b", expr)) - FUNCTIONS
    return {re.sub(r"_(bucket|sum|count|total)$", "", n) for n in names}


def test_every_query_uses_a_metric_a_service_exports() -> None:
    known = set(SECKILL) | set(ORDER) | set(GROUPBUY) | set(NOTIFY) | set(IDENTITY) | set(COUPON)
    known |= EXTERNAL | EXPORTERS
    for name, board in dashboards().items():
        for panel in board["panels"]:
            for target in panel["targets"]:
                unknown = queried_metrics(target["expr"]) - known
                assert unknown == set(), f"{name}/{panel['title']}: {unknown}"


def test_gauges_of_shared_state_are_taken_once_never_added_up_over_replicas() -> None:
    for name, board in dashboards().items():
        for panel in board["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                for gauge in SHARED_STATE_GAUGES:
                    uses = re.findall(rf"\b{gauge}\b", expr)
                    under_max = re.findall(rf"{MAX_OF}{gauge}\b", expr)
                    assert len(uses) == len(under_max), f"{name}/{panel['title']}: {expr}"


def test_the_overview_shows_what_a_live_sale_needs() -> None:
    titles = " | ".join(p["title"] for p in dashboards()["flashsale-overview"]["panels"])
    for wanted in ("Requests/s", "5xx", "p99", "Stock left", "Reservations vs orders", "lag"):
        assert wanted in titles


def test_the_json_files_are_valid_dashboards_with_unique_uids_and_panel_ids() -> None:
    files = sorted(DASHBOARDS_DIR.glob("*.json"))
    assert [f.stem for f in files] == sorted(dashboards())
    uids = set()
    for path in files:
        board = json.loads(path.read_text())
        uids.add(board["uid"])
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}"
            assert (
                0 <= panel["gridPos"]["x"] and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
            )
    assert len(uids) == len(files)


def test_provisioning_files_point_at_the_dashboards() -> None:
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/flashsale.yaml").read_text()
    )
    assert provider["providers"][0]["type"] == "file"
    kustomization = yaml.safe_load((DEPLOY / "grafana/kustomization.yaml").read_text())
    listed = {f.split("/")[-1] for f in kustomization["configMapGenerator"][0]["files"]}
    assert listed == {p.name for p in DASHBOARDS_DIR.glob("*.json")}


def service_board(job: str, exported: dict[str, set[str]]) -> tuple[dict[str, Any], str]:
    """A service's board, checked to query every metric of the service's own (named
    <job>_...) and to show its RED panels in order; with all its queries in one string."""
    board = dashboards()[f"flashsale-{job}"]
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    for metric in exported:
        if metric.startswith(f"{job}_"):
            assert metric in exprs, metric
    titles = [p["title"] for p in board["panels"]]
    red = [p["title"] for p in red_panels(job)]
    assert [title for title in titles if title in red] == red
    assert f'http_requests_total{{job="{job}"}}' in exprs
    return board, exprs


def test_the_identity_board_shows_logins_tokens_and_the_users_outbox() -> None:
    board, _ = service_board("identity", IDENTITY)
    assert "WeChat access_token seconds left" in [p["title"] for p in board["panels"]]


def test_the_coupon_board_shows_the_rush_grants_redemptions_relay_and_both_groups() -> None:
    board, exprs = service_board("coupon", COUPON)
    titles = [p["title"] for p in board["panels"]]
    for wanted in ("Claims/s by result", "Grants/s by result", "Redemptions/s by result"):
        assert any(title.startswith(wanted) for title in titles), wanted
    assert "Coupons left per live template" in titles
    (lag,) = [p for p in board["panels"] if p["title"].startswith("Consumer lag per group")]
    lag_exprs = " ".join(t["expr"] for t in lag["targets"])
    assert 'group=~"coupon-record|coupon-orders"' in lag_exprs
    assert 'consumergroup=~"coupon-record|coupon-orders"' in lag_exprs
    assert "coupon_outbox_publish_delay_seconds_bucket" in exprs
    assert 'kafka_dlq_messages{topic=~".*coupons.dlq"}' in exprs
