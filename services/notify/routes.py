"""HTTP views of the notify service: parse, call, map."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from aiohttp import web

from services.common.auth import OPERATOR_ROLE, VIEWER_ROLE
from services.common.events import rfc3339
from services.common.http import json_response, principal, read_json_object, require_role
from services.notify.domain import (
    deliveries_view,
    parse_list_limit,
    parse_provider_template_id,
    parse_subscription,
    provider_template_id,
    template_entry,
    template_kind,
    templates_view,
)
from services.notify.repository import NotifyRepository, SubscriptionRow
from services.notify.templates import TemplateIds

REPO: web.AppKey[NotifyRepository] = web.AppKey("notify_repo", NotifyRepository)
TEMPLATE_IDS: web.AppKey[TemplateIds] = web.AppKey("template_ids", TemplateIds)


def subscription_view(row: SubscriptionRow) -> dict[str, Any]:
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


# --- the merchant console (docs/admin-api.md, "Notifications") ------------------------


async def admin_templates(request: web.Request) -> web.Response:
    require_role(request, VIEWER_ROLE)
    stored = await request.app[REPO].stored_templates()
    return json_response(templates_view(request.app[TEMPLATE_IDS].defaults, stored))


async def admin_set_template(request: web.Request) -> web.Response:
    who = require_role(request, OPERATOR_ROLE)
    kind = template_kind(request.match_info["kind"])
    provider_id = parse_provider_template_id(await read_json_object(request))
    templates = request.app[TEMPLATE_IDS]
    stored = await request.app[REPO].set_template(
        kind, provider_id, who.user_id, provider_template_id(templates.defaults, kind)
    )
    templates.forget()
    return json_response(template_entry(kind, templates.defaults, stored))


async def admin_deliveries(request: web.Request) -> web.Response:
    require_role(request, VIEWER_ROLE)
    return json_response(deliveries_view(await request.app[REPO].count_by_template_and_state()))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/notify/admin/templates", admin_templates)
    app.router.add_put("/api/notify/admin/templates/{kind}", admin_set_template)
    app.router.add_get("/api/notify/admin/deliveries", admin_deliveries)
    app.router.add_post("/api/notify/subscriptions", subscribe)
    app.router.add_get("/api/notify/messages", list_messages)
