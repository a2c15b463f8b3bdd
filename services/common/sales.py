"""What a flash-sale activity and a group-buy campaign share: a window, a stock, the status
a shopper sees, the state a merchant sees, and the refusals of the merchant's changes
(docs/admin-api.md). Pure rules, no I/O."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from services.common.errors import DomainError


class Status(StrEnum):
    UPCOMING = "upcoming"
    LIVE = "live"
    SOLD_OUT = "sold_out"
    ENDED = "ended"


def sale_status(
    starts_at: datetime, ends_at: datetime, remaining: int, now: datetime, smallest_sale: int = 1
) -> Status:
    """smallest_sale: the fewest units one purchase takes (a group-buy group takes N)."""
    if now >= ends_at:
        return Status.ENDED
    if now < starts_at:
        return Status.UPCOMING
    return Status.SOLD_OUT if remaining < smallest_sale else Status.LIVE


class SaleState(StrEnum):
    """The merchant's view of a sale (docs/admin-api.md, "Sale states")."""

    UPCOMING = "upcoming"
    LIVE = "live"
    ENDED = "ended"
    CANCELLED = "cancelled"


SALE_STATES = frozenset(s.value for s in SaleState)


def sale_state(
    starts_at: datetime,
    ends_at: datetime,
    ended_early_at: datetime | None,
    cancelled_at: datetime | None,
    now: datetime,
) -> SaleState:
    if cancelled_at is not None:
        return SaleState.CANCELLED
    if ended_early_at is not None or now >= ends_at:
        return SaleState.ENDED
    if now < starts_at:
        return SaleState.UPCOMING
    return SaleState.LIVE


# The refusals of a merchant's change, worded for `what` is changed ("sale", "campaign").


def already_started(what: str) -> DomainError:
    return DomainError(
        409,
        "already_started",
        f"the {what} has started: only its stock can be changed now (or end or cancel it)",
    )


def sale_closed(what: str) -> DomainError:
    return DomainError(409, "sale_closed", f"the {what} has ended or was cancelled")


def warm_up_pending(what: str) -> DomainError:
    return DomainError(
        409,
        "warm_up_pending",
        f"the {what}'s stock is not in Redis yet (it is loaded as soon as Redis answers): "
        "retry shortly",
    )


def not_live(what: str) -> DomainError:
    return DomainError(409, "not_live", f"only a live {what} can be ended")


def below_reserved(what: str, reserved_units: int) -> DomainError:
    return DomainError(
        409,
        "below_reserved",
        f"{reserved_units} units of the {what} are already taken: its stock cannot be set "
        "below that",
        reserved_units=reserved_units,
    )
