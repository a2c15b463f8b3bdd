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
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from services.common.errors import DomainError, ValidationError
from services.order.domain import MAX_BIGINT, Order, State

SIGNATURE_HEADER = "X-Payment-Signature"
_NOTICE_FIELDS = {"transaction_id", "order_id", "amount_cents", "status", "paid_at"}


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
    raw_ts, given = parts.get("t", ""), parts.get("v1", "")
    if not raw_ts.isascii() or not raw_ts.isdigit() or not given:
        raise DomainError(401, "invalid_signature", "signature header must be t=<unix>,v1=<hex>")
    timestamp = int(raw_ts)
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
    if not isinstance(txn, str) or not 1 <= len(txn) <= 64:
        raise ValidationError("transaction_id", "must be a string of 1 to 64 characters")
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
    if paid_at is None or paid_at.tzinfo is None:
        raise ValidationError("paid_at", "must be an RFC 3339 timestamp with a zone")
    return PaymentNotice(txn, order_id, amount, paid_at.astimezone(UTC))


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
