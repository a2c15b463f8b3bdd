"""HTTP views of the coupon service's templates, claims and a shopper's coupons: parse,
call, map. Rules live in domain.py."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from services.common.auth import OPERATOR_ROLE, VIEWER_ROLE
from services.common.errors import NotFound
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
from services.common.redis_faults import did_not_run, unanswered_change
from services.common.resources import REDIS_UNANSWERED as UNANSWERED
from services.common.sale_cache import SaleCache
from services.common.stock_view import StockView
from services.common.validation import parse_empty_body
from services.coupon.admin import TemplateAdmin
from services.coupon.domain import (
    COUPON_STATES,
    TEMPLATE_STATES,
    Template,
    admin_view,
    claim_outcome_unknown,
    claim_result,
    coupon_view,
    new_coupon_id,
    parse_new_template,
    parse_quantity,
    parse_template_id,
    refusal,
    template_view,
)
from services.coupon.metrics import CouponMetrics
from services.coupon.repository import CouponRecord, TemplateRepository
from services.coupon.store import CouponStore

log = logging.getLogger(__name__)

ADMIN_PATH = "/api/coupons/admin/templates"
TEMPLATE_PATH = "/api/coupons/templates"
COUPONS_PATH = "/api/coupons"


@dataclass
class Coupons:
    """What the views need, wired once in app.py."""

    templates: TemplateRepository
    coupons: CouponRecord
    store: CouponStore
    metrics: CouponMetrics
    # The shoppers' template page, for a second at most (services.common.sale_cache).
    cache: SaleCache[Template]
    # What is left, as the template page shows it; claims never read it.
    stock_view: StockView
    admin: TemplateAdmin
    # One reading per template per interval, shared by the live boards and admin GETs.
    figures: FiguresCache[int]

    async def claimable(self, template_id: int | None) -> Template:
        """A template shoppers may see: one only granted by rules is not theirs to see."""
        found = None if template_id is None else await self.cache.get(template_id)
        if found is None or not found.claimable:
            raise NotFound("coupon template")
        return found

    async def recorded(self, template_id: int | None) -> Template:
        """The template as PostgreSQL holds it now (the admin routes: no cache)."""
        found = None if template_id is None else await self.templates.get(template_id)
        if found is None:
            raise NotFound("coupon template")
        return found


COUPONS: web.AppKey[Coupons] = web.AppKey("coupons", Coupons)


def _now() -> datetime:
    return datetime.now(UTC)


# --- shoppers -------------------------------------------------------------------------


async def get_template(request: web.Request) -> web.Response:
    cp = request.app[COUPONS]
    template = await cp.claimable(parse_template_id(request.match_info["id"]))
    remaining = await cp.stock_view.remaining([template.id])
    return json_response(template_view(template, remaining[template.id], _now()))


async def claim(request: web.Request) -> web.Response:
    """The rush's hot path: no I/O but one (possibly coalesced) Redis script call."""
    cp = request.app[COUPONS]
    template_id = parse_template_id(request.match_info["id"])
    if template_id is None:
        raise NotFound("coupon template")
    user = principal(request).user_id
    key = parse_idempotency_key(request.headers.getall(IDEMPOTENCY_KEY_HEADER, []))
    parse_empty_body(await read_json_object(request))
    coupon_id = new_coupon_id(template_id)
    try:
        outcome, claimed, replayed = await cp.store.claim(template_id, user, coupon_id, key)
    except UNANSWERED as exc:
        # Unless Redis certainly did not run the script, it may have: the coupon shows in
        # the shopper's list once recorded, and a retry with the key answers at once.
        if did_not_run(exc):
            answer = unanswered_change(exc, COUPONS_PATH)
        else:
            answer = claim_outcome_unknown(coupon_id)
        cp.metrics.claims.labels(answer.code).inc()
        log.warning("claim %s: %s: %r", coupon_id, answer.code, exc)
        raise answer from exc
    if replayed:
        # The first claim was counted; a replay says nothing about what is left now.
        cp.metrics.idempotent_replays.inc()
    else:
        cp.metrics.claims.labels(claim_result(outcome)).inc()
    if claimed is None:
        raise replayed_if(refusal(outcome), replayed)
    return json_response(claimed.view(), 201, replay_headers({}, replayed))


HELD_PARAMS = ("state", "limit", "offset")


async def my_coupons(request: web.Request) -> web.Response:
    """The caller's coupons in one state (available unless asked), the soonest to end
    first, with each one's template name and terms."""
    cp = request.app[COUPONS]
    unknown_params(request.query, HELD_PARAMS)
    state = choice_param(request.query, "state", COUPON_STATES) or "available"
    page = parse_page(request.query)
    held, total = await cp.coupons.held(principal(request).user_id, state, page, _now())
    return json_response(page.view("coupons", [coupon_view(c) for c in held], total))


# --- the merchant console (docs/admin-api.md) -----------------------------------------

LIST_PARAMS = ("state", "limit", "offset")


def _admin_id(request: web.Request) -> int:
    template_id = parse_template_id(request.match_info["id"])
    if template_id is None:
        raise NotFound("coupon template")
    return template_id


async def _admin_answer(cp: Coupons, template: Template) -> web.Response:
    remaining = await cp.store.remaining([template.id])
    return json_response(admin_view(template, remaining[template.id], _now()))


async def create_template(request: web.Request) -> web.Response:
    who = require_role(request, OPERATOR_ROLE)
    cp = request.app[COUPONS]
    new = parse_new_template(await read_json_object(request), _now())
    template = await cp.templates.create(new, who.user_id)
    cp.cache.put(template)
    return await created_sale(
        cp.store.warm_up(template),
        lambda: cp.templates.mark_warmed(template.id),
        template_view(template, template.quantity, _now()),
        f"{ADMIN_PATH}/{template.id}",
    )


async def list_templates(request: web.Request) -> web.Response:
    require_role(request, VIEWER_ROLE)
    cp = request.app[COUPONS]
    unknown_params(request.query, LIST_PARAMS)
    state = choice_param(request.query, "state", TEMPLATE_STATES)
    page = parse_page(request.query)
    now = _now()
    templates, total = await cp.templates.page(state, page, now)
    remaining = await cp.store.remaining([t.id for t in templates])
    items = [admin_view(t, remaining[t.id], now) for t in templates]
    return json_response(page.view("templates", items, total))


async def get_admin_template(request: web.Request) -> web.Response:
    require_role(request, VIEWER_ROLE)
    cp = request.app[COUPONS]
    template = await cp.recorded(_admin_id(request))
    figures = await cp.figures.get(template.id)
    remaining = figures["remaining"]
    view = admin_view(template, template.quantity if remaining is None else remaining, _now())
    return json_response({**view, "figures": figures})


async def edit_template(request: web.Request) -> web.Response:
    who = require_role(request, OPERATOR_ROLE)
    cp = request.app[COUPONS]
    template_id = _admin_id(request)
    body = await read_json_object(request)
    return await _admin_answer(cp, await cp.admin.edit(template_id, body, who.user_id))


async def set_quantity(request: web.Request) -> web.Response:
    who = require_role(request, OPERATOR_ROLE)
    cp = request.app[COUPONS]
    template_id = _admin_id(request)
    wanted = parse_quantity(await read_json_object(request))
    return await _admin_answer(cp, await cp.admin.set_quantity(template_id, wanted, who.user_id))


async def end_template(request: web.Request) -> web.Response:
    who = require_role(request, OPERATOR_ROLE)
    cp = request.app[COUPONS]
    template_id = _admin_id(request)
    parse_empty_body(await read_json_object(request))
    return await _admin_answer(cp, await cp.admin.end(template_id, who.user_id))


async def template_audit(request: web.Request) -> web.Response:
    require_role(request, VIEWER_ROLE)
    cp = request.app[COUPONS]
    template = await cp.recorded(_admin_id(request))
    return json_response({"entries": await cp.templates.audit_trail(template.id)})


async def template_live(request: web.Request) -> web.StreamResponse:
    require_role(request, VIEWER_ROLE)
    cp = request.app[COUPONS]
    template_id = _admin_id(request)
    return await stream_figures(request, lambda: cp.figures.get(template_id))


def add_routes(app: web.Application) -> None:
    """The templates' routes (admin and shoppers') and the shopper's coupon list."""
    app.router.add_post(ADMIN_PATH, create_template)
    app.router.add_get(ADMIN_PATH, list_templates)
    app.router.add_get(ADMIN_PATH + "/{id}", get_admin_template)
    app.router.add_patch(ADMIN_PATH + "/{id}", edit_template)
    app.router.add_put(ADMIN_PATH + "/{id}/quantity", set_quantity)
    app.router.add_post(ADMIN_PATH + "/{id}/end", end_template)
    app.router.add_get(ADMIN_PATH + "/{id}/audit", template_audit)
    app.router.add_get(ADMIN_PATH + "/{id}/live", template_live)
    app.router.add_get(TEMPLATE_PATH + "/{id}", get_template)
    app.router.add_post(TEMPLATE_PATH + "/{id}/claims", claim)
    app.router.add_get(COUPONS_PATH, my_coupons)
