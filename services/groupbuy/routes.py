"""HTTP views of the groupbuy service: parse, call, map. Rules live in domain.py."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from services.common.auth import OPERATOR_ROLE, VIEWER_ROLE
from services.common.errors import NotFound
from services.common.events import rfc3339
from services.common.http import (
    created_sale,
    json_response,
    principal,
    read_json_object,
    require_role,
)
from services.common.idempotency import (
    IDEMPOTENCY_KEY_HEADER,
    parse_idempotency_key,
    replay_headers,
    replayed_if,
)
from services.common.live import FiguresCache, stream_figures
from services.common.paging import choice_param, parse_page, unknown_params
from services.common.redis_faults import unanswered_change
from services.common.resources import REDIS_UNANSWERED as UNANSWERED
from services.common.sale_cache import SaleCache
from services.common.sales import SALE_STATES
from services.common.validation import parse_empty_body
from services.groupbuy.admin import CampaignAdmin
from services.groupbuy.domain import (
    Campaign,
    admin_view,
    campaign_of_group,
    campaign_view,
    group_view,
    join_metric_result,
    new_group_id,
    parse_campaign_id,
    parse_new_campaign,
    refusal,
)
from services.groupbuy.metrics import GroupbuyMetrics
from services.groupbuy.repository import CampaignRepository, GroupRecord
from services.groupbuy.store import GroupStore

log = logging.getLogger(__name__)


@dataclass
class Groupbuy:
    """What the views need, wired once in app.py."""

    campaigns: CampaignRepository
    groups: GroupRecord
    store: GroupStore
    metrics: GroupbuyMetrics
    # The shoppers' campaign page, for a second at most (services.common.sale_cache).
    cache: SaleCache[Campaign]
    admin: CampaignAdmin
    # One reading per campaign per interval, shared by the live boards and admin GETs.
    figures: FiguresCache[int]

    async def campaign(self, campaign_id: int | None) -> Campaign:
        found = None if campaign_id is None else await self.cache.get(campaign_id)
        if found is None:
            raise NotFound("campaign")
        return found


GROUPBUY: web.AppKey[Groupbuy] = web.AppKey("groupbuy", Groupbuy)


def _now() -> datetime:
    return datetime.now(UTC)


async def create_campaign(request: web.Request) -> web.Response:
    who = require_role(request, OPERATOR_ROLE)
    gb = request.app[GROUPBUY]
    new = parse_new_campaign(await read_json_object(request), _now())
    campaign = await gb.campaigns.create(new, who.user_id)
    gb.cache.put(campaign)
    return await created_sale(
        gb.store.warm_up(campaign),
        lambda: gb.campaigns.mark_warmed(campaign.id),
        campaign_view(campaign, campaign.stock, _now()),
        f"/api/groupbuy/campaigns/{campaign.id}",
    )


async def get_campaign(request: web.Request) -> web.Response:
    gb = request.app[GROUPBUY]
    campaign = await gb.campaign(parse_campaign_id(request.match_info["id"]))
    remaining = await gb.store.remaining(campaign.id)
    return json_response(campaign_view(campaign, remaining, _now()))


async def open_group(request: web.Request) -> web.Response:
    """One script: campaign live, per-user limit, a group's worth of stock."""
    gb = request.app[GROUPBUY]
    campaign_id = parse_campaign_id(request.match_info["id"])
    if campaign_id is None:
        raise NotFound("campaign")
    user = principal(request).user_id
    key = parse_idempotency_key(request.headers.getall(IDEMPOTENCY_KEY_HEADER, []))
    parse_empty_body(await read_json_object(request))
    group_id = new_group_id(campaign_id)
    try:
        outcome, opened, replayed = await gb.store.open_group(campaign_id, user, group_id, key)
    except UNANSWERED as exc:  # unless it did not run, the group card tells
        answer = unanswered_change(exc, f"/api/groupbuy/groups/{group_id}", group_id=group_id)
        gb.metrics.open_refused.labels(answer.code).inc()
        log.warning("opening group %s: %s: %r", group_id, answer.code, exc)
        raise answer from exc
    if replayed:
        gb.metrics.idempotent_replays.labels("open").inc()
    elif opened is None:
        gb.metrics.open_refused.labels(outcome.value).inc()
    else:
        gb.metrics.opened.inc()
    if opened is None:
        raise replayed_if(refusal(outcome, "campaign"), replayed)
    body = {
        "id": opened.group_id,
        "campaign_id": campaign_id,
        "state": "open",
        "position": 1,
        "deadline": rfc3339(datetime.fromtimestamp(opened.deadline_ms / 1000, UTC)),
    }
    return json_response(
        body, 201, replay_headers({"Location": f"/api/groupbuy/groups/{opened.group_id}"}, replayed)
    )


async def join_group(request: web.Request) -> web.Response:
    """One script: group open and not expired, not yet a member, a slot free; the join
    that fills the last slot completes the group."""
    gb = request.app[GROUPBUY]
    group_id = request.match_info["id"]
    user = principal(request).user_id
    key = parse_idempotency_key(request.headers.getall(IDEMPOTENCY_KEY_HEADER, []))
    parse_empty_body(await read_json_object(request))
    try:
        outcome, joined, replayed = await gb.store.join_group(group_id, user, key)
    except UNANSWERED as exc:  # unless it did not run, the group card lists members
        answer = unanswered_change(exc, f"/api/groupbuy/groups/{group_id}", group_id=group_id)
        gb.metrics.joins.labels(answer.code).inc()
        log.warning("joining group %s: %s: %r", group_id, answer.code, exc)
        raise answer from exc
    if replayed:
        gb.metrics.idempotent_replays.labels("join").inc()
    else:
        gb.metrics.joins.labels(join_metric_result(outcome)).inc()
    if joined is None:
        raise replayed_if(refusal(outcome), replayed)
    # opened_ms is set only for the join that completed the group, never for a replay.
    if joined.completed and joined.opened_ms is not None:
        gb.metrics.completed.labels("full").inc()
        gb.metrics.time_to_complete.observe(max(0.0, time.time() - joined.opened_ms / 1000))
    body = {
        "id": group_id,
        "campaign_id": campaign_of_group(group_id),
        "state": "completed" if joined.completed else "open",
        "position": joined.position,
        "slots_left": joined.size - joined.position,
    }
    return json_response(
        body, 201, replay_headers({"Location": f"/api/groupbuy/groups/{group_id}"}, replayed)
    )


async def get_group(request: web.Request) -> web.Response:
    """The share card. Redis is read first (live progress); PostgreSQL answers for a
    group whose Redis state is gone."""
    gb = request.app[GROUPBUY]
    group_id = request.match_info["id"]
    if campaign_of_group(group_id) is None:
        raise NotFound("group")
    who = principal(request)
    live = await gb.store.group(group_id)
    if live is not None:
        state, members = live
        return json_response(group_view(group_id, state, members, who.user_id, who.is_admin))
    recorded = await gb.groups.get(group_id)
    if recorded is None:
        raise NotFound("group")
    row, members = recorded
    state = {
        "state": row["state"],
        "size": str(row["size"]),
        "opened": str(int(row["opened_at"].timestamp() * 1000)),
        "deadline": str(int(row["deadline"].timestamp() * 1000)),
        "how": row["completion"] or "",
    }
    return json_response(group_view(group_id, state, members, who.user_id, who.is_admin))


# --- the merchant console (docs/admin-api.md) ------------------------------------------

LIST_PARAMS = ("state", "limit", "offset")


def _admin_campaign_id(request: web.Request) -> int:
    campaign_id = parse_campaign_id(request.match_info["id"])
    if campaign_id is None:
        raise NotFound("campaign")
    return campaign_id


async def _admin_answer(gb: Groupbuy, campaign: Campaign) -> web.Response:
    remaining = await gb.store.remaining(campaign.id)
    return json_response(admin_view(campaign, remaining, _now()))


async def list_campaigns(request: web.Request) -> web.Response:
    require_role(request, VIEWER_ROLE)
    gb = request.app[GROUPBUY]
    unknown_params(request.query, LIST_PARAMS)
    state = choice_param(request.query, "state", SALE_STATES)
    page = parse_page(request.query)
    now = _now()
    campaigns, total = await gb.campaigns.page(state, page, now)
    remaining = await gb.store.remaining_of([c.id for c in campaigns])
    items = [admin_view(c, remaining[c.id], now) for c in campaigns]
    return json_response(page.view("campaigns", items, total))


async def get_admin_campaign(request: web.Request) -> web.Response:
    require_role(request, VIEWER_ROLE)
    gb = request.app[GROUPBUY]
    campaign_id = _admin_campaign_id(request)
    campaign = await gb.campaigns.get(campaign_id)  # fresh: the console edits it
    if campaign is None:
        raise NotFound("campaign")
    remaining = await gb.store.remaining(campaign_id)
    view = admin_view(campaign, remaining, _now())
    view["figures"] = await gb.figures.get(campaign_id)
    return json_response(view)


async def edit_campaign(request: web.Request) -> web.Response:
    who = require_role(request, OPERATOR_ROLE)
    gb = request.app[GROUPBUY]
    campaign_id = _admin_campaign_id(request)
    body = await read_json_object(request)
    return await _admin_answer(gb, await gb.admin.edit(campaign_id, body, who.user_id))


async def set_campaign_stock(request: web.Request) -> web.Response:
    who = require_role(request, OPERATOR_ROLE)
    gb = request.app[GROUPBUY]
    campaign_id = _admin_campaign_id(request)
    body = await read_json_object(request)
    return await _admin_answer(gb, await gb.admin.set_stock(campaign_id, body, who.user_id))


async def end_campaign(request: web.Request) -> web.Response:
    who = require_role(request, OPERATOR_ROLE)
    gb = request.app[GROUPBUY]
    campaign_id = _admin_campaign_id(request)
    parse_empty_body(await read_json_object(request))
    return await _admin_answer(gb, await gb.admin.end(campaign_id, who.user_id))


async def cancel_campaign(request: web.Request) -> web.Response:
    who = require_role(request, OPERATOR_ROLE)
    gb = request.app[GROUPBUY]
    campaign_id = _admin_campaign_id(request)
    parse_empty_body(await read_json_object(request))
    return await _admin_answer(gb, await gb.admin.cancel(campaign_id, who.user_id))


async def campaign_audit(request: web.Request) -> web.Response:
    require_role(request, VIEWER_ROLE)
    gb = request.app[GROUPBUY]
    campaign_id = _admin_campaign_id(request)
    if await gb.campaigns.get(campaign_id) is None:
        raise NotFound("campaign")
    return json_response({"entries": await gb.campaigns.audit_trail(campaign_id)})


async def campaign_live(request: web.Request) -> web.StreamResponse:
    require_role(request, VIEWER_ROLE)
    gb = request.app[GROUPBUY]
    campaign_id = _admin_campaign_id(request)
    return await stream_figures(request, lambda: gb.figures.get(campaign_id))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/groupbuy/admin/campaigns", create_campaign)
    app.router.add_get("/api/groupbuy/admin/campaigns", list_campaigns)
    app.router.add_get("/api/groupbuy/admin/campaigns/{id}", get_admin_campaign)
    app.router.add_patch("/api/groupbuy/admin/campaigns/{id}", edit_campaign)
    app.router.add_put("/api/groupbuy/admin/campaigns/{id}/stock", set_campaign_stock)
    app.router.add_post("/api/groupbuy/admin/campaigns/{id}/end", end_campaign)
    app.router.add_post("/api/groupbuy/admin/campaigns/{id}/cancel", cancel_campaign)
    app.router.add_get("/api/groupbuy/admin/campaigns/{id}/audit", campaign_audit)
    app.router.add_get("/api/groupbuy/admin/campaigns/{id}/live", campaign_live)
    app.router.add_get("/api/groupbuy/campaigns/{id}", get_campaign)
    app.router.add_post("/api/groupbuy/campaigns/{id}/groups", open_group)
    app.router.add_post("/api/groupbuy/groups/{id}/join", join_group)
    app.router.add_get("/api/groupbuy/groups/{id}", get_group)
