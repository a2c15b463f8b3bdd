"""TokenVerifier: cached verification answers exactly as a full verification would."""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
import pytest

from services.common.auth import (
    ALGORITHM,
    DEFAULT_KEY_ID,
    AuthError,
    TokenVerifier,
    principal_from_header,
)

SECRET = "unit-test-secret-0123456789abcdef0123456789"


def bearer(claims: dict[str, object], secret: str = SECRET) -> str:
    return (
        f"Bearer {jwt.encode(claims, secret, algorithm=ALGORITHM, headers={'kid': DEFAULT_KEY_ID})}"
    )


def test_a_cached_token_gives_the_same_principal_as_a_full_check() -> None:
    now = int(time.time())
    header = bearer({"sub": "u1", "iat": now, "exp": now + 60, "roles": ["admin"]})
    verifier = TokenVerifier(SECRET)
    first = verifier.principal(header)
    assert first == verifier.principal(header) == principal_from_header(header, SECRET)
    assert first.is_admin


def test_a_cached_token_is_refused_once_it_expires() -> None:
    exp = time.time() + 1.0
    header = bearer({"sub": "u1", "exp": exp})
    verifier = TokenVerifier(SECRET)
    assert verifier.principal(header).user_id == "u1"
    assert verifier.principal(header).user_id == "u1"  # from the cache
    time.sleep(max(0.0, exp - time.time()) + 0.05)
    with pytest.raises(AuthError, match="expired"):
        verifier.principal(header)


def test_the_cache_trusts_a_token_only_within_its_nbf_iat_exp_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import services.common.auth as auth

    calls = []
    real = auth._decode
    monkeypatch.setattr(auth, "_decode", lambda t, s: calls.append(t) or real(t, s))
    now = int(time.time())
    token = jwt.encode(
        {"sub": "u1", "iat": now - 10, "nbf": now - 5, "exp": now + 60},
        SECRET,
        ALGORITHM,
        headers={"kid": DEFAULT_KEY_ID},
    )
    verifier = TokenVerifier(SECRET)
    verifier.principal(f"Bearer {token}")
    verifier.principal(f"Bearer {token}")
    assert len(calls) == 1  # the second answer came from the cache
    assert verifier._cache[token][1:] == (now - 5, now + 60)


def _now() -> int:
    return int(time.time())


# Built when the test runs, not when pytest collects it: a not-yet-valid token minted at
# collection became valid in a run that reached this test more than 30 s later.
@pytest.mark.parametrize(
    "make_header",
    [
        lambda: None,
        lambda: "Basic abc",
        lambda: bearer(
            {"sub": "u1", "exp": _now() + 60}, secret="another-secret-0123456789abcdef01"
        ),
        lambda: bearer({"sub": "u1", "exp": _now() - 1}),
        lambda: bearer({"sub": "", "exp": _now() + 60}),
        lambda: bearer({"sub": "u1", "nbf": _now() + 30, "exp": _now() + 60}),
    ],
)
def test_refused_tokens_are_refused_every_time_and_never_cached(
    make_header: Callable[[], str | None],
) -> None:
    header = make_header()
    verifier = TokenVerifier(SECRET)
    for _ in range(2):
        with pytest.raises(AuthError):
            verifier.principal(header)
    assert verifier._cache == {}


def test_the_cache_is_bounded_and_drops_the_oldest_entry() -> None:
    now = int(time.time())
    verifier = TokenVerifier(SECRET, max_entries=2)
    headers = [bearer({"sub": f"u{i}", "iat": now, "exp": now + 60}) for i in range(3)]
    for h in headers:
        verifier.principal(h)
    cached = [p.user_id for p, _, _ in verifier._cache.values()]
    assert cached == ["u1", "u2"]
