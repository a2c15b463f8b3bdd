"""Idempotency-Key on the order service's shopper POST (cancel) and on the payment
callback, against the real PostgreSQL: a cancel retried with its key answers the same
order and cancels once; a bad key is refused and changes nothing; the provider's callback
is idempotent on its transaction id and never refused over the header."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from services.common.settings import Settings
from services.order.payments import SIGNATURE_HEADER, sign
from tests.helpers import payment_body
from tests.integration.test_order_http import place

Token = Callable[..., dict[str, str]]
Client = TestClient[Any, Any]


async def cancelled_events(db: asyncpg.Connection, order_id: Any) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM orders.outbox WHERE key = $1 AND payload LIKE $2",
            str(order_id),
            b'%"type":"order.cancelled"%',
        )
    )


async def test_a_cancel_retried_with_its_key_answers_the_same_order_and_cancels_once(
    orders: Client, token: Token, db: asyncpg.Connection, settings: Settings
) -> None:
    [order] = await place(db, settings, "alice", 1)
    headers = {**token("alice"), "Idempotency-Key": "cancel-1"}
    first = await orders.post(f"/api/orders/{order.id}/cancel", headers=headers)
    again = await orders.post(f"/api/orders/{order.id}/cancel", headers=headers)
    assert (first.status, again.status) == (200, 200)
    body = await first.json()
    assert body["state"] == "cancelled" and await again.json() == body
    assert await cancelled_events(db, order.id) == 1


@pytest.mark.parametrize("key", ["", "k" * 65, "two words"])
async def test_a_cancel_with_an_invalid_key_is_refused_and_the_order_stays_payable(
    orders: Client, token: Token, db: asyncpg.Connection, settings: Settings, key: str
) -> None:
    [order] = await place(db, settings, "alice", 1)
    resp = await orders.post(
        f"/api/orders/{order.id}/cancel", headers={**token("alice"), "Idempotency-Key": key}
    )
    body = await resp.json()
    assert (resp.status, body["error"]) == (400, "invalid_idempotency_key") and body["message"]
    state = await db.fetchval("SELECT state FROM orders.orders WHERE id = $1", order.id)
    assert state == "pending_payment"
    assert await cancelled_events(db, order.id) == 0


async def test_the_payment_callback_needs_no_key_and_is_never_refused_over_one(
    orders: Client, db: asyncpg.Connection, settings: Settings
) -> None:
    [order] = await place(db, settings, "alice", 1)
    body = payment_body(str(order.id), order.quantity * order.unit_price_cents, "txn-1")
    signed = {
        SIGNATURE_HEADER: sign(settings.payment_webhook_secret, int(time.time()), body),
        "Content-Type": "application/json",
    }
    answers = []
    for extra in ({}, {"Idempotency-Key": "not a valid key"}):
        resp = await orders.post("/api/payments/callback", data=body, headers={**signed, **extra})
        answers.append((resp.status, await resp.json()))
    assert [(s, b["result"], b["replayed"]) for s, b in answers] == [
        (200, "paid", False),
        (200, "paid", True),
    ]
    assert await db.fetchval("SELECT count(*) FROM orders.payments") == 1
