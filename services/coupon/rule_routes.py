"""The 下单返券 rules' admin routes: parse, call, map. Viewers read, operators change."""

from __future__ import annotations

from aiohttp import web

from services.common.auth import OPERATOR_ROLE, VIEWER_ROLE
from services.common.errors import NotFound
from services.common.http import json_response, read_json_object, require_role
from services.common.validation import parse_id
from services.coupon.rules import RuleRepository
from services.coupon.rules_domain import (
    parse_new_rule,
    parse_rule_edit,
    parse_rule_filter,
    rule_view,
)

RULES: web.AppKey[RuleRepository] = web.AppKey("coupon_rules", RuleRepository)
RULES_PATH = "/api/coupons/admin/rules"


def _rule_id(request: web.Request) -> int:
    rule_id = parse_id(request.match_info["id"])
    if rule_id is None:
        raise NotFound("rule")
    return rule_id


async def create_rule(request: web.Request) -> web.Response:
    who = require_role(request, OPERATOR_ROLE)
    new = parse_new_rule(await read_json_object(request))
    rule = await request.app[RULES].create(new, who.user_id)
    return json_response(rule_view(rule), 201, {"Location": f"{RULES_PATH}/{rule.id}"})


async def list_rules(request: web.Request) -> web.Response:
    require_role(request, VIEWER_ROLE)
    wanted = parse_rule_filter(request.query)
    rules, total = await request.app[RULES].page(wanted)
    return json_response(wanted.page.view("rules", [rule_view(r) for r in rules], total))


async def get_rule(request: web.Request) -> web.Response:
    require_role(request, VIEWER_ROLE)
    return json_response(rule_view(await request.app[RULES].get(_rule_id(request))))


async def edit_rule(request: web.Request) -> web.Response:
    who = require_role(request, OPERATOR_ROLE)
    rule_id = _rule_id(request)
    edit = parse_rule_edit(await read_json_object(request))
    rule = await request.app[RULES].edit(rule_id, edit, who.user_id)
    return json_response(rule_view(rule))


async def rule_audit(request: web.Request) -> web.Response:
    require_role(request, VIEWER_ROLE)
    rules = request.app[RULES]
    rule = await rules.get(_rule_id(request))
    return json_response({"entries": await rules.audit_trail(rule.id)})


def add_routes(app: web.Application) -> None:
    app.router.add_post(RULES_PATH, create_rule)
    app.router.add_get(RULES_PATH, list_rules)
    app.router.add_get(RULES_PATH + "/{id}", get_rule)
    app.router.add_patch(RULES_PATH + "/{id}", edit_rule)
    app.router.add_get(RULES_PATH + "/{id}/audit", rule_audit)
