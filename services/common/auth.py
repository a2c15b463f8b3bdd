"""JWT bearer authentication (PyJWT, HS256): `sub` is the user id, `roles` may hold "admin".

Tokens are signed by the identity service with the current key and name it in the `kid`
header; every service verifies them locally against a key set (the current key plus the
keys still accepted during a rotation), never with a network call per request. A token
without a `kid`, or whose `kid` is not in the set (a retired key), is refused.
docs/identity.md says how to rotate a key without logging anybody out.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"
ADMIN_ROLE = "admin"
# Merchant roles (docs/identity.md, "Roles"): admin does everything, accounts included;
# operator runs sales (create, edit, stop); viewer reads. A shopper's token has no role.
OPERATOR_ROLE = "operator"
VIEWER_ROLE = "viewer"
ROLES = (ADMIN_ROLE, OPERATOR_ROLE, VIEWER_ROLE)
_IMPLIED = {
    ADMIN_ROLE: frozenset(ROLES),
    OPERATOR_ROLE: frozenset({OPERATOR_ROLE, VIEWER_ROLE}),
    VIEWER_ROLE: frozenset({VIEWER_ROLE}),
}
# The kid of the development key (Settings.jwt_key_id's default).
DEFAULT_KEY_ID = "k1"
# RFC 7518 3.2: an HS256 key must have at least as many bits as the hash.
MIN_SECRET_BYTES = 32
MAX_KEY_ID_LENGTH = 64
# A token we sign is a few hundred bytes; anything much larger is not one of ours and is
# refused before it is decoded. The subject is a user id or "merchant:<n>".
MAX_TOKEN_LENGTH = 4096
MAX_SUBJECT_LENGTH = 128
MAX_ROLES = 16


def grants(roles: Iterable[str], needed: str) -> bool:
    """Whether an account with these roles may do what `needed` allows (admin implies
    operator and viewer, operator implies viewer)."""
    return any(needed in _IMPLIED.get(role, frozenset()) for role in roles)


class AuthError(Exception):
    """The request carries no valid token."""


class KeyConfigError(ValueError):
    """The configured signing keys cannot be used (start-up error)."""


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles

    def may(self, needed: str) -> bool:
        return grants(self.roles, needed)


@dataclass(frozen=True, slots=True)
class KeySet:
    """Signing keys by kid: `signing_kid` signs; every key in `keys` verifies."""

    keys: Mapping[str, str]
    signing_kid: str

    def __post_init__(self) -> None:
        if self.signing_kid not in self.keys:
            raise KeyConfigError(f"the signing key {self.signing_kid!r} is not in the key set")
        for kid, secret in self.keys.items():
            if not kid or len(kid) > MAX_KEY_ID_LENGTH or not kid.isprintable() or " " in kid:
                raise KeyConfigError(f"key id {kid!r} must be 1-{MAX_KEY_ID_LENGTH} characters")
            if len(secret.encode()) < MIN_SECRET_BYTES:
                raise KeyConfigError(
                    f"the secret of key {kid!r} is shorter than {MIN_SECRET_BYTES} bytes"
                )

    @classmethod
    def single(cls, secret: str, kid: str = DEFAULT_KEY_ID) -> KeySet:
        return cls({kid: secret}, kid)

    @classmethod
    def from_config(cls, secret: str, kid: str, verify_keys: str) -> KeySet:
        """The signing key (secret, kid) plus `verify_keys`: "kid=secret,kid=secret", keys
        accepted but not used to sign (the next key before it signs, the previous one until
        the tokens it signed have expired)."""
        keys = {kid: secret}
        for item in verify_keys.split(","):
            if not item.strip():
                continue
            other_kid, sep, other_secret = item.strip().partition("=")
            if not sep:
                raise KeyConfigError("JWT_VERIFY_KEYS must be 'kid=secret' pairs, comma separated")
            if other_kid in keys and keys[other_kid] != other_secret:
                raise KeyConfigError(f"key id {other_kid!r} is given two different secrets")
            keys[other_kid] = other_secret
        return cls(keys, kid)

    @property
    def signing_secret(self) -> str:
        return self.keys[self.signing_kid]


def mint_token(
    keys: KeySet | str,
    user_id: str,
    roles: Iterable[str] = (),
    ttl_seconds: int = 3600,
) -> str:
    """Sign an access token as the identity service does: sub, roles, iat, exp, jti and the
    key's kid. A bare secret stands for the development key id (tests, the demo)."""
    key_set = KeySet.single(keys) if isinstance(keys, str) else keys
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user_id,
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": secrets.token_urlsafe(12),
    }
    roles = list(roles)
    if roles:
        claims["roles"] = roles
    return jwt.encode(
        claims,
        key_set.signing_secret,
        algorithm=ALGORITHM,
        headers={"kid": key_set.signing_kid},
    )


def _bearer_token(header: str | None) -> str:
    if not header:
        raise AuthError("missing Authorization header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError("Authorization must be 'Bearer <token>'")
    token = token.strip()
    # A JWT is base64url and dots: anything else (non-ASCII bytes arrive as surrogates,
    # which PyJWT's encode() would raise on) is refused before it is decoded.
    if len(token) > MAX_TOKEN_LENGTH or not token.isascii() or not token.isprintable():
        raise AuthError(f"invalid token: not a JWT of at most {MAX_TOKEN_LENGTH} characters")
    return token


def _decode(token: str, keys: KeySet) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from exc
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise AuthError("invalid token: no kid header")
    secret = keys.keys.get(kid)
    if secret is None:
        raise AuthError("invalid token: signed with an unknown or retired key")
    try:
        # algorithms pins HS256: "none" and any other algorithm (RS256 with our secret
        # taken for a public key, HS512, ...) are refused before the signature is looked at.
        claims = dict(
            jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]})
        )
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from exc
    for name in ("exp", "iat", "nbf"):
        # PyJWT takes int() of these: "1767225600" (a string) would pass as a time.
        value = claims.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise AuthError(f"invalid token: {name} must be a number of seconds")
    return claims


def principal_from_header(header: str | None, keys: KeySet | str) -> Principal:
    key_set = KeySet.single(keys) if isinstance(keys, str) else keys
    return _principal(_decode(_bearer_token(header), key_set))


def _principal(claims: dict[str, Any]) -> Principal:
    sub = claims.get("sub")
    # The subject becomes a user id in PostgreSQL rows and Redis scripts: printable text
    # only, so no NUL and no lone surrogate (PyJWT's json.loads lets "\ud800" through).
    if not isinstance(sub, str) or not 0 < len(sub) <= MAX_SUBJECT_LENGTH or not sub.isprintable():
        raise AuthError(f"token subject must be 1 to {MAX_SUBJECT_LENGTH} printable characters")
    roles = claims.get("roles", [])
    if (
        not isinstance(roles, list)
        or len(roles) > MAX_ROLES
        or not all(isinstance(r, str) and len(r) <= MAX_SUBJECT_LENGTH for r in roles)
    ):
        raise AuthError(f"token roles must be a list of at most {MAX_ROLES} short strings")
    return Principal(user_id=sub, roles=frozenset(roles))


class TokenVerifier:
    """principal_from_header with a bounded cache of tokens already verified.

    Verifying an HS256 token with PyJWT was a fifth of the reservation path's CPU; a
    shopper presses (and browses) with the same token many times. A cached token is
    trusted only within the time window PyJWT checked (nbf/iat <= now < exp), so the
    answer is the one a full verification would give; anything else is verified again.
    Only valid tokens are cached; the oldest entry leaves first when the cache is full.
    """

    def __init__(self, keys: KeySet | str, max_entries: int = 50_000) -> None:
        self._keys = KeySet.single(keys) if isinstance(keys, str) else keys
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
        claims = _decode(token, self._keys)
        who = _principal(claims)
        if len(self._cache) >= self._max:
            del self._cache[next(iter(self._cache))]
        # As PyJWT compares them: whole seconds (int() of the claim).
        not_before = max(int(claims.get("nbf", 0)), int(claims.get("iat", 0)))
        self._cache[token] = (who, not_before, int(claims["exp"]))
        return who
