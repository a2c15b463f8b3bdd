"""Redis keys of the identity service (the shared access_token's keys are in
services/common/wechat_token.py)."""

from __future__ import annotations


def login_window(client_ip: str) -> str:
    # One tag per address: a Redis Cluster spreads the addresses over its slots.
    return "{id:ip:" + client_ip + "}:logins"
