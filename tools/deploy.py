"""Deployment artefacts generated from one source each, and the local gateway/Prometheus
configs of `make up`.

    python -m tools.deploy generate   # rewrite the generated files under deploy/
    python -m tools.deploy check      # exit 1 if a generated file is out of date

Generated (do not edit by hand; tests/deploy checks they are current):
- deploy/k8s/base/gateway/nginx.conf from deploy/gateway/nginx.conf.template
- deploy/k8s/base/gateway/openapi-{public,admin}.json from tools/openapi.py
- deploy/k8s/base/monitoring/prometheusrule.yaml from deploy/prometheus/rules/*.yml
- deploy/grafana/dashboards/*.json from tools/dashboards.py
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from services.common.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
NGINX_TEMPLATE = DEPLOY / "gateway" / "nginx.conf.template"
RULES_DIR = DEPLOY / "prometheus" / "rules"
K8S_GATEWAY_CONF = DEPLOY / "k8s" / "base" / "gateway" / "nginx.conf"
K8S_PROMETHEUS_RULE = DEPLOY / "k8s" / "base" / "monitoring" / "prometheusrule.yaml"
DASHBOARDS_DIR = DEPLOY / "grafana" / "dashboards"


@dataclass(frozen=True, slots=True)
class GatewayValues:
    # host:port (or port) of the public server and of the admin server.
    listen: str
    admin_listen: str
    seckill_upstream: str
    order_upstream: str
    groupbuy_upstream: str
    coupon_upstream: str
    notify_upstream: str
    identity_upstream: str
    console_upstream: str
    rate_per_second: int
    burst: int
    login_rate_per_minute: int
    login_burst: int
    exempt_cidrs: Sequence[str]
    max_body_bytes: int
    pid_path: str
    error_log: str
    access_log: str
    temp_dir: str
    # Where the gateway's OpenAPI documents lie (write_gateway_openapi).
    openapi_dir: str
    worker_processes: str = "auto"
    # The `user` of the worker processes; empty: nginx's default (the master's own user,
    # or nobody under a root master).
    worker_user: str = ""
    # host:port of nginx's stub_status, which the metrics exporter beside it reads; empty:
    # none (the local gateway of `make up` has no exporter).
    status_listen: str = ""


# nginx's connection and request counters for the exporter beside it, on a listener of
# their own (in Kubernetes, the pod's loopback): the public server never answers them.
STATUS_SERVER = """    server {
        listen {{status_listen}};
        access_log off;
        location = /stub_status { stub_status; }
        location / { return 404 '{"error":"not_found","message":"no such route"}'; }
    }"""


# The error answers of both servers, as JSON {"error", "message"} like the services' own.
# Two kinds, for a reason:
# - nginx's own refusals of a request it could not parse or accept (a bad request line, a
#   NUL in the path, a header too large, a body too slow) go to an internal location by
#   URI. A named location cannot answer them: for a request line that failed to parse,
#   nginx has no URI to redirect with and answers its own HTML 500 instead ("empty URI
#   in redirect to named location").
# - the answers about a request that was routed (413, 429, 502-504) stay named locations,
#   which keep the request's $uri: the login routes' Retry-After is looked up by it.
# `=<code>` makes the status the one in the table: 494 (headers too large) leaves as 431,
# which nginx 1.22 sends without a reason phrase, as RFC 9112 allows.
ERROR_PREFIX = "/__errors/"
PARSE_ERRORS: tuple[tuple[int, int, str, str], ...] = (
    # (nginx's code, status sent, error, message)
    (400, 400, "bad_request", "the request is not valid HTTP"),
    (404, 404, "not_found", "no such route"),
    (405, 405, "method_not_allowed", "the method is not allowed here"),
    # nginx closes a connection whose headers or body time out without answering; the
    # page is for any 408 it does send.
    (408, 408, "request_timeout", "the request did not arrive in time"),
    (411, 411, "length_required", "send the body with a Content-Length"),
    (414, 414, "uri_too_long", "the request line is too long"),
    (494, 431, "request_header_fields_too_large", "the request headers are too large"),
    (500, 500, "internal", "internal error"),
    (501, 501, "not_implemented", "the request uses an unsupported transfer encoding"),
    (505, 505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served"),
)
NAMED_ERRORS = """        location @payload_too_large {
            return 413 '{"error":"payload_too_large","message":"body exceeds {{max_body_bytes}} bytes"}';
        }
        location @rate_limited {
            add_header Retry-After $flashsale_retry_after always;
            return 429 '{"error":"rate_limited","message":"too many requests from this address"}';
        }
        location @unavailable {
            add_header Retry-After 1 always;
            return 503 $flashsale_unavailable;
        }"""  # noqa: E501 (nginx's lines, as they are rendered)


def _error_pages() -> str:
    """The error_page directives of the http block (both servers inherit them)."""
    lines = [
        f"    error_page {code} ={status} {ERROR_PREFIX}{status};"
        for code, status, _, _ in PARSE_ERRORS
    ]
    lines += [
        "    error_page 413 = @payload_too_large;",
        "    error_page 429 = @rate_limited;",
        "    error_page 502 503 504 = @unavailable;",
    ]
    return "\n".join(lines)


def _error_locations(max_body_bytes: int) -> str:
    """The locations answering them, in each server (locations belong to a server)."""
    pages = [
        f"        location = {ERROR_PREFIX}{status} {{ internal; return {status} "
        f"'{json.dumps({'error': error, 'message': message}, separators=(',', ':'))}'; }}"
        for _, status, error, message in PARSE_ERRORS
    ]
    named = NAMED_ERRORS.replace("{{max_body_bytes}}", str(max_body_bytes))
    return "\n".join([*pages, named])


# The admin server's live figure streams: unbuffered, and a read timeout between two events
# (sent every 0.25 s) with room for a slow reading.
LIVE_STREAM = """                proxy_buffering off;
                proxy_read_timeout 60s;"""

LOGIN_ROUTES = ("/api/auth/login", "/api/auth/refresh", "/api/auth/admin/login")


def _limit_req(zone: str, burst: int) -> str:
    # nginx refuses burst=0: no burst is written as none.
    return f"limit_req zone={zone}{f' burst={burst}' if burst > 0 else ''} nodelay;"


def _rate_limits(v: GatewayValues) -> dict[str, str]:
    """The limit_req zones and directives: per IP on every route, and the stricter login
    one on the login routes, each off at rate 0."""
    zones, server, login = [], "        # no per-IP limit (rate 0)", []
    if v.rate_per_second > 0:
        zones.append(
            f"    limit_req_zone $flashsale_rate_key zone=per_ip:10m rate={v.rate_per_second}r/s;"
        )
        server = f"        {_limit_req('per_ip', v.burst)}"
        # A location with a limit_req of its own inherits none from its server.
        login.append(f"            {_limit_req('per_ip', v.burst)}")
    retry_after = ""
    if v.login_rate_per_minute > 0:
        zones.append(
            "    limit_req_zone $flashsale_rate_key zone=login_per_ip:10m "
            f"rate={v.login_rate_per_minute}r/m;"
        )
        login.append(f"            {_limit_req('login_per_ip', v.login_burst)}")
        wait = math.ceil(60 / v.login_rate_per_minute)
        retry_after = "\n".join(f"        {route} {wait};" for route in LOGIN_ROUTES)
    else:
        # No limit_req here: the location inherits the server's per-IP one.
        login = ["            # no login limit (rate 0)"]
    return dict(
        limit_req_zone="\n".join(zones) or "    # per-IP rate limits off (rate 0)",
        limit_req=server,
        login_limit_req="\n".join(login),
        login_retry_after=retry_after,
    )


def render_nginx_conf(v: GatewayValues) -> str:
    exempt = "\n".join(f"        {cidr} 1;" for cidr in v.exempt_cidrs)
    status = "    # no stub_status server (no metrics exporter)"
    if v.status_listen:
        status = STATUS_SERVER.replace("{{status_listen}}", v.status_listen)
    user = f"user {v.worker_user};" if v.worker_user else "# workers run as nginx's default user"
    values = dict(
        worker_user=user,
        worker_processes=v.worker_processes,
        pid_path=v.pid_path,
        error_log=v.error_log,
        access_log=v.access_log,
        temp_dir=v.temp_dir,
        openapi_dir=v.openapi_dir,
        max_body_bytes=str(v.max_body_bytes),
        exempt_cidrs=exempt,
        **_rate_limits(v),
        seckill_upstream=v.seckill_upstream,
        order_upstream=v.order_upstream,
        groupbuy_upstream=v.groupbuy_upstream,
        coupon_upstream=v.coupon_upstream,
        notify_upstream=v.notify_upstream,
        identity_upstream=v.identity_upstream,
        console_upstream=v.console_upstream,
        live_stream=LIVE_STREAM,
        listen=v.listen,
        admin_listen=v.admin_listen,
        error_pages=_error_pages(),
        error_locations=_error_locations(v.max_body_bytes),
        status_server=status,
    )
    # {{name}} placeholders: nginx's own $variables stay untouched.
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], NGINX_TEMPLATE.read_text())


def write_gateway_openapi(directory: Path) -> None:
    """The OpenAPI documents the gateway serves (GatewayValues.openapi_dir)."""
    from tools.openapi import gateway_files

    for name, text in gateway_files().items():
        (directory / name).write_text(text)


def _host(host: str) -> str:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"[{host}]" if ":" in host else host


def local_gateway_values(s: Settings, run_dir: Path) -> GatewayValues:
    """The gateway of `make up`: the public server on GATEWAY_PORT, the admin one on
    ADMIN_GATEWAY_PORT of the loopback whatever HTTP_HOST says (operators on this machine
    only), in front of the local services."""
    return GatewayValues(
        listen=f"{_host(s.http_host)}:{s.gateway_port}",
        admin_listen=f"127.0.0.1:{s.admin_gateway_port}",
        seckill_upstream=f"{_host(s.http_host)}:{s.seckill_port}",
        order_upstream=f"{_host(s.http_host)}:{s.order_port}",
        groupbuy_upstream=f"{_host(s.http_host)}:{s.groupbuy_port}",
        coupon_upstream=f"{_host(s.http_host)}:{s.coupon_port}",
        notify_upstream=f"{_host(s.http_host)}:{s.notify_port}",
        identity_upstream=f"{_host(s.http_host)}:{s.identity_port}",
        console_upstream=f"{_host(s.http_host)}:{s.console_port}",
        rate_per_second=s.gateway_rate_limit_per_second,
        burst=s.gateway_rate_limit_burst,
        login_rate_per_minute=s.gateway_login_rate_limit_per_minute,
        login_burst=s.gateway_login_rate_limit_burst,
        exempt_cidrs=[c.strip() for c in s.gateway_rate_limit_exempt.split(",") if c.strip()],
        max_body_bytes=s.gateway_max_body_bytes,
        pid_path=str(run_dir / "nginx.pid"),
        error_log=str(run_dir / "error.log"),
        access_log=str(run_dir / "access.log"),
        temp_dir=str(run_dir / "tmp"),
        openapi_dir=str(run_dir),
        worker_processes="2",
        # Under a root master the workers would be nobody, who may not reach this
        # checkout's run directory (the OpenAPI documents it serves): they stay root, as
        # the master is, on this local gateway only.
        worker_user="root" if os.geteuid() == 0 else "",
    )


# Kubernetes: Services named after the services; a read-only root filesystem with /tmp as
# an emptyDir; logs to the container's stdout/stderr. The admin server's port is reached
# only through the ClusterIP Service gateway-admin (gateway/gateway.yaml), which the
# NetworkPolicies open to the pods that need it.
K8S_GATEWAY = GatewayValues(
    listen="8080",
    admin_listen="8088",
    seckill_upstream="seckill:8081",
    order_upstream="order:8082",
    groupbuy_upstream="groupbuy:8083",
    coupon_upstream="coupon:8091",
    notify_upstream="notify:8084",
    identity_upstream="identity:8086",
    console_upstream="console:8089",
    rate_per_second=Settings().gateway_rate_limit_per_second,
    burst=Settings().gateway_rate_limit_burst,
    login_rate_per_minute=Settings().gateway_login_rate_limit_per_minute,
    login_burst=Settings().gateway_login_rate_limit_burst,
    exempt_cidrs=(),
    max_body_bytes=Settings().gateway_max_body_bytes,
    pid_path="/tmp/nginx.pid",
    error_log="/dev/stderr",
    access_log="/dev/stdout",
    temp_dir="/tmp",
    # The gateway-nginx ConfigMap (kustomization.yaml) holds the documents too.
    openapi_dir="/etc/flashsale",
    # Read by the nginx-prometheus-exporter container of the gateway pod (gateway.yaml).
    status_listen="127.0.0.1:8090",
)


def local_prometheus_config(
    s: Settings, services: Iterable[tuple[str, str]], scrape_interval: str = "5s"
) -> str:
    """prometheus.yml for `make up PROMETHEUS=1`: scrapes every service's ops port, with
    job = service name (as the ServiceMonitors do), and loads the alert rules. `services`:
    (name, Settings attribute holding its ops port) pairs."""
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(RULES_DIR / "*.yml")],
        "scrape_configs": [
            {
                "job_name": name,
                "static_configs": [{"targets": [f"{_host(s.http_host)}:{getattr(s, attr)}"]}],
            }
            for name, attr in services
        ],
    }
    # str(): PyYAML has no type hints, its dump is Any to mypy.
    dumped = str(yaml.safe_dump(config, sort_keys=False))
    return "# generated by tools/deploy.py for `make up PROMETHEUS=1`\n" + dumped


def prometheus_rule_manifest() -> str:
    """The PrometheusRule (Prometheus Operator) holding every rule file's groups."""
    groups: list[object] = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    manifest = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "flashsale", "labels": {"app.kubernetes.io/part-of": "flashsale"}},
        "spec": {"groups": groups},
    }
    header = "# generated by `python -m tools.deploy generate` from deploy/prometheus/rules\n"
    return header + str(yaml.safe_dump(manifest, sort_keys=False, width=120))


def generated_files() -> dict[Path, str]:
    from tools.dashboards import dashboards
    from tools.openapi import gateway_files

    files = {
        K8S_GATEWAY_CONF: render_nginx_conf(K8S_GATEWAY),
        K8S_PROMETHEUS_RULE: prometheus_rule_manifest(),
    }
    for name, text in gateway_files().items():
        files[K8S_GATEWAY_CONF.parent / name] = text
    for name, board in dashboards().items():
        files[DASHBOARDS_DIR / f"{name}.json"] = json.dumps(board, indent=2) + "\n"
    return files


def stale_files() -> list[Path]:
    return [
        path
        for path, text in generated_files().items()
        if not path.exists() or path.read_text() != text
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.deploy", description=__doc__)
    parser.add_argument("command", choices=["generate", "check"])
    args = parser.parse_args(argv)
    if args.command == "generate":
        for path, text in generated_files().items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    stale = stale_files()
    for path in stale:
        print(f"out of date: {path.relative_to(ROOT)} (run python -m tools.deploy generate)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
