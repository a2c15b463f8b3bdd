"""下单返券 rules as the merchant console edits them (docs/coupons.md, "Grant rules"):
when an order of `trigger` (any order, one flash sale's, one group-buy campaign's) is
paid, grant one coupon of `template_id`.

Pure parsing and views: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.common.errors import ValidationError
from services.common.events import rfc3339
from services.common.paging import Page, bigint_param, choice_param, parse_page, unknown_params
from services.common.validation import MAX_BIGINT, int_field, reject_unknown, text_field
from services.coupon.lifecycle_domain import Trigger

MAX_NAME = 100
RULE_FIELDS = {"name", "trigger", "sale_id", "template_id", "active"}
EDITABLE_FIELDS = {"name", "active"}
LIST_PARAMS = ("limit", "offset", "template_id", "active")
# target of the rules' entries in coupon.admin_audit
AUDIT_TARGET = "grant_rule"


@dataclass(frozen=True, slots=True)
class NewRule:
    name: str
    trigger: Trigger
    sale_id: int | None
    template_id: int
    active: bool


@dataclass(frozen=True, slots=True)
class GrantRule:
    id: int
    name: str
    trigger: str
    sale_id: int | None
    template_id: int
    active: bool
    created_by: str
    created_at: datetime
    updated_at: datetime

    def editable(self) -> dict[str, Any]:
        return {"name": self.name, "active": self.active}


@dataclass(frozen=True, slots=True)
class RuleEdit:
    name: str | None
    active: bool | None


@dataclass(frozen=True, slots=True)
class RuleFilter:
    page: Page
    template_id: int | None
    active: bool | None


def _active(body: Mapping[str, Any], default: bool | None) -> bool | None:
    if "active" not in body:
        return default
    # An explicit null is refused like any other non-boolean: it is not "leave it as is".
    value = body["active"]
    if not isinstance(value, bool):
        raise ValidationError("active", "must be true or false")
    return value


def parse_new_rule(body: dict[str, Any]) -> NewRule:
    reject_unknown(body, RULE_FIELDS)
    name = text_field(body, "name", MAX_NAME)
    raw_trigger = body.get("trigger")
    if raw_trigger not in [t.value for t in Trigger]:
        raise ValidationError("trigger", "must be one of any, activity, campaign")
    trigger = Trigger(raw_trigger)
    if trigger is Trigger.ANY:
        if body.get("sale_id") is not None:
            raise ValidationError("sale_id", "must be absent for trigger any")
        sale_id = None
    else:
        # The activity (trigger activity) or campaign (trigger campaign) id.
        sale_id = int_field(body, "sale_id", 1, MAX_BIGINT)
    return NewRule(
        name=name,
        trigger=trigger,
        sale_id=sale_id,
        template_id=int_field(body, "template_id", 1, MAX_BIGINT),
        active=bool(_active(body, True)),
    )


def parse_rule_edit(body: dict[str, Any]) -> RuleEdit:
    """PATCH {"active": bool, "name": str}: either or both; the trigger and template of a
    rule never change (a different rule is a new one, with its own grants)."""
    reject_unknown(body, EDITABLE_FIELDS)
    if not body:
        raise ValidationError("body", "name or active is required")
    name = text_field(body, "name", MAX_NAME) if "name" in body else None
    return RuleEdit(name=name, active=_active(body, None))


def edited(rule: GrantRule, edit: RuleEdit) -> dict[str, Any]:
    return {
        "name": rule.name if edit.name is None else edit.name,
        "active": rule.active if edit.active is None else edit.active,
    }


def parse_rule_filter(query: Mapping[str, str]) -> RuleFilter:
    unknown_params(query, LIST_PARAMS)
    active = choice_param(query, "active", ("true", "false"))
    return RuleFilter(
        page=parse_page(query),
        template_id=bigint_param(query, "template_id"),
        active=None if active is None else active == "true",
    )


def no_such_template() -> ValidationError:
    return ValidationError("template_id", "names no coupon template")


def rule_view(rule: GrantRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": rule.name,
        "trigger": rule.trigger,
        "sale_id": rule.sale_id,
        "template_id": rule.template_id,
        "active": rule.active,
        "created_by": rule.created_by,
        "created_at": rfc3339(rule.created_at),
        "updated_at": rfc3339(rule.updated_at),
    }
