"""The 下单返券 rules' admin API over HTTP, on the real PostgreSQL: roles, validation,
audit trail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from services.common.auth import mint_token
from services.common.http import HttpMetrics, auth_middleware, errors_and_metrics_middleware
from services.common.settings import Settings
from services.coupon.rule_routes import RULES, add_routes
from services.coupon.rules import RuleRepository
from tests.coupon_helpers import create_template
from tests.helpers import started_client

Client = TestClient[Any, Any]
PATH = "/api/coupons/admin/rules"


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=5)
    assert pool is not None
    registry = CollectorRegistry()
    app = web.Application(
        middlewares=[
            errors_and_metrics_middleware(HttpMetrics(registry)),
            auth_middleware(settings.jwt_keys()),
        ]
    )
    app[RULES] = RuleRepository(pool)
    add_routes(app)
    client = await started_client(app)
    yield client
    await client.close()
    await pool.close()


@pytest.fixture
def as_role(settings: Settings) -> Any:
    def headers(role: str | None, who: str = "merchant:7") -> dict[str, str]:
        roles = [] if role is None else [role]
        return {"Authorization": f"Bearer {mint_token(settings.jwt_keys(), who, roles)}"}

    return headers


async def test_an_operator_creates_a_rule_and_a_viewer_reads_it(
    client: Client, as_role: Any, db: asyncpg.Connection
) -> None:
    template = await create_template(db)
    body = {
        "name": "返券 after the tea sale",
        "trigger": "activity",
        "sale_id": 42,
        "template_id": template,
    }
    resp = await client.post(PATH, json=body, headers=as_role("operator"))
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert resp.headers["Location"] == f"{PATH}/{created['id']}"
    assert {
        k: created[k] for k in ("name", "trigger", "sale_id", "template_id", "active", "created_by")
    } == {
        **body,
        "active": True,
        "created_by": "merchant:7",
    }
    resp = await client.get(f"{PATH}/{created['id']}", headers=as_role("viewer"))
    assert (resp.status, await resp.json()) == (200, created)
    resp = await client.get(PATH, headers=as_role("viewer"))
    assert await resp.json() == {"rules": [created], "total": 1, "limit": 20, "offset": 0}
    row = await db.fetchrow("SELECT trigger, sale_id, template_id, active FROM coupon.grant_rules")
    assert tuple(row) == ("activity", 42, template, True)


async def test_a_viewer_cannot_change_rules_and_a_shopper_cannot_read_them(
    client: Client, as_role: Any, db: asyncpg.Connection
) -> None:
    template = await create_template(db)
    body = {"name": "every order", "trigger": "any", "template_id": template}
    resp = await client.post(PATH, json=body, headers=as_role("viewer"))
    assert (resp.status, (await resp.json())["error"]) == (403, "forbidden")
    resp = await client.get(PATH, headers=as_role(None, "u1"))
    assert resp.status == 403
    resp = await client.get(PATH)
    assert resp.status == 401
    assert await db.fetchval("SELECT count(*) FROM coupon.grant_rules") == 0


async def test_bad_rules_are_refused_and_change_nothing(
    client: Client, as_role: Any, db: asyncpg.Connection
) -> None:
    template = await create_template(db)
    good = {"name": "every order", "trigger": "any", "template_id": template}
    bad: list[tuple[dict[str, Any], str]] = [
        ({**good, "template_id": template + 1}, "template_id"),
        ({**good, "trigger": "bargain"}, "trigger"),
        ({**good, "sale_id": 4}, "sale_id"),
        ({**good, "trigger": "campaign"}, "sale_id"),
        ({**good, "trigger": "campaign", "sale_id": 0}, "sale_id"),
        ({**good, "trigger": "activity", "sale_id": 2**63}, "sale_id"),
        ({**good, "name": ""}, "name"),
        ({**good, "name": "a\x00b"}, "name"),
        ({**good, "name": "x" * 101}, "name"),
        ({**good, "active": "yes"}, "active"),
        ({**good, "colour": "red"}, "colour"),
        ({k: v for k, v in good.items() if k != "template_id"}, "template_id"),
    ]
    for body, field in bad:
        resp = await client.post(PATH, json=body, headers=as_role("operator"))
        answer = await resp.json()
        assert (resp.status, answer["error"], answer.get("field")) == (
            400,
            "invalid_request",
            field,
        ), body
    assert await db.fetchval("SELECT count(*) FROM coupon.grant_rules") == 0
    assert await db.fetchval("SELECT count(*) FROM coupon.admin_audit") == 0


async def test_pausing_and_renaming_a_rule_is_audited(
    client: Client, as_role: Any, db: asyncpg.Connection
) -> None:
    template = await create_template(db)
    body = {"name": "every order", "trigger": "any", "template_id": template}
    rule = await (await client.post(PATH, json=body, headers=as_role("operator"))).json()
    resp = await client.patch(
        f"{PATH}/{rule['id']}",
        json={"active": False, "name": "paused"},
        headers=as_role("operator"),
    )
    assert resp.status == 200
    assert {k: (await resp.json())[k] for k in ("name", "active")} == {
        "name": "paused",
        "active": False,
    }
    # The same change again writes nothing.
    again = await client.patch(
        f"{PATH}/{rule['id']}", json={"active": False}, headers=as_role("operator")
    )
    assert again.status == 200
    resp = await client.get(f"{PATH}/{rule['id']}/audit", headers=as_role("viewer"))
    entries = (await resp.json())["entries"]
    assert [(e["action"], e["before"], e["after"]) for e in entries] == [
        ("rule.edit", {"name": "every order", "active": True}, {"name": "paused", "active": False}),
        (
            "rule.create",
            None,
            {
                "name": "every order",
                "trigger": "any",
                "sale_id": None,
                "template_id": template,
                "active": True,
            },
        ),
    ]
    assert {e["actor"] for e in entries} == {"merchant:7"}
    resp = await client.get(f"{PATH}?active=true", headers=as_role("viewer"))
    assert (await resp.json())["total"] == 0
    resp = await client.get(
        f"{PATH}?active=false&template_id={template}", headers=as_role("viewer")
    )
    assert (await resp.json())["total"] == 1


async def test_bad_edits_and_unknown_rules_are_refused(
    client: Client, as_role: Any, db: asyncpg.Connection
) -> None:
    template = await create_template(db)
    body = {"name": "every order", "trigger": "any", "template_id": template}
    rule = await (await client.post(PATH, json=body, headers=as_role("operator"))).json()
    for edit in ({}, {"trigger": "activity"}, {"active": 1}, {"name": " "}):
        resp = await client.patch(f"{PATH}/{rule['id']}", json=edit, headers=as_role("operator"))
        assert resp.status == 400, edit
    for path in (f"{PATH}/999", f"{PATH}/abc", f"{PATH}/0"):
        resp = await client.get(path, headers=as_role("viewer"))
        assert (resp.status, (await resp.json())["error"]) == (404, "not_found")
    resp = await client.patch(f"{PATH}/999", json={"active": False}, headers=as_role("operator"))
    assert resp.status == 404
    resp = await client.get(f"{PATH}?state=on", headers=as_role("viewer"))
    assert resp.status == 400
    row = await db.fetchrow("SELECT name, active FROM coupon.grant_rules")
    assert tuple(row) == ("every order", True)
