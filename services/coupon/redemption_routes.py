"""POST /api/orders/{id}/coupon: parse, call, map (docs/coupons.md, "Redemption")."""

from __future__ import annotations

from aiohttp import web

from services.common.http import json_response, principal, read_json_object
from services.common.idempotency import IDEMPOTENCY_KEY_HEADER, parse_idempotency_key
from services.coupon.lifecycle_domain import parse_order_path_id, parse_redemption
from services.coupon.redemption import Redemption

REDEMPTION: web.AppKey[Redemption] = web.AppKey("coupon_redemption", Redemption)
REDEMPTION_PATH = "/api/orders/{id}/coupon"


async def redeem(request: web.Request) -> web.Response:
    user = principal(request).user_id
    # Accepted and checked like every other POST that spends something; the lock is
    # idempotent by itself (the same lock again answers the same), so no record is kept.
    parse_idempotency_key(request.headers.getall(IDEMPOTENCY_KEY_HEADER, []))
    order_id = parse_order_path_id(request.match_info["id"])
    coupon_id = parse_redemption(await read_json_object(request))
    lock = await request.app[REDEMPTION].lock(order_id, coupon_id, user)
    return json_response(lock.view())


def add_routes(app: web.Application) -> None:
    app.router.add_post(REDEMPTION_PATH, redeem)
