"""Redis keys of the seckill service: one Redis Cluster slot per activity."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.seckill.keys import ACTIVITIES, activity_keys, activity_of_outbox


def hash_tag(key: str) -> str:
    """The part of a key Redis Cluster hashes: the text between the first '{' and the
    first '}' after it, when that text is not empty; otherwise the whole key."""
    start = key.find("{")
    if start == -1:
        return key
    end = key.find("}", start + 1)
    if end == -1 or end == start + 1:
        return key
    return key[start + 1 : end]


def test_the_keys_of_an_activity_are_named_under_its_tag() -> None:
    keys = activity_keys(42)
    assert keys.tag == "sk:{a42}"
    assert keys.meta == "sk:{a42}:meta"
    assert keys.stock == "sk:{a42}:stock"
    assert keys.users == "sk:{a42}:users"
    assert keys.reservations == "sk:{a42}:res"
    assert keys.outbox == "sk:{a42}:outbox"
    assert keys.idempotency == "sk:{a42}:idem"
    assert keys.rate("u-1") == "sk:{a42}:rl:u-1"


@pytest.mark.parametrize("user_id", ["u-1", "", "{a7}", "}{a7}", "a{b}c", "用户"])
def test_every_key_of_an_activity_hashes_to_the_same_tag(user_id: str) -> None:
    keys = activity_keys(42)
    all_keys = [keys.meta, keys.stock, keys.users, keys.reservations, keys.outbox, keys.idempotency]
    all_keys.append(keys.rate(user_id))
    assert {hash_tag(k) for k in all_keys} == {"a42"}


def test_the_keys_of_different_activities_hash_to_different_tags() -> None:
    assert hash_tag(activity_keys(4).stock) != hash_tag(activity_keys(42).stock)
    assert activity_keys(4).rate("u") != activity_keys(42).rate("u")


def test_different_users_have_different_rate_keys() -> None:
    assert activity_keys(42).rate("u-1") != activity_keys(42).rate("u-2")


def test_the_set_of_watched_activities_is_outside_any_activity_tag() -> None:
    assert ACTIVITIES == "sk:activities"
    assert hash_tag(ACTIVITIES) == ACTIVITIES


@settings(database=None, max_examples=200)
@given(st.integers(min_value=1, max_value=2**63 - 1))
def test_an_outbox_stream_names_its_activity(activity_id: int) -> None:
    assert activity_of_outbox(activity_keys(activity_id).outbox) == activity_id


def test_an_outbox_stream_name_is_read_back_exactly() -> None:
    assert activity_of_outbox("sk:{a42}:outbox") == 42


@pytest.mark.parametrize("stream", ["sk:activities", "sk:{a}:outbox", "sk:{ax}:outbox"])
def test_a_stream_name_that_is_not_an_outbox_raises(stream: str) -> None:
    with pytest.raises(ValueError):
        activity_of_outbox(stream)
