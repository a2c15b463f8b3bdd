"""A state-changing Redis call whose reply does not come in time: the shopper is told the
outcome is unknown and where to look (503 outcome_unknown), never a blind 500, and what
that place says matches the stock."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from services.common.settings import Settings
from services.seckill.app import create_app
from services.seckill.keys import activity_keys
from tests.helpers import create_activity, started_client

PAUSE_MS = 1500


async def test_a_press_whose_reply_is_late_is_answered_outcome_unknown_and_can_be_checked(
    settings: Settings, redis: Redis, token: Callable[..., dict[str, str]]
) -> None:
    # Our own Redis deadline, well under the pause: the call is sent, its answer is late.
    impatient = dataclasses.replace(settings, redis_timeout_seconds=0.3)
    seckill = await started_client(create_app(impatient, run_relay=False))
    try:
        activity = await create_activity(seckill, token("ops", admin=True), stock=5)
        url = f"/api/seckill/activities/{activity['id']}/reservations"
        await redis.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")  # Redis stalls
        resp = await seckill.post(url, headers=token("u1"))
        body: dict[str, Any] = await resp.json()
        assert resp.status == 503, body
        assert body["error"] == "outcome_unknown" and body["message"]
        rid = body["reservation_id"]
        assert body["check"] == f"/api/seckill/reservations/{rid}"

        await asyncio.sleep(PAUSE_MS / 1000)  # Redis answers again
        keys = activity_keys(activity["id"])
        applied = await redis.hget(keys.reservations, rid) is not None
        check = await seckill.get(body["check"], headers=token("u1"))
        stock = int(await redis.get(keys.stock))
        again = await seckill.post(url, headers=token("u1"))
        if applied:  # the script ran after all: the check and the stock say so
            assert check.status == 200 and (await check.json())["state"] == "reserved"
            assert stock == 4
            assert again.status == 409  # pressing again is safe: the limit holds
        else:
            assert check.status == 404 and stock == 5
            assert again.status == 201
    finally:
        await redis.execute_command("CLIENT", "UNPAUSE")
        await seckill.close()


async def test_a_join_whose_reply_is_late_is_answered_outcome_unknown_and_the_card_tells(
    settings: Settings, redis: Redis, token: Callable[..., dict[str, str]]
) -> None:
    from services.groupbuy.app import create_app as create_groupbuy
    from services.groupbuy.keys import campaign_keys
    from tests.helpers import create_campaign

    impatient = dataclasses.replace(settings, redis_timeout_seconds=0.3)
    groupbuy = await started_client(
        create_groupbuy(impatient, run_relay=False, run_sweeper=False, run_consumers=False)
    )
    try:
        campaign = await create_campaign(groupbuy, token("ops", admin=True), group_size=3)
        opened = await groupbuy.post(
            f"/api/groupbuy/campaigns/{campaign['id']}/groups", headers=token("u1")
        )
        assert opened.status == 201
        group_id = (await opened.json())["id"]
        join = f"/api/groupbuy/groups/{group_id}/join"
        await redis.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
        resp = await groupbuy.post(join, headers=token("u2"))
        body: dict[str, Any] = await resp.json()
        assert resp.status == 503 and body["error"] == "outcome_unknown", body
        assert body["group_id"] == group_id
        assert body["check"] == f"/api/groupbuy/groups/{group_id}"

        await asyncio.sleep(PAUSE_MS / 1000)
        members = campaign_keys(campaign["id"]).members(group_id)
        applied = await redis.zscore(members, "u2") is not None
        card = await (await groupbuy.get(body["check"], headers=token("u2"))).json()
        again = await groupbuy.post(join, headers=token("u2"))
        assert any(m["you"] for m in card["members"]) is applied
        assert card["joined"] == (2 if applied else 1)
        if applied:
            assert again.status == 409 and (await again.json())["error"] == "already_member"
        else:
            assert again.status == 201
    finally:
        await redis.execute_command("CLIENT", "UNPAUSE")
        await groupbuy.close()
