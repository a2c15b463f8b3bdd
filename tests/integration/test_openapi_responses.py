"""Real answers validate against the documents each service serves: a sale from creation
to its order (following the documents' links), the admin views, a group, a login and
its refresh, and the error bodies, on the real Redis, PostgreSQL and broker."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator
from redis.asyncio import Redis

from services.common.settings import Settings
from tests.helpers import (
    activity_body,
    campaign_body,
    payment_body,
    post_payment,
    running_relay,
    started_client,
    wait_for,
)
from tools.fake_wechat import FakeWeChat, code_for
from tools.openapi import admin_document

Token = Callable[..., dict[str, str]]
Client = TestClient[Any, Any]


class Contract:
    """A service's own document, as it serves it, and the check of an answer."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.templates = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path)
            for path in document["paths"]
        ]

    @classmethod
    async def of(cls, client: Client) -> Contract:
        resp = await client.get("/api/openapi.json")  # no token: it is public
        assert resp.status == 200
        return cls(await resp.json())

    def operation(self, method: str, path: str) -> dict[str, Any]:
        found = [t for pattern, t in self.templates if pattern.match(path)]
        # A literal path wins over a template (/api/orders/admin/figures vs {id}).
        template = path if path in found else found[0]
        return dict(self.document["paths"][template][method.lower()])

    async def check(self, resp: ClientResponse) -> Any:
        """The answer's body, once its status, media type and body match the document."""
        op = self.operation(resp.method, resp.url.path)
        answers = op["responses"]
        assert str(resp.status) in answers, f"{resp.method} {resp.url.path}: {resp.status}"
        answer = answers[str(resp.status)]
        content = answer.get("content")
        if content is None:
            assert await resp.read() == b""
            return None
        assert resp.content_type in content, (resp.content_type, list(content))
        if resp.content_type != "application/json":
            return await resp.read()
        body = await resp.json()
        schema = {**content[resp.content_type]["schema"], "components": self.document["components"]}
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
        assert errors == [], (resp.method, resp.url.path, resp.status, body)
        return body

    def link(self, method: str, path: str, status: int, name: str) -> tuple[str, str]:
        """(operationId, JSON pointer) of a link's single parameter."""
        found = self.operation(method, path)["responses"][str(status)]["links"][name]
        [expression] = found["parameters"].values()
        return found["operationId"], expression.removeprefix("$response.body#")


def pointer(body: dict[str, Any], where: str) -> Any:
    for part in where.strip("/").split("/"):
        body = body[part]
    return body


async def test_a_sale_from_creation_to_its_order_answers_as_its_documents_say(
    seckill: Client, orders: Client, token: Token, redis: Redis, settings: Settings
) -> None:
    sk, od = await Contract.of(seckill), await Contract.of(orders)
    admin, shopper = token("ops", admin=True), token("u-oas")

    created = await sk.check(
        await seckill.post("/api/seckill/admin/activities", json=activity_body(), headers=admin)
    )
    # The links say which field of one answer feeds the next call.
    target, where = sk.link("post", "/api/seckill/admin/activities", 201, "reserve")
    assert target == "seckill_reserve"
    press = f"/api/seckill/activities/{pointer(created, where)}/reservations"
    reservation = await sk.check(await seckill.post(press, json={}, headers=shopper))
    target, where = sk.link("post", press, 201, "get_reservation")
    assert target == "seckill_get_reservation"
    state = await sk.check(
        await seckill.get(
            f"/api/seckill/reservations/{pointer(reservation, where)}", headers=shopper
        )
    )
    assert state["state"] == "reserved"
    # A link to another service's operation is in the gateway's merged document.
    merged = Contract(admin_document())
    target, where = merged.link("get", "/api/seckill/reservations/x", 200, "get_order")
    order_path = f"/api/orders/{pointer(state, where)}"
    assert target == "order_get_order" and reservation["order_id"] == state["order_id"]

    async def order_status() -> int:
        return (await orders.get(order_path, headers=shopper)).status

    async with running_relay(redis, settings):
        assert await wait_for(order_status, 200) == 200
    order = await od.check(await orders.get(order_path, headers=shopper))
    assert order["reservation_id"] == reservation["reservation_id"]
    await od.check(await orders.get("/api/orders?limit=5", headers=shopper))
    status, _ = await post_payment(
        orders, settings.payment_webhook_secret, payment_body(order["id"], 9900, "t-oas-1")
    )
    assert status == 200

    await sk.check(await seckill.get("/api/seckill/activities", headers=shopper))
    await sk.check(await seckill.get(f"/api/seckill/activities/{created['id']}", headers=shopper))
    await sk.check(await seckill.get("/api/seckill/admin/activities?state=live", headers=admin))
    await sk.check(
        await seckill.get(f"/api/seckill/admin/activities/{created['id']}", headers=admin)
    )
    await sk.check(
        await seckill.get(f"/api/seckill/admin/activities/{created['id']}/audit", headers=admin)
    )
    await od.check(await orders.get(f"/api/orders/admin/orders/{order['id']}", headers=admin))
    await od.check(await orders.get("/api/orders/admin/orders?source=seckill", headers=admin))
    query = f"source=seckill&sale_id={created['id']}"
    await od.check(await orders.get(f"/api/orders/admin/figures?{query}", headers=admin))
    stream = await seckill.get(f"/api/seckill/admin/activities/{created['id']}/live", headers=admin)
    assert await stream.content.readuntil(b"\n\n") == b"retry: 1000\n\n"
    assert (
        stream.content_type in sk.operation("get", stream.url.path)["responses"]["200"]["content"]
    )
    stream.close()


async def test_refusals_answer_the_documented_error_body(
    seckill: Client, orders: Client, token: Token
) -> None:
    sk, od = await Contract.of(seckill), await Contract.of(orders)
    admin, shopper = token("ops", admin=True), token("u-oas")
    bad = await sk.check(
        await seckill.post(
            "/api/seckill/admin/activities", json=activity_body(stock=0), headers=admin
        )
    )
    assert (bad["error"], bad["field"]) == ("invalid_request", "stock")
    refused = await sk.check(
        await seckill.post("/api/seckill/admin/activities", json=activity_body(), headers=shopper)
    )
    assert refused["error"] == "forbidden"
    anonymous = await sk.check(await seckill.get("/api/seckill/activities"))
    assert anonymous["error"] == "unauthorized"
    missing = await sk.check(await seckill.get("/api/seckill/activities/99999", headers=shopper))
    assert missing["error"] == "not_found"
    media = await sk.check(
        await seckill.post(
            "/api/seckill/activities/1/reservations",
            data=b"quantity=1",
            headers={**shopper, "Content-Type": "application/x-www-form-urlencoded"},
        )
    )
    assert media["error"] == "unsupported_media_type"
    unknown = await sk.check(
        await seckill.get("/api/seckill/admin/activities?stat=live", headers=admin)
    )
    assert unknown["field"] == "stat"
    no_order = await od.check(await orders.get(f"/api/orders/{uuid.uuid4()}", headers=shopper))
    assert no_order["error"] == "not_found"
    unsigned = await od.check(await orders.post("/api/payments/callback", data=b"{}"))
    assert unsigned["error"] == "invalid_signature"


async def test_a_group_opened_and_joined_answers_as_its_document_says(
    groupbuy: Client, token: Token
) -> None:
    gb = await Contract.of(groupbuy)
    admin = token("ops", admin=True)
    campaign = await gb.check(
        await groupbuy.post(
            "/api/groupbuy/admin/campaigns", json=campaign_body(group_size=2), headers=admin
        )
    )
    target, where = gb.link("post", "/api/groupbuy/admin/campaigns", 201, "open_group")
    opened_at = f"/api/groupbuy/campaigns/{pointer(campaign, where)}/groups"
    assert target == "groupbuy_open_group"
    opened = await gb.check(await groupbuy.post(opened_at, headers=token("leader")))
    target, where = gb.link("post", opened_at, 201, "join")
    assert target == "groupbuy_join_group"
    join_at = f"/api/groupbuy/groups/{pointer(opened, where)}/join"
    joined = await gb.check(await groupbuy.post(join_at, json={}, headers=token("member")))
    assert joined["state"] == "completed"
    again = await gb.check(await groupbuy.post(join_at, headers=token("member")))
    assert again["error"] == "group_full"
    card = await gb.check(
        await groupbuy.get(f"/api/groupbuy/groups/{opened['id']}", headers=token("leader"))
    )
    assert card["joined"] == 2
    await gb.check(await groupbuy.get(f"/api/groupbuy/campaigns/{campaign['id']}", headers=admin))
    await gb.check(await groupbuy.get("/api/groupbuy/admin/campaigns", headers=admin))
    await gb.check(
        await groupbuy.get(f"/api/groupbuy/admin/campaigns/{campaign['id']}", headers=admin)
    )
    await gb.check(
        await groupbuy.post(f"/api/groupbuy/admin/campaigns/{campaign['id']}/cancel", headers=admin)
    )


async def test_a_login_and_its_refresh_answer_as_their_document_says(
    settings: Settings, fake: FakeWeChat
) -> None:
    import dataclasses

    from services.identity.app import create_app

    ident = dataclasses.replace(
        settings, wechat_api_url=fake.url, wechat_appid=fake.appid, wechat_secret=fake.secret
    )
    client = await started_client(create_app(ident, run_keeper=False, run_relay=False))
    try:
        contract = await Contract.of(client)
        login = await contract.check(
            await client.post("/api/auth/login", json={"code": code_for("oas-user")})
        )
        link = contract.operation("post", "/api/auth/login")["responses"]["200"]["links"]
        body = {
            name: pointer(login, expression.removeprefix("$response.body#"))
            for name, expression in link["refresh"]["requestBody"].items()
        }
        renewed = await contract.check(await client.post("/api/auth/refresh", json=body))
        assert renewed["refresh_token"] != login["refresh_token"]
        reused = await contract.check(await client.post("/api/auth/refresh", json=body))
        assert reused["error"] == "refresh_token_reused"
        await contract.check(
            await client.post("/api/auth/logout", json={"refresh_token": renewed["refresh_token"]})
        )
        refused = await contract.check(
            await client.post("/api/auth/admin/login", json={"name": "nobody", "password": "x"})
        )
        assert refused["error"] == "invalid_credentials"
    finally:
        await client.close()


async def test_notify_and_console_answers_match_their_documents(
    settings: Settings, token: Token
) -> None:
    from services.console.app import create_app as console_app
    from services.notify.app import create_app as notify_app

    notify = await started_client(
        notify_app(settings, run_consumers=False, run_dispatcher=False, run_reminders=False)
    )
    console = await started_client(console_app(settings))
    try:
        nt, cs = await Contract.of(notify), await Contract.of(console)
        shopper, admin = token("u-oas"), token("ops", admin=True)
        await nt.check(
            await notify.post(
                "/api/notify/subscriptions", json={"template": "order_paid"}, headers=shopper
            )
        )
        await nt.check(await notify.get("/api/notify/messages", headers=shopper))
        await nt.check(await notify.get("/api/notify/admin/templates", headers=admin))
        await nt.check(await notify.get("/api/notify/admin/deliveries", headers=admin))
        await nt.check(
            await notify.put(
                "/api/notify/admin/templates/order_paid",
                json={"provider_template_id": "Xk2_9f"},
                headers=admin,
            )
        )
        unknown = await nt.check(
            await notify.post("/api/notify/subscriptions", json={"template": "x"}, headers=shopper)
        )
        assert unknown["error"] == "unknown_template"
        await cs.check(await console.get("/console/"))
        await cs.check(await console.get("/console", allow_redirects=False))
        await cs.check(await console.get("/console/v/0/app.js"))
    finally:
        await notify.close()
        await console.close()


async def test_coupon_templates_claims_and_coupons_answer_as_their_document_says(
    settings: Settings, token: Token
) -> None:
    from services.coupon.app import create_app
    from tests.helpers import template_body

    client = await started_client(create_app(settings))
    try:
        contract = await Contract.of(client)
        admin = token("ops", admin=True)
        admin_path = "/api/coupons/admin/templates"
        created = await contract.check(
            await client.post(admin_path, json=template_body(quantity=1), headers=admin)
        )
        operation, where = contract.link("post", admin_path, 201, "claim")
        assert operation == "coupon_claim"
        url = f"/api/coupons/templates/{pointer(created, where)}"
        await contract.check(await client.get(url, headers=token("u1")))
        claimed = await contract.check(await client.post(f"{url}/claims", headers=token("u1")))
        for user in ("u1", "u2"):  # limit_reached, exhausted
            await contract.check(await client.post(f"{url}/claims", headers=token(user)))
        await contract.check(await client.get("/api/coupons/templates/999", headers=token("u1")))

        async def mine() -> Any:
            body = await contract.check(await client.get("/api/coupons", headers=token("u1")))
            return [c["coupon_id"] for c in body["coupons"]]

        assert await wait_for(mine, [claimed["coupon_id"]]) == [claimed["coupon_id"]]
        await contract.check(await client.get("/api/coupons?state=lost", headers=token("u1")))
        template = f"{admin_path}/{created['id']}"
        await contract.check(await client.get(f"{admin_path}?state=live", headers=admin))
        await contract.check(await client.get(template, headers=admin))
        await contract.check(await client.get(f"{template}/audit", headers=admin))
        await contract.check(
            await client.put(f"{template}/quantity", json={"quantity": 0}, headers=admin)
        )
        await contract.check(
            await client.put(f"{template}/quantity", json={"quantity": 3}, headers=admin)
        )
        await contract.check(await client.patch(template, json={"name": "x"}, headers=admin))
        await contract.check(await client.post(f"{template}/end", headers=admin))
        await contract.check(await client.post(f"{url}/claims", headers=token("u3")))
        await contract.check(await client.get(admin_path, headers=token("u1")))
    finally:
        await client.close()
