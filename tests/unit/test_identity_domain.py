"""Identity rules without I/O: the provider's answers, rotation verdicts, client address,
when the keeper fetches."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from services.common.errors import DomainError, ValidationError
from services.common.wechat_token import AccessToken
from services.identity.domain import (
    ProviderSession,
    ProviderUnavailable,
    RefreshVerdict,
    StoredRefreshToken,
    TokenFetch,
    client_ip,
    judge_refresh,
    new_refresh_token,
    parse_login,
    parse_refresh_token,
    plan_token_fetch,
    refresh_token_hash,
    session_from_answer,
    token_from_answer,
    trusted_networks,
    within,
)

NOW = 1_800_000_000.0
LOOPBACK = trusted_networks("127.0.0.0/8,::1/128")


def test_a_well_formed_answer_gives_the_openid_and_drops_the_session_key() -> None:
    session = session_from_answer({"openid": "o1", "session_key": "secret", "unionid": "u1"})
    assert session == ProviderSession("o1", "u1")
    assert not hasattr(session, "session_key")


@pytest.mark.parametrize(
    ("errcode", "status", "code"),
    [
        (40029, 401, "invalid_code"),
        (40163, 401, "code_used"),
        (45011, 429, "provider_rate_limited"),
        (40226, 403, "user_blocked"),
        (-1, 503, "provider_unavailable"),
        (40013, 502, "provider_error"),
        ("x", 502, "provider_error"),
    ],
)
def test_each_provider_errcode_maps_to_one_refusal(errcode: Any, status: int, code: str) -> None:
    with pytest.raises(DomainError) as caught:
        session_from_answer({"errcode": errcode, "errmsg": "no"})
    assert (caught.value.status, caught.value.code) == (status, code)


@pytest.mark.parametrize(
    "answer", [[], "x", {}, {"openid": ""}, {"openid": 5}, {"openid": "o" * 129}]
)
def test_an_answer_without_a_usable_openid_is_the_provider_failing(answer: Any) -> None:
    with pytest.raises(ProviderUnavailable):
        session_from_answer(answer)


def test_a_malformed_unionid_is_dropped_not_stored() -> None:
    assert session_from_answer({"openid": "o1", "unionid": 7}).unionid is None


@pytest.mark.parametrize("code", ["", " ", "a b", "é", "x" * 129, None, 1, "a\nb"])
def test_codes_that_cannot_be_wx_login_codes_are_refused(code: Any) -> None:
    with pytest.raises(ValidationError):
        parse_login({"code": code})


def test_refresh_tokens_are_random_prefixed_and_stored_by_hash() -> None:
    first, second = new_refresh_token(), new_refresh_token()
    assert first != second and first.startswith("rt_") and len(first) == 46
    assert parse_refresh_token({"refresh_token": first}) == first
    assert refresh_token_hash(first) == refresh_token_hash(first) != refresh_token_hash(second)
    assert len(refresh_token_hash(first)) == 32


@pytest.mark.parametrize(
    ("stored", "verdict"),
    [
        (None, RefreshVerdict.UNKNOWN),
        (StoredRefreshToken(False, False, NOW + 1), RefreshVerdict.ROTATE),
        (StoredRefreshToken(False, True, NOW + 1), RefreshVerdict.REUSED),
        (StoredRefreshToken(False, False, NOW), RefreshVerdict.EXPIRED),
        # A revoked family answers revoked even for a used or expired token: no second
        # revocation, no hint which it was.
        (StoredRefreshToken(True, True, NOW + 1), RefreshVerdict.REVOKED),
        (StoredRefreshToken(True, False, NOW - 1), RefreshVerdict.REVOKED),
        # Used and expired: still a reuse (someone holds a copy).
        (StoredRefreshToken(False, True, NOW - 1), RefreshVerdict.REUSED),
    ],
)
def test_refresh_verdicts(stored: StoredRefreshToken | None, verdict: RefreshVerdict) -> None:
    assert judge_refresh(stored, NOW) is verdict


@pytest.mark.parametrize(
    ("peer", "real_ip", "expected"),
    [
        ("127.0.0.1", "203.0.113.9", "203.0.113.9"),
        ("::1", "2001:db8::1", "2001:db8::1"),
        ("198.51.100.4", "203.0.113.9", "198.51.100.4"),  # untrusted peer: header ignored
        ("127.0.0.1", "not-an-ip", "127.0.0.1"),
        ("127.0.0.1", None, "127.0.0.1"),
        (None, "203.0.113.9", "unknown"),
    ],
)
def test_the_client_address_trusts_x_real_ip_only_from_trusted_proxies(
    peer: str | None, real_ip: str | None, expected: str
) -> None:
    assert client_ip(peer, real_ip, LOOPBACK) == expected


def test_trusted_networks_parse_a_comma_separated_list() -> None:
    assert trusted_networks(" 10.0.0.0/8, ,::1/128") == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )


@pytest.mark.parametrize(
    ("current", "invalid", "plan"),
    [
        (None, None, TokenFetch(False, "missing")),
        (AccessToken("t", NOW - 1), None, TokenFetch(False, "missing")),
        (AccessToken("t", NOW + 7000), None, None),
        (AccessToken("t", NOW + 7000), "t", TokenFetch(True, "reported_invalid")),
        # A report about a token already replaced changes nothing.
        (AccessToken("t2", NOW + 7000), "t", None),
        (AccessToken("t", NOW + 299), None, TokenFetch(True, "expiring")),
    ],
)
def test_when_the_keeper_fetches(
    current: AccessToken | None, invalid: str | None, plan: TokenFetch | None
) -> None:
    assert plan_token_fetch(current, invalid, NOW, 300.0) == plan


@pytest.mark.parametrize(
    "answer",
    [
        {"errcode": 40013, "errmsg": "invalid appid"},
        {"access_token": "", "expires_in": 7200},
        {"access_token": "t", "expires_in": 0},
        {"access_token": "t", "expires_in": True},
        {"access_token": "t"},
        "oops",
    ],
)
def test_an_unusable_token_answer_is_the_provider_failing(answer: Any) -> None:
    with pytest.raises(ProviderUnavailable):
        token_from_answer(answer, NOW)


def test_a_token_answer_expires_after_expires_in() -> None:
    assert token_from_answer({"access_token": "t", "expires_in": 7200}, NOW) == AccessToken(
        "t", NOW + 7200
    )


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.9", True), ("::1", True), ("10.0.0.1", False), ("not-an-ip", False), ("", False)],
)
def test_within_tells_an_address_of_the_networks_from_any_other_text(
    address: str, expected: bool
) -> None:
    assert within(address, LOOPBACK) is expected
