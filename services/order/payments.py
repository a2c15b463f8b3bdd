"""Payment provider notifications: signature, parsing and what a payment does to an order.

Pure functions and dataclasses (hmac is computation, not I/O), so tests call them directly.

The provider signs each callback with HMAC-SHA256 over "<unix timestamp>.<raw body>" using
the shared secret, and sends `X-Payment-Signature: t=<unix timestamp>,v1=<hex digest>`.
A signature older than the allowed age is refused, which bounds replays; a replay within
the window carries a transaction id already recorded and changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeGuard

from services.common.errors import DomainError, ValidationError
from services.common.validation import digits, in_utc, storable
from services.order.domain import MAX_BIGINT, Order, State

SIGNATURE_HEADER = "X-Payment-Signature"
_NOTICE_FIELDS = {"transaction_id", "order_id", "amount_cents", "status", "paid_at"}
MAX_TRANSACTION_ID = 64
# Unix seconds up to the year 33658: any real timestamp, and int() never sees a long string.
MAX_TIMESTAMP = 10**12 - 1
_HEX = frozenset("0123456789abcdef")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value a provider sends (also used by tests and the demo's provider)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_signature(
    secret: str, header: str | None, body: bytes, now: datetime, max_age_seconds: int
) -> None:
    """Raises a 401 DomainError unless the header is a fresh, valid signature of body."""
    if not header:
        raise DomainError(401, "invalid_signature", f"missing {SIGNATURE_HEADER} header")
    parts = dict(p.partition("=")[::2] for p in header.split(","))
    timestamp = digits(parts.get("t", ""), 0, MAX_TIMESTAMP)
    given = parts.get("v1", "")
    # compare_digest raises TypeError on a str that is not ASCII: only a hex digest is
    # compared at all (its length leaks nothing, every valid digest has the same).
    if timestamp is None or not given or not set(given) <= _HEX:
        raise DomainError(401, "invalid_signature", "signature header must be t=<unix>,v1=<hex>")
    expected = sign(secret, timestamp, body).partition(",v1=")[2]
    if not hmac.compare_digest(expected, given):
        raise DomainError(401, "invalid_signature", "signature does not match the body")
    if abs(now.timestamp() - timestamp) > max_age_seconds:
        raise DomainError(401, "stale_signature", "signature timestamp is too old or in the future")


@dataclass(frozen=True, slots=True)
class PaymentNotice:
    transaction_id: str
    order_id: uuid.UUID
    amount_cents: int
    paid_at: datetime


def parse_notice(body: dict[str, Any]) -> PaymentNotice:
    unknown = sorted(set(body) - _NOTICE_FIELDS)
    if unknown:
        raise ValidationError(unknown[0], "unknown field")
    txn = body.get("transaction_id")
    if not is_transaction_id(txn):
        raise ValidationError(
            "transaction_id",
            f"must be a string of 1 to {MAX_TRANSACTION_ID} characters, without NUL",
        )
    raw_order = body.get("order_id")
    try:
        order_id = uuid.UUID(raw_order) if isinstance(raw_order, str) else None
    except ValueError:
        order_id = None
    if order_id is None:
        raise ValidationError("order_id", "must be an order id (UUID)")
    amount = body.get("amount_cents")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_BIGINT:
        raise ValidationError("amount_cents", "must be a positive integer")
    if body.get("status") != "success":
        raise ValidationError("status", "only 'success' notifications are accepted")
    raw_paid = body.get("paid_at")
    try:
        paid_at = (
            datetime.fromisoformat(raw_paid.replace("Z", "+00:00"))
            if isinstance(raw_paid, str)
            else None
        )
    except ValueError:
        paid_at = None
    paid_utc = None if paid_at is None or paid_at.tzinfo is None else in_utc(paid_at)
    if paid_utc is None:
        raise ValidationError("paid_at", "must be an RFC 3339 timestamp with a zone")
    return PaymentNotice(txn, order_id, amount, paid_utc)


def is_transaction_id(value: Any) -> TypeGuard[str]:
    """The provider's transaction id as orders.payments keys it: 1-64 characters that
    PostgreSQL can store."""
    return isinstance(value, str) and 1 <= len(value) <= MAX_TRANSACTION_ID and storable(value)


class PaymentOutcome(StrEnum):
    PAID = "paid"
    REFUND_REQUESTED = "refund_requested"


class RefundReason(StrEnum):
    ORDER_CANCELLED = "order_cancelled"
    ALREADY_PAID = "already_paid"


@dataclass(frozen=True, slots=True)
class PaymentDecision:
    outcome: PaymentOutcome
    refund_reason: RefundReason | None = None


def decide_payment(order: Order, notice: PaymentNotice) -> PaymentDecision:
    """What a new (not replayed) payment does to an order.

    A payment never revives a cancelled order nor takes stock again: its stock may already
    be sold to someone else. It is refunded instead; so is a second payment of a paid order.
    """
    if notice.amount_cents != order.amount_cents:
        raise DomainError(
            409,
            "amount_mismatch",
            f"paid {notice.amount_cents} cents, the order is {order.amount_cents} cents",
        )
    if order.state == State.PENDING_PAYMENT:
        return PaymentDecision(PaymentOutcome.PAID)
    if order.state == State.CANCELLED:
        return PaymentDecision(PaymentOutcome.REFUND_REQUESTED, RefundReason.ORDER_CANCELLED)
    return PaymentDecision(PaymentOutcome.REFUND_REQUESTED, RefundReason.ALREADY_PAID)
