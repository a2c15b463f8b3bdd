"""HTTP views of the seckill service: parse, call, map. Rules live in domain.py."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from services.common.errors import NotFound
from services.common.http import (
    created_sale,
    json_response,
    principal,
    read_json_object,
    require_admin,
)
from services.common.idempotency import (
    IDEMPOTENCY_KEY_HEADER,
    parse_idempotency_key,
    replay_headers,
    replayed_if,
)
from services.common.redis_faults import unanswered_change
from services.common.resources import REDIS_UNANSWERED as UNANSWERED
from services.seckill.activities import ActivityRepository
from services.seckill.domain import (
    Activity,
    Outcome,
    activity_of_reservation,
    activity_view,
    new_reservation_id,
    parse_activity_id,
    parse_new_activity,
    parse_quantity,
    refusal,
    reservation_state_view,
)
from services.seckill.metrics import SeckillMetrics
from services.seckill.sold_out import SoldOutFlags
from services.seckill.stock import StockStore
from services.seckill.stock_view import StockView

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
    # Activities never change once created: cache them for the browsing load.
    cache: dict[int, Activity]

    async def activity(self, activity_id: int | None) -> Activity:
        if activity_id is None:
            raise NotFound("activity")
        found = self.cache.get(activity_id)
        if found is None:
            found = await self.activities.get(activity_id)
            if found is None:
                raise NotFound("activity")
            self.cache[activity_id] = found
        return found


SECKILL: web.AppKey[Seckill] = web.AppKey("seckill", Seckill)


def _now() -> datetime:
    return datetime.now(UTC)


async def create_activity(request: web.Request) -> web.Response:
    require_admin(request)
    sk = request.app[SECKILL]
    new = parse_new_activity(await read_json_object(request), _now())
    activity = await sk.activities.create(new)
    sk.cache[activity.id] = activity
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


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/seckill/admin/activities", create_activity)
    app.router.add_get("/api/seckill/activities", list_activities)
    app.router.add_get("/api/seckill/activities/{id}", get_activity)
    app.router.add_post("/api/seckill/activities/{id}/reservations", reserve)
    app.router.add_get("/api/seckill/reservations/{id}", get_reservation)
