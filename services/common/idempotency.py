"""Client idempotency keys: the `Idempotency-Key` header of the shopper's POSTs.

A shopper whose connection dropped cannot know what the server decided, nor the id it
chose. With a key, a retry gets the first answer back (same status, same body) instead of
a second reservation or join. The services record key -> outcome inside the same Lua
script that decides, so the record and the decision are one atomic fact.

Pure rules, no I/O: parsing the header and naming a record.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.common.errors import DomainError

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
# Set on an answer replayed from a record, so a client (or an operator reading logs) can
# tell a retry's answer from a fresh decision; the body is the original one.
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 64


def invalid_key(message: str) -> DomainError:
    return DomainError(400, "invalid_idempotency_key", message)


def parse_idempotency_key(values: Sequence[str]) -> str | None:
    """The key of a request's Idempotency-Key header values, or None without the header.

    1 to 64 visible ASCII characters ('!' to '~': UUIDs, base64, ULIDs fit); anything
    else, and a repeated header, is refused, so a key is never silently changed.
    """
    if not values:
        return None
    if len(values) > 1:
        raise invalid_key(f"send one {IDEMPOTENCY_KEY_HEADER} header, not {len(values)}")
    key = values[0]
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all("!" <= c <= "~" for c in key):
        raise invalid_key(
            f"{IDEMPOTENCY_KEY_HEADER} must be 1 to {MAX_KEY_LENGTH} visible ASCII characters "
            "(no spaces)"
        )
    return key


def replay_headers(headers: dict[str, str], replayed: bool) -> dict[str, str]:
    """The headers of an answer, marked when it was replayed from a record."""
    return {**headers, REPLAYED_HEADER: "true"} if replayed else headers


def replayed_if(refused: DomainError, replayed: bool) -> DomainError:
    """A refusal, marked when it was replayed from a record."""
    refused.headers = replay_headers(refused.headers, replayed)
    return refused


def record_field(action: str, key: str, user_id: str) -> str:
    """The field naming one user's key for one action in a sale's record hash.

    Scoped per user and per target: the same key from another user, or for another action
    or group, names another field, so it never returns someone else's outcome. Neither
    the action (a word or a group id) nor the key contains a space, so the first two
    spaces split the field unambiguously, whatever the user id holds.
    """
    return f"{action} {key} {user_id}"
