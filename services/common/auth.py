"""JWT bearer authentication (PyJWT, HS256): `sub` is the user id, `roles` may hold "admin"."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"
ADMIN_ROLE = "admin"


class AuthError(Exception):
    """The request carries no valid token."""


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles


def mint_token(
    secret: str, user_id: str, roles: Iterable[str] = (), ttl_seconds: int = 3600
) -> str:
    """Issue a token as the shop's login service would (used by the demo and tests)."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + ttl_seconds}
    roles = list(roles)
    if roles:
        claims["roles"] = roles
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def _bearer_token(header: str | None) -> str:
    if not header:
        raise AuthError("missing Authorization header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError("Authorization must be 'Bearer <token>'")
    return token.strip()


def _decode(token: str, secret: str) -> dict[str, Any]:
    try:
        return dict(
            jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]})
        )
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from exc


def principal_from_header(header: str | None, secret: str) -> Principal:
    return _principal(_decode(_bearer_token(header), secret))


def _principal(claims: dict[str, Any]) -> Principal:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 128:
        raise AuthError("token subject must be a non-empty string of at most 128 characters")
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise AuthError("token roles must be a list of strings")
    return Principal(user_id=sub, roles=frozenset(roles))


class TokenVerifier:
    """principal_from_header with a bounded cache of tokens already verified.

    Verifying an HS256 token with PyJWT was a fifth of the reservation path's CPU; a
    shopper presses (and browses) with the same token many times. A cached token is
    trusted only within the time window PyJWT checked (nbf/iat <= now < exp), so the
    answer is the one a full verification would give; anything else is verified again.
    Only valid tokens are cached; the oldest entry leaves first when the cache is full.
    """

    def __init__(self, secret: str, max_entries: int = 50_000) -> None:
        self._secret = secret
        self._max = max_entries
        self._cache: dict[str, tuple[Principal, int, int]] = {}

    def principal(self, header: str | None) -> Principal:
        token = _bearer_token(header)
        hit = self._cache.get(token)
        if hit is not None:
            who, not_before, expires = hit
            if not_before <= time.time() < expires:
                return who
            del self._cache[token]
        claims = _decode(token, self._secret)
        who = _principal(claims)
        if len(self._cache) >= self._max:
            del self._cache[next(iter(self._cache))]
        # As PyJWT compares them: whole seconds (int() of the claim).
        not_before = max(int(claims.get("nbf", 0)), int(claims.get("iat", 0)))
        self._cache[token] = (who, not_before, int(claims["exp"]))
        return who
