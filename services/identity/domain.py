"""Identity rules without I/O: login bodies, the provider's answers, refresh-token rotation,
the client address, when to fetch the platform access_token."""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import secrets
from dataclasses import dataclass
from typing import Any

from services.common.errors import DomainError, ValidationError
from services.common.events import USER_REGISTERED, Envelope, event_id_for
from services.common.wechat_token import AccessToken

SHOPPER = "shopper"
MERCHANT = "merchant"
SHOPPER_ROLES = ("shopper",)
# wx.login() codes are 32 characters today; the bound leaves room and stops a huge code
# before it reaches the provider.
MAX_CODE_LENGTH = 128
REFRESH_PREFIX = "rt_"
REFRESH_TOKEN_BYTES = 32
MAX_REFRESH_TOKEN_LENGTH = 128
# The provider's errcodes (code2Session): what each means for the caller.
ERRCODE_INVALID_CODE = 40029
ERRCODE_CODE_USED = 40163
ERRCODE_RATE_LIMITED = 45011
ERRCODE_HIGH_RISK = 40226
ERRCODE_BUSY = -1
PROVIDER_RATE_LIMIT_RETRY_SECONDS = 60
PROVIDER_DOWN_RETRY_SECONDS = 2


class ProviderUnavailable(DomainError):
    """The provider did not answer usably (down, slow, busy): 503 with Retry-After."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            503,
            "provider_unavailable",
            f"the WeChat login service did not answer ({detail}); nothing was created: "
            "retry shortly",
            {"Retry-After": str(PROVIDER_DOWN_RETRY_SECONDS)},
        )
        self.detail = detail


def _printable_token(value: Any, field: str, max_length: int) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(field, "must be a non-empty string")
    if len(value) > max_length:
        raise ValidationError(field, f"must be at most {max_length} characters")
    if not value.isascii() or not value.isprintable() or " " in value:
        raise ValidationError(field, "must be printable ASCII without spaces")
    return value


def parse_login(body: dict[str, Any]) -> str:
    """The wx.login() code of a shopper login body {"code": "..."}."""
    return _printable_token(body.get("code"), "code", MAX_CODE_LENGTH)


def parse_refresh_token(body: dict[str, Any]) -> str:
    token = _printable_token(body.get("refresh_token"), "refresh_token", MAX_REFRESH_TOKEN_LENGTH)
    if not token.startswith(REFRESH_PREFIX):
        raise ValidationError("refresh_token", "is not a refresh token")
    return token


@dataclass(frozen=True, slots=True)
class ProviderSession:
    """What code2Session says about a shopper. The session_key it also returns is never
    kept: nothing here decrypts the mini-program's encrypted data."""

    openid: str
    unionid: str | None


def session_from_answer(answer: Any) -> ProviderSession:
    """code2Session's answer, or the refusal it means for the caller."""
    if not isinstance(answer, dict):
        raise ProviderUnavailable("an answer that is not a JSON object")
    errcode = answer.get("errcode", 0)
    if errcode not in (0, None):
        raise _login_refusal(errcode)
    openid, unionid = answer.get("openid"), answer.get("unionid")
    if not isinstance(openid, str) or not 0 < len(openid) <= 128:
        raise ProviderUnavailable("an answer without an openid")
    if unionid is not None and (not isinstance(unionid, str) or not 0 < len(unionid) <= 128):
        unionid = None
    return ProviderSession(openid, unionid)


def _login_refusal(errcode: Any) -> DomainError:
    if errcode == ERRCODE_INVALID_CODE:
        return DomainError(
            401, "invalid_code", "the login code is invalid or expired: call wx.login() again"
        )
    if errcode == ERRCODE_CODE_USED:
        return DomainError(
            401, "code_used", "the login code was already used: call wx.login() again"
        )
    if errcode == ERRCODE_RATE_LIMITED:
        return DomainError(
            429,
            "provider_rate_limited",
            "WeChat is limiting logins for this user: retry later",
            {"Retry-After": str(PROVIDER_RATE_LIMIT_RETRY_SECONDS)},
        )
    if errcode == ERRCODE_HIGH_RISK:
        return DomainError(403, "user_blocked", "WeChat refuses logins of this user")
    if errcode == ERRCODE_BUSY:
        return ProviderUnavailable("busy")
    # 40013 (appid), 40125 (secret), 40002, ...: our configuration, not the shopper's fault.
    return DomainError(
        502,
        "provider_error",
        f"the WeChat login service refused the platform's request (errcode {errcode!r})",
    )


def new_user_id() -> str:
    # Random, not derived from the openid: our id says nothing about the WeChat account.
    return "u" + secrets.token_hex(12)


def registration_event(user_id: str, appid: str, session: ProviderSession, at: str) -> Envelope:
    """user.registered: notify addresses the user's messages to this openid."""
    return Envelope(
        id=event_id_for(USER_REGISTERED, f"{appid}:{session.openid}"),
        type=USER_REGISTERED,
        key=user_id,
        data={
            "user_id": user_id,
            "openid": session.openid,
            "appid": appid,
            "unionid": session.unionid,
            "registered_at": at,
        },
        at=at,
    )


def merchant_subject(merchant_id: int) -> str:
    """The `sub` of a merchant's tokens: never a shopper's id ("u..."), never a bare number."""
    return f"merchant:{merchant_id}"


def merchant_number(subject: str) -> int:
    return int(subject.removeprefix("merchant:"))


def new_refresh_token() -> str:
    return REFRESH_PREFIX + secrets.token_urlsafe(REFRESH_TOKEN_BYTES)


def refresh_token_hash(token: str) -> bytes:
    # A refresh token is 256 random bits: a plain SHA-256 cannot be reversed or guessed,
    # and lets the token be found by its hash (a slow password hash could not).
    return hashlib.sha256(token.encode()).digest()


class RefreshVerdict(enum.Enum):
    ROTATE = "ok"
    REUSED = "reused"
    EXPIRED = "expired"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class StoredRefreshToken:
    family_revoked: bool
    used: bool
    expires_at: float  # epoch seconds


def judge_refresh(stored: StoredRefreshToken | None, now: float) -> RefreshVerdict:
    """What presenting a refresh token does. A used token presented again means two
    holders: the whole family is revoked (REUSED), the newer token included."""
    if stored is None:
        return RefreshVerdict.UNKNOWN
    if stored.family_revoked:
        return RefreshVerdict.REVOKED
    if stored.used:
        return RefreshVerdict.REUSED
    if stored.expires_at <= now:
        return RefreshVerdict.EXPIRED
    return RefreshVerdict.ROTATE


def refresh_refusal(verdict: RefreshVerdict) -> DomainError:
    messages = {
        RefreshVerdict.UNKNOWN: ("invalid_refresh_token", "unknown refresh token: log in again"),
        RefreshVerdict.EXPIRED: (
            "refresh_token_expired",
            "the refresh token expired: log in again",
        ),
        RefreshVerdict.REVOKED: (
            "refresh_token_revoked",
            "the refresh token was revoked (logout, or a reuse was detected): log in again",
        ),
        RefreshVerdict.REUSED: (
            "refresh_token_reused",
            "this refresh token was already used: every token of this login is now revoked; "
            "log in again",
        ),
    }
    code, message = messages[verdict]
    return DomainError(401, code, message)


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def trusted_networks(cidrs: str) -> Networks:
    return tuple(ipaddress.ip_network(c.strip()) for c in cidrs.split(",") if c.strip())


def client_ip(
    peer: str | None,
    real_ip: str | None,
    trusted: Networks,
) -> str:
    """The client's address: the gateway's X-Real-IP when the peer is a trusted proxy,
    otherwise the peer itself (anyone else could write any X-Real-IP)."""
    peer_ip = _address(peer or "")
    if peer_ip is None:
        return peer or "unknown"
    if real_ip and within(peer_ip, trusted):
        claimed = _address(real_ip.strip())
        if claimed is not None:
            return str(claimed)
    return str(peer_ip)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address, or None. An IPv6 scope ("fe80::1%eth0") is refused: it names no
    client, and its text is anything the header said (bytes that are no UTF-8, which
    PostgreSQL would refuse to store)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return None
    return address


def within(
    address: str | ipaddress.IPv4Address | ipaddress.IPv6Address, networks: Networks
) -> bool:
    """Whether address (an address or its text; anything else is in no network) is in one
    of networks."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def token_from_answer(answer: Any, now: float) -> AccessToken:
    """stable_token's answer as the token to share, or ProviderUnavailable."""
    if not isinstance(answer, dict):
        raise ProviderUnavailable("an answer that is not a JSON object")
    errcode = answer.get("errcode", 0)
    if errcode not in (0, None):
        raise ProviderUnavailable(f"errcode {errcode!r}: {str(answer.get('errmsg', ''))[:100]}")
    token, expires_in = answer.get("access_token"), answer.get("expires_in")
    if not isinstance(token, str) or not token or len(token) > 2048:
        raise ProviderUnavailable("an answer without an access_token")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0:
        raise ProviderUnavailable("an answer without a positive expires_in")
    return AccessToken(token, now + expires_in)


@dataclass(frozen=True, slots=True)
class TokenFetch:
    """Fetch the platform access_token; `force` asks for a new one (the old stops working)."""

    force: bool
    reason: str


def plan_token_fetch(
    current: AccessToken | None, reported_invalid: str | None, now: float, ahead_seconds: float
) -> TokenFetch | None:
    """Whether the keeper fetches now. stable_token's normal mode returns the same token for
    as long as it is valid, so renewing ahead of expiry, or replacing a token the API
    refused, needs force_refresh (about 12 a day at 2 h tokens)."""
    if current is None or current.seconds_left(now) <= 0:
        return TokenFetch(force=False, reason="missing")
    if reported_invalid is not None and reported_invalid == current.value:
        return TokenFetch(force=True, reason="reported_invalid")
    if current.seconds_left(now) < ahead_seconds:
        return TokenFetch(force=True, reason="expiring")
    return None
