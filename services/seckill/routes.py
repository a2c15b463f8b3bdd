"""HTTP views of the seckill service: parse, call, map. Rules live in domain.py."""

from __future__ import annotations

import logging
import time
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
from services.common.redis_faults import unanswered_change
from services.common.resources import REDIS_UNANSWERED as UNANSWERED
from services.common.sale_cache import SaleCache
from services.common.sales import SALE_STATES
from services.common.stock_view import StockView
from services.common.validation import parse_empty_body
from services.seckill.activities import ActivityRepository
from services.seckill.admin import SaleAdmin
from services.seckill.board import PressBoard
from services.seckill.domain import (
    Activity,
    Closing,
    Outcome,
    activity_of_reservation,
    activity_view,
    admin_view,
    new_reservation_id,
    parse_activity_id,
    parse_edit,
    parse_new_activity,
    parse_quantity,
    parse_set_stock,
    refusal,
    reservation_state_view,
)
from services.seckill.metrics import SeckillMetrics
from services.seckill.sold_out import SoldOutFlags
from services.seckill.stock import StockStore

log = logging.getLogger(__name__)

LIST_LIMIT = 100


@dataclass
class Seckill:
    """What the views need, wired once in app.py."""

    activities: ActivityRepository
    stock: StockStore
    # What the pages show; the reserve path never reads it.
    stock_view: StockView
    sold_out: SoldOutFlags
    metrics: SeckillMetrics
    # The shoppers' pages read activities through it (services.common.sale_cache: a short TTL).
    cache: SaleCache[Activity]
    # Presses and sold-out answers, counted in memory for the merchant's board.
    board: PressBoard
    admin: SaleAdmin
    # One reading of a sale's figures per interval, shared by every board watching it.
    figures: FiguresCache[int]

    async def activity(self, activity_id: int | None) -> Activity:
        found = None if activity_id is None else await self.cache.get(activity_id)
        if found is None:
            raise NotFound("activity")
        return found

    async def recorded(self, activity_id: int | None) -> Activity:
        """The activity as PostgreSQL holds it now (the admin routes: no cache)."""
        found = None if activity_id is None else await self.activities.get(activity_id)
        if found is None:
            raise NotFound("activity")
        return found


SECKILL: web.AppKey[Seckill] = web.AppKey("seckill", Seckill)


def _now() -> datetime:
    return datetime.now(UTC)


async def create_activity(request: web.Request) -> web.Response:
    who = require_role(request, OPERATOR_ROLE)
    sk = request.app[SECKILL]
    new = parse_new_activity(await read_json_object(request), _now())
    activity = await sk.activities.create(new, who.user_id)
    sk.cache.put(activity)
    return await created_sale(
        sk.stock.warm_up(activity),
        lambda: sk.activities.mark_warmed(activity.id),
        activity_view(activity, activity.stock, _now()),
        f"/api/seckill/activities/{activity.id}",
    )


async def list_activities(request: web.Request) -> web.Response:
    sk = request.app[SECKILL]
    now = _now()
    activities = await sk.activities.list_not_ended(now, LIST_LIMIT)
    remaining = await sk.stock_view.remaining([a.id for a in activities])
    return json_response(
        {"activities": [activity_view(a, remaining[a.id], now) for a in activities]}
    )


async def get_activity(request: web.Request) -> web.Response:
    sk = request.app[SECKILL]
    activity = await sk.activity(parse_activity_id(request.match_info["id"]))
    remaining = await sk.stock_view.remaining([activity.id])
    return json_response(activity_view(activity, remaining[activity.id], _now()))


async def reserve(request: web.Request) -> web.Response:
    """The hot path: no I/O but one (possibly coalesced) Redis script call."""
    sk = request.app[SECKILL]
    activity_id = parse_activity_id(request.match_info["id"])
    if activity_id is None:
        raise NotFound("activity")
    user = principal(request).user_id
    key = parse_idempotency_key(request.headers.getall(IDEMPOTENCY_KEY_HEADER, []))
    quantity = parse_quantity(await read_json_object(request))
    now = time.monotonic()
    # A press with a key may be the retry of one that reserved just before the sale sold
    # out: only its record in Redis knows, so the flag answers keyless presses only.
    if key is None and sk.sold_out.is_sold_out(activity_id, now):
        sk.metrics.sold_out_short_circuit.inc()
        sk.metrics.reservations.labels(Outcome.SOLD_OUT.name.lower()).inc()
        sk.board.answered(activity_id, sold_out=True)
        raise refusal(Outcome.SOLD_OUT)
    reservation_id = new_reservation_id(activity_id)
    try:
        outcome, reservation, replayed = await sk.stock.reserve(
            activity_id, user, quantity, reservation_id, key
        )
    except UNANSWERED as exc:
        # Unless Redis certainly did not run the script, it may have (the reply was lost,
        # not the command): the caller can look the reservation up by the id it would
        # have had, or retry with the same Idempotency-Key.
        answer = unanswered_change(
            exc, f"/api/seckill/reservations/{reservation_id}", reservation_id=reservation_id
        )
        sk.metrics.reservations.labels(answer.code).inc()
        log.warning("reservation %s: %s: %r", reservation_id, answer.code, exc)
        raise answer from exc
    # Counted for the merchant's board in memory (board.py flushes it): presses the flag
    # or the script answered for an activity that exists. Not those that never reached
    # them (bad input, Redis down) nor those naming no activity: a stranger's presses on
    # made-up ids must not leave counters in Redis.
    if outcome is not Outcome.NOT_FOUND:
        sk.board.answered(activity_id, sold_out=outcome is Outcome.SOLD_OUT)
    if replayed:
        # The first press was counted; a replay says nothing about the stock now.
        sk.metrics.idempotent_replays.inc()
    else:
        sk.metrics.reservations.labels(
            "reserved" if outcome is Outcome.RESERVED else outcome.name.lower()
        ).inc()
    if reservation is None:
        if outcome is Outcome.SOLD_OUT and not replayed:
            sk.sold_out.mark(activity_id, now)
        raise replayed_if(refusal(outcome), replayed)
    location = f"/api/seckill/reservations/{reservation.reservation_id}"
    return json_response(reservation.view(), 201, replay_headers({"Location": location}, replayed))


async def get_reservation(request: web.Request) -> web.Response:
    sk = request.app[SECKILL]
    reservation_id = request.match_info["id"]
    activity_id = activity_of_reservation(reservation_id)
    record = None
    if activity_id is not None:
        record = await sk.stock.reservation(activity_id, reservation_id)
    who = principal(request)
    # Someone else's reservation is answered like a missing one: ids do not leak.
    if record is None or (record["user"] != who.user_id and not who.is_admin):
        raise NotFound("reservation")
    return json_response(reservation_state_view(reservation_id, record))


# --- the merchant console (docs/admin-api.md) -------------------------------------------

ADMIN_LIST_PARAMS = ("state", "limit", "offset")
ADMIN_PATH = "/api/seckill/admin/activities"


async def admin_list(request: web.Request) -> web.Response:
    require_role(request, VIEWER_ROLE)
    sk = request.app[SECKILL]
    unknown_params(request.query, ADMIN_LIST_PARAMS)
    state = choice_param(request.query, "state", SALE_STATES)
    page = parse_page(request.query)
    now = _now()
    activities, total = await sk.activities.admin_list(state, now, page.limit, page.offset)
    remaining = await sk.stock.remaining([a.id for a in activities])
    views = [admin_view(a, remaining[a.id], now) for a in activities]
    return json_response(page.view("activities", views, total))


async def admin_get(request: web.Request) -> web.Response:
    require_role(request, VIEWER_ROLE)
    sk = request.app[SECKILL]
    activity = await sk.recorded(parse_activity_id(request.match_info["id"]))
    figures = await sk.figures.get(activity.id)
    view = admin_view(activity, figures["remaining"], _now())
    return json_response({**view, "figures": figures})


async def admin_edit(request: web.Request) -> web.Response:
    who = require_role(request, OPERATOR_ROLE)
    sk = request.app[SECKILL]
    activity_id = _admin_id(request)
    changes = parse_edit(await read_json_object(request))
    activity = await sk.admin.edit(activity_id, changes, who.user_id)
    remaining = await sk.stock.remaining([activity.id])
    return json_response(admin_view(activity, remaining[activity.id], _now()))


async def admin_set_stock(request: web.Request) -> web.Response:
    who = require_role(request, OPERATOR_ROLE)
    sk = request.app[SECKILL]
    activity_id = _admin_id(request)
    wanted = parse_set_stock(await read_json_object(request))
    activity, remaining = await sk.admin.set_stock(activity_id, wanted, who.user_id)
    return json_response(admin_view(activity, remaining, _now()))


async def admin_end(request: web.Request) -> web.Response:
    return await _close(request, Closing.END)


async def admin_cancel(request: web.Request) -> web.Response:
    return await _close(request, Closing.CANCEL)


async def _close(request: web.Request, closing: Closing) -> web.Response:
    who = require_role(request, OPERATOR_ROLE)
    sk = request.app[SECKILL]
    activity_id = _admin_id(request)
    parse_empty_body(await read_json_object(request))
    activity = await sk.admin.close(activity_id, closing, who.user_id)
    remaining = await sk.stock.remaining([activity.id])
    return json_response(admin_view(activity, remaining[activity.id], _now()))


async def admin_audit(request: web.Request) -> web.Response:
    require_role(request, VIEWER_ROLE)
    sk = request.app[SECKILL]
    activity = await sk.recorded(parse_activity_id(request.match_info["id"]))
    return json_response({"entries": await sk.activities.audit_trail(activity.id)})


async def admin_live(request: web.Request) -> web.StreamResponse:
    require_role(request, VIEWER_ROLE)
    sk = request.app[SECKILL]
    activity_id = _admin_id(request)
    return await stream_figures(request, lambda: sk.figures.get(activity_id))


def _admin_id(request: web.Request) -> int:
    activity_id = parse_activity_id(request.match_info["id"])
    if activity_id is None:
        raise NotFound("activity")
    return activity_id


def add_routes(app: web.Application) -> None:
    app.router.add_post(ADMIN_PATH, create_activity)
    app.router.add_get(ADMIN_PATH, admin_list)
    app.router.add_get(ADMIN_PATH + "/{id}", admin_get)
    app.router.add_patch(ADMIN_PATH + "/{id}", admin_edit)
    app.router.add_put(ADMIN_PATH + "/{id}/stock", admin_set_stock)
    app.router.add_post(ADMIN_PATH + "/{id}/end", admin_end)
    app.router.add_post(ADMIN_PATH + "/{id}/cancel", admin_cancel)
    app.router.add_get(ADMIN_PATH + "/{id}/audit", admin_audit)
    app.router.add_get(ADMIN_PATH + "/{id}/live", admin_live)
    app.router.add_get("/api/seckill/activities", list_activities)
    app.router.add_get("/api/seckill/activities/{id}", get_activity)
    app.router.add_post("/api/seckill/activities/{id}/reservations", reserve)
    app.router.add_get("/api/seckill/reservations/{id}", get_reservation)
