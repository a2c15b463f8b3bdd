"""HTTP views of the notify service: parse, call, map."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from aiohttp import web

from services.common.events import rfc3339
from services.common.http import json_response, principal, read_json_object
from services.notify.domain import parse_list_limit, parse_subscription
from services.notify.repository import NotifyRepository

REPO: web.AppKey[NotifyRepository] = web.AppKey("notify_repo", NotifyRepository)


def subscription_view(row: dict[str, Any]) -> dict[str, Any]:
    scope, _, scope_id = row["scope"].partition(":")
    return {
        "id": row["id"],
        "template": row["template"],
        "kind": row["kind"],
        "state": row["state"],
        "activity_id": int(scope_id) if scope == "activity" else None,
        "group_id": scope_id if scope == "group" else None,
        "created_at": rfc3339(row["created_at"]),
    }


def message_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "template": row["template"],
        "event_type": row["event_type"],
        "event_id": row["event_id"],
        "data": orjson.loads(row["data"]),
        "page": row["page"],
        "channel": row["channel"],
        "event_at": rfc3339(row["event_at"]),
        "sent_at": rfc3339(row["sent_at"]),
    }


async def subscribe(request: web.Request) -> web.Response:
    """The caller consents to a template, optionally for one activity or group."""
    body = await read_json_object(request)
    sub = parse_subscription(principal(request).user_id, body)
    row = await request.app[REPO].subscribe(sub)
    return json_response(subscription_view(row), status=201)


async def list_messages(request: web.Request) -> web.Response:
    limit = parse_list_limit(request.query.get("limit"))
    rows = await request.app[REPO].list_sent(principal(request).user_id, limit)
    return json_response({"messages": [message_view(r) for r in rows]})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/notify/subscriptions", subscribe)
    app.router.add_get("/api/notify/messages", list_messages)
