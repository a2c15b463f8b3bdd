"""The admin API's shared rules: roles, paging and filters, audit diffs, live figures."""

from __future__ import annotations

import asyncio

import pytest

from services.common.audit import changed_fields
from services.common.auth import OPERATOR_ROLE, VIEWER_ROLE, Principal
from services.common.errors import ValidationError
from services.common.live import FiguresCache, sse_event
from services.common.paging import MAX_LIMIT, choice_param, parse_page, unknown_params


def test_a_viewer_may_read_but_not_operate() -> None:
    viewer = Principal("merchant:1", frozenset({VIEWER_ROLE}))
    assert viewer.may(VIEWER_ROLE)
    assert not viewer.may(OPERATOR_ROLE)


def test_an_admin_may_operate_and_a_shopper_may_do_neither() -> None:
    assert Principal("merchant:1", frozenset({"admin"})).may(OPERATOR_ROLE)
    shopper = Principal("u1", frozenset())
    assert not shopper.may(VIEWER_ROLE)
    assert not shopper.may(OPERATOR_ROLE)


def test_paging_defaults_and_bounds() -> None:
    assert parse_page({}) == parse_page({"limit": "", "offset": ""})
    page = parse_page({"limit": "5", "offset": "10"})
    assert (page.limit, page.offset) == (5, 10)
    assert page.view("items", [1], 11) == {"items": [1], "total": 11, "limit": 5, "offset": 10}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": str(MAX_LIMIT + 1)}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "1e3"}, "limit"),
        ({"offset": "x"}, "offset"),
        ({"offset": "٣"}, "offset"),
    ],
)
def test_bad_paging_names_the_parameter(query: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_page(query)
    assert refused.value.field == field
    assert refused.value.status == 400


def test_a_filter_outside_its_choices_is_refused_and_absence_means_all() -> None:
    assert choice_param({}, "state", {"live"}) is None
    assert choice_param({"state": "live"}, "state", {"live"}) == "live"
    with pytest.raises(ValidationError):
        choice_param({"state": "LIVE"}, "state", {"live"})


def test_a_misspelt_filter_is_refused() -> None:
    unknown_params({"state": "live"}, {"state", "limit"})
    with pytest.raises(ValidationError) as refused:
        unknown_params({"stat": "live"}, {"state", "limit"})
    assert refused.value.field == "stat"


def test_an_audit_diff_holds_only_the_changed_fields() -> None:
    before = {"title": "a", "stock": 5, "price_cents": 100}
    after = {"title": "b", "stock": 5}
    assert changed_fields(before, after) == ({"title": "a"}, {"title": "b"})


def test_an_sse_event_is_one_json_data_line() -> None:
    assert sse_event("figures", {"n": 1}) == b'event: figures\ndata: {"n":1}\n\n'


async def test_viewers_of_one_sale_share_one_reading() -> None:
    reads: list[int] = []

    async def read(sale: int) -> dict[str, int]:
        reads.append(sale)
        await asyncio.sleep(0.01)
        return {"sale": sale, "n": len(reads)}

    cache = FiguresCache(read, ttl=60)
    first = await asyncio.gather(*(cache.get(1) for _ in range(20)))
    assert reads == [1]
    assert all(f == {"sale": 1, "n": 1} for f in first)
    await cache.get(2)
    assert reads == [1, 2]
