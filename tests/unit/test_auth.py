"""JWT bearer authentication: who the caller is, and every way a token is refused."""

from __future__ import annotations

import base64
import hmac
import time
from typing import Any

import jwt
import pytest

from services.common.auth import (
    ADMIN_ROLE,
    ALGORITHM,
    DEFAULT_KEY_ID,
    AuthError,
    KeyConfigError,
    KeySet,
    Principal,
    mint_token,
    principal_from_header,
)

SECRET = "unit-test-secret-0123456789abcdef0123456789"
OTHER_SECRET = "another-secret-0123456789abcdef0123456789ab"


def bearer(token: str) -> str:
    return f"Bearer {token}"


def own_token(
    claims: dict[str, Any], secret: str = SECRET, kid: str | None = DEFAULT_KEY_ID
) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims, secret, algorithm=ALGORITHM, headers=headers)


def future() -> int:
    return int(time.time()) + 3600


def refused(header: str | None, secret: str = SECRET) -> str:
    with pytest.raises(AuthError) as caught:
        principal_from_header(header, secret)
    return str(caught.value)


def test_a_valid_token_names_its_user_without_roles() -> None:
    principal = principal_from_header(bearer(mint_token(SECRET, "u-1")), SECRET)
    assert principal == Principal(user_id="u-1", roles=frozenset())
    assert principal.is_admin is False


def test_a_token_with_the_admin_role_is_an_admin() -> None:
    principal = principal_from_header(bearer(mint_token(SECRET, "ops", ["admin", "audit"])), SECRET)
    assert principal.roles == frozenset({"admin", "audit"})
    assert principal.is_admin is True
    assert ADMIN_ROLE == "admin"


def test_other_roles_do_not_make_an_admin() -> None:
    principal = principal_from_header(bearer(mint_token(SECRET, "u-1", ["Admin", "audit"])), SECRET)
    assert principal.is_admin is False


def test_a_minted_token_carries_sub_iat_exp_and_only_given_roles() -> None:
    before = int(time.time())
    claims = jwt.decode(mint_token(SECRET, "u-1", ttl_seconds=60), SECRET, algorithms=[ALGORITHM])
    assert set(claims) == {"sub", "iat", "exp", "jti"}
    assert jwt.get_unverified_header(mint_token(SECRET, "u-1"))["kid"] == DEFAULT_KEY_ID
    assert claims["sub"] == "u-1"
    assert claims["exp"] - claims["iat"] == 60
    assert before <= claims["iat"] <= int(time.time())


def test_the_scheme_is_case_insensitive_and_extra_spaces_before_the_token_are_ignored() -> None:
    token = mint_token(SECRET, "u-1")
    assert principal_from_header(f"bearer {token}", SECRET).user_id == "u-1"
    assert principal_from_header(f"BEARER   {token}", SECRET).user_id == "u-1"


@pytest.mark.parametrize("header", [None, ""])
def test_a_request_without_an_authorization_header_is_refused(header: str | None) -> None:
    assert refused(header) == "missing Authorization header"


@pytest.mark.parametrize(
    "header",
    ["Basic dTE6cHc=", "Token abc", "Bearer", "Bearer ", "Bearer\tabc", "abc.def.ghi"],
)
def test_a_header_that_is_not_bearer_and_a_token_is_refused(header: str) -> None:
    assert refused(header) == "Authorization must be 'Bearer <token>'"


def test_a_token_signed_with_another_secret_is_refused() -> None:
    message = refused(bearer(mint_token(OTHER_SECRET, "u-1")))
    assert message == "invalid token: Signature verification failed"


def test_an_expired_token_is_refused() -> None:
    message = refused(bearer(mint_token(SECRET, "u-1", ttl_seconds=-10)))
    assert message == "invalid token: Signature has expired"


def test_a_token_that_is_not_a_jwt_is_refused() -> None:
    assert refused(bearer("not-a-jwt")).startswith("invalid token: ")


def test_a_tampered_token_is_refused() -> None:
    header, _payload, signature = mint_token(SECRET, "u-1").split(".")
    forged_payload = own_token({"sub": "ops", "roles": ["admin"], "exp": future()}).split(".")[1]
    assert refused(bearer(f"{header}.{forged_payload}.{signature}")).startswith("invalid token: ")


def test_a_token_without_a_subject_is_refused() -> None:
    message = refused(bearer(own_token({"exp": future()})))
    assert message == 'invalid token: Token is missing the "sub" claim'


def test_a_token_without_an_expiry_is_refused() -> None:
    message = refused(bearer(own_token({"sub": "u-1"})))
    assert message == 'invalid token: Token is missing the "exp" claim'


@pytest.mark.parametrize("sub", [42, ["u-1"], None])
def test_a_token_whose_subject_is_not_a_string_is_refused(sub: Any) -> None:
    assert refused(bearer(own_token({"sub": sub, "exp": future()}))).startswith("invalid token")


@pytest.mark.parametrize("sub", ["", "u" * 129])
def test_a_subject_that_is_empty_or_longer_than_128_is_refused(sub: str) -> None:
    assert refused(bearer(own_token({"sub": sub, "exp": future()}))) == (
        "token subject must be 1 to 128 printable characters"
    )


def test_a_subject_of_exactly_128_characters_is_accepted() -> None:
    token = own_token({"sub": "u" * 128, "exp": future()})
    assert principal_from_header(bearer(token), SECRET).user_id == "u" * 128


@pytest.mark.parametrize("roles", ["admin", ["admin", 1], [None], {"admin": True}, 1])
def test_a_token_whose_roles_are_not_a_list_of_strings_is_refused(roles: Any) -> None:
    message = refused(bearer(own_token({"sub": "u-1", "exp": future(), "roles": roles})))
    assert message == "token roles must be a list of at most 16 short strings"


def test_an_unsigned_alg_none_token_is_refused() -> None:
    unsigned = jwt.encode(
        {"sub": "ops", "roles": ["admin"], "exp": future()},
        None,
        algorithm="none",
        headers={"kid": DEFAULT_KEY_ID},
    )
    assert unsigned.endswith(".")
    assert refused(bearer(unsigned)) == "invalid token: The specified alg value is not allowed"


def test_a_token_signed_with_another_hmac_algorithm_is_refused() -> None:
    token = jwt.encode(
        {"sub": "u-1", "exp": future()},
        SECRET + SECRET,
        algorithm="HS512",
        headers={"kid": DEFAULT_KEY_ID},
    )
    assert refused(bearer(token), SECRET + SECRET) == (
        "invalid token: The specified alg value is not allowed"
    )


def test_two_minted_tokens_have_different_ids() -> None:
    first, second = (
        jwt.decode(mint_token(SECRET, "u-1"), SECRET, algorithms=[ALGORITHM]) for _ in "ab"
    )
    assert first["jti"] != second["jti"]


def test_a_token_without_a_kid_header_is_refused() -> None:
    token = own_token({"sub": "u-1", "exp": future()}, kid=None)
    assert refused(bearer(token)) == "invalid token: no kid header"


def test_a_token_signed_with_a_retired_key_is_refused() -> None:
    old = KeySet.single(OTHER_SECRET, "k0")
    now = KeySet.single(SECRET, "k1")
    assert refused(bearer(mint_token(old, "u-1")), now) == (
        "invalid token: signed with an unknown or retired key"
    )


def test_a_token_naming_a_known_kid_but_signed_with_another_secret_is_refused() -> None:
    token = own_token({"sub": "u-1", "exp": future()}, secret=OTHER_SECRET, kid=DEFAULT_KEY_ID)
    assert refused(bearer(token)) == "invalid token: Signature verification failed"


def test_during_a_rotation_tokens_of_both_keys_are_accepted() -> None:
    before = KeySet.from_config(SECRET, "k1", "")
    # Step 1: every service accepts k2 before anyone signs with it.
    accepting = KeySet.from_config(SECRET, "k1", f"k2={OTHER_SECRET}")
    # Step 2: identity signs with k2; k1 stays accepted until its tokens expired.
    after = KeySet.from_config(OTHER_SECRET, "k2", f"k1={SECRET}")
    old_token, new_token = mint_token(before, "u-old"), mint_token(after, "u-new")
    for keys in (accepting, after):
        assert principal_from_header(bearer(old_token), keys).user_id == "u-old"
        assert principal_from_header(bearer(new_token), keys).user_id == "u-new"
    assert jwt.get_unverified_header(new_token)["kid"] == "k2"
    # Step 3: k1 retired.
    retired = KeySet.from_config(OTHER_SECRET, "k2", "")
    assert refused(bearer(old_token), retired).endswith("unknown or retired key")
    assert principal_from_header(bearer(new_token), retired).user_id == "u-new"


def test_an_algorithm_confusion_token_using_the_secret_as_an_rs256_key_is_refused() -> None:
    header = base64url(b'{"alg":"RS256","typ":"JWT","kid":"k1"}')
    payload = base64url(f'{{"sub":"ops","roles":["admin"],"exp":{future()}}}'.encode())
    signature = base64url(
        hmac.new(SECRET.encode(), f"{header}.{payload}".encode(), "sha256").digest()
    )
    message = refused(bearer(f"{header}.{payload}.{signature}"))
    assert message == "invalid token: The specified alg value is not allowed"


@pytest.mark.parametrize(
    ("secret", "kid", "verify", "problem"),
    [
        ("short", "k1", "", "shorter than 32 bytes"),
        (SECRET, "", "", "must be 1-64 characters"),
        (SECRET, "k1", "k2", "'kid=secret' pairs"),
        (SECRET, "k1", "k2=short", "shorter than 32 bytes"),
        (SECRET, "k1", f"k1={OTHER_SECRET}", "two different secrets"),
    ],
)
def test_unusable_key_configurations_are_refused_at_start_up(
    secret: str, kid: str, verify: str, problem: str
) -> None:
    with pytest.raises(KeyConfigError, match=problem):
        KeySet.from_config(secret, kid, verify)


def base64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize("sub", ["u\x00", "\ud800", "u\n", "\x7f", "u\u2028"])
def test_a_subject_that_is_not_printable_text_is_refused(sub: str) -> None:
    # PyJWT's json.loads lets a lone surrogate through; PostgreSQL and Redis would not.
    assert refused(bearer(own_token({"sub": sub, "exp": future()}))) == (
        "token subject must be 1 to 128 printable characters"
    )


@pytest.mark.parametrize("name", ["exp", "iat", "nbf"])
def test_a_time_claim_written_as_a_string_is_refused(name: str) -> None:
    claims: dict[str, Any] = {"sub": "u-1", "exp": future()}
    # PyJWT takes int() of these: a numeric string would pass as a time.
    claims[name] = str(int(time.time()) - 10 if name != "exp" else future())
    assert refused(bearer(own_token(claims))).startswith("invalid token")


@pytest.mark.parametrize("roles", [["viewer"] * 17, ["r" * 129]])
def test_too_many_or_too_long_roles_are_refused(roles: list[str]) -> None:
    message = refused(bearer(own_token({"sub": "u-1", "exp": future(), "roles": roles})))
    assert message == "token roles must be a list of at most 16 short strings"


@pytest.mark.parametrize(
    "token",
    ["\udcff\udcfe.a.b", "é.é.é", "a" * 4097, "a.b\x00.c", own_token({"sub": "u", "exp": 1}) + "é"],
)
def test_a_token_that_is_not_ascii_or_is_over_4096_characters_is_refused(token: str) -> None:
    # Non-UTF-8 header bytes reach us as surrogates, which PyJWT's encode() raised on.
    assert refused(bearer(token)) == "invalid token: not a JWT of at most 4096 characters"
