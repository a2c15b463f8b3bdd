"""Idempotency-Key parsing and record naming: pure rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.errors import DomainError
from services.common.idempotency import parse_idempotency_key, record_field


def test_no_header_means_no_key() -> None:
    assert parse_idempotency_key([]) is None


@pytest.mark.parametrize("key", ["a", "k" * 64, "0f8fad5b-d9cb-469f-a165-70867728950e", "!~{}"])
def test_one_to_64_visible_ascii_characters_are_a_key(key: str) -> None:
    assert parse_idempotency_key([key]) == key


@pytest.mark.parametrize("key", ["", "k" * 65, "a b", "a\tb", "caf\u00e9", "\x7f", "é" * 10])
def test_anything_else_is_refused_as_invalid_idempotency_key(key: str) -> None:
    with pytest.raises(DomainError) as caught:
        parse_idempotency_key([key])
    assert (caught.value.status, caught.value.code) == (400, "invalid_idempotency_key")
    assert "Idempotency-Key" in caught.value.message


def test_a_repeated_header_is_refused_rather_than_one_of_them_picked() -> None:
    with pytest.raises(DomainError) as caught:
        parse_idempotency_key(["k-1", "k-1"])
    assert caught.value.code == "invalid_idempotency_key"


visible = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64)


@given(
    st.tuples(st.sampled_from(["reserve", "open", "7-" + "a" * 32]), visible, st.text()),
    st.tuples(st.sampled_from(["reserve", "open", "7-" + "a" * 32]), visible, st.text()),
)
def test_two_users_keys_or_targets_never_share_a_record(
    one: tuple[str, str, str], other: tuple[str, str, str]
) -> None:
    assert (record_field(*one) == record_field(*other)) == (one == other)
