"""The merchant's changes to a flash sale: edit, set the stock, end, cancel.

PostgreSQL is the record and Redis the gate, and each change must reach both. Every
change locks the activity's row (SELECT ... FOR UPDATE: changes to one sale serialize),
runs its Lua script, and commits only if the script agreed; the audit entry is in the
same transaction. Where a crash between the two can leave them apart, the order is
chosen so that Redis never offers more stock than PostgreSQL records (reconciliation
and rebuild-redis take PostgreSQL's stock as the sale's initial stock), and repeating
the request brings them together (every script is idempotent).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from services.common.audit import changed_fields
from services.common.errors import NotFound
from services.common.events import from_epoch_ms, rfc3339
from services.common.resources import REDIS_UNANSWERED
from services.common.sales import (
    already_started,
    below_reserved,
    not_live,
    sale_closed,
    warm_up_pending,
)
from services.seckill.activities import ActivityRepository, LockedActivity
from services.seckill.domain import (
    WHAT,
    Activity,
    Closing,
    apply_edit,
    change_unanswered,
    check_closable,
    check_editable,
    check_stock_settable,
    editable_view,
    live_figures,
)
from services.seckill.sold_out import SoldOutFlags
from services.seckill.stock import ScriptAnswer, StockStore


def _now() -> datetime:
    return datetime.now(UTC)


async def _script(call: Awaitable[ScriptAnswer]) -> ScriptAnswer:
    try:
        return await call
    except REDIS_UNANSWERED as exc:
        raise change_unanswered() from exc


def _refused(answer: ScriptAnswer) -> None:
    """Map a script's refusal to its HTTP answer (raising makes the transaction roll
    back); "ok" passes."""
    match answer.outcome:
        case "ok":
            return
        case "not_found":
            raise warm_up_pending(WHAT)
        case "started":
            raise already_started(WHAT)
        case "closed":
            raise sale_closed(WHAT)
        case "not_live":
            raise not_live(WHAT)
        case "below_reserved":
            raise below_reserved(WHAT, int(answer.values[0]))
    raise RuntimeError(f"unexpected script answer {answer!r}")


class SaleAdmin:
    def __init__(
        self,
        activities: ActivityRepository,
        stock: StockStore,
        sold_out: SoldOutFlags,
        changed: Callable[[int], None],
    ) -> None:
        """changed(activity_id): this process's caches drop the activity."""
        self._activities = activities
        self._stock = stock
        self._sold_out = sold_out
        self._changed = changed

    @staticmethod
    def _locked(locked: LockedActivity | None) -> LockedActivity:
        if locked is None:
            raise NotFound("activity")
        return locked

    async def edit(self, activity_id: int, changes: dict[str, Any], actor: str) -> Activity:
        """Edit an upcoming sale. edit.lua re-checks "not started" against Redis's clock
        atomically with its writes; if it says started, the transaction rolls back."""
        async with self._activities.locked(activity_id) as found:
            locked = self._locked(found)
            now = _now()
            check_editable(locked.activity, now)
            edited = apply_edit(locked.activity, changes, now)
            before, after = changed_fields(editable_view(locked.activity), editable_view(edited))
            if not after:
                return locked.activity
            await locked.save_edit(edited)
            recorded = locked.activity.stock
            # More stock reaches Redis only after COMMIT, as in set_stock: a crash between
            # the two leaves Redis offering less than the record, never more.
            grow = edited.stock > recorded
            script_sees = replace(edited, stock=recorded) if grow else edited
            _refused(await _script(self._stock.edit(script_sees)))
            await locked.audit(actor, "activity.edit", before, after)
        if grow:
            _refused(await _script(self._stock.set_stock(activity_id, edited.stock, recorded)))
        self._changed(activity_id)
        return edited

    async def set_stock(self, activity_id: int, wanted: int, actor: str) -> tuple[Activity, int]:
        """Set the total stock of an upcoming or live sale; (activity, remaining).

        Growing, PostgreSQL commits first and Redis follows; shrinking, Redis goes first
        (set_total.lua refuses below the units taken) and PostgreSQL commits after. A
        crash in between leaves Redis with less stock than the record, never more: the
        sale may undersell until the same request is repeated, it cannot oversell."""
        async with self._activities.locked(activity_id) as found:
            locked = self._locked(found)
            check_stock_settable(locked.activity, _now())
            recorded = locked.activity.stock
            grow = wanted > recorded
            if grow:
                # Makes the Redis settings hold the recorded total (sales warmed before
                # they kept it), so the step after COMMIT, if it is lost and repeated,
                # still knows the total it grows from.
                _refused(await _script(self._stock.set_stock(activity_id, recorded, recorded)))
            else:
                answer = await _script(self._stock.set_stock(activity_id, wanted, recorded))
                _refused(answer)
            if wanted != recorded:
                await locked.save_stock(wanted)
                await locked.audit(actor, "activity.stock", {"stock": recorded}, {"stock": wanted})
            activity = locked.activity
        if grow:
            answer = await _script(self._stock.set_stock(activity_id, wanted, recorded))
            _refused(answer)
        remaining = int(answer.values[0])
        if remaining > 0:
            # Presses here stop answering "sold out" from memory at once; the other
            # processes' flags expire within SOLD_OUT_RECHECK_SECONDS.
            self._sold_out.clear(activity_id)
        self._changed(activity_id)
        return replace(activity, stock=wanted), remaining

    async def close(self, activity_id: int, closing: Closing, actor: str) -> Activity:
        """End (live only) or cancel (upcoming or live) a sale now; a repeat of the same
        close answers the sale unchanged. close.lua refuses presses from that moment in
        every process and, for a cancellation, appends the seckill.cancelled entry."""
        async with self._activities.locked(activity_id) as found:
            locked = self._locked(found)
            if not check_closable(locked.activity, closing, _now()):
                return locked.activity
            answer = await _script(self._stock.close(activity_id, closing))
            _refused(answer)
            at = from_epoch_ms(int(answer.values[0]))
            if closing is Closing.END:
                await locked.mark_ended_early(at)
                field = "ended_early_at"
                activity = replace(locked.activity, ended_early_at=at)
            else:
                await locked.mark_cancelled(at)
                field = "cancelled_at"
                activity = replace(locked.activity, cancelled_at=at)
            await locked.audit(
                actor, f"activity.{closing.value}", {field: None}, {field: rfc3339(at)}
            )
        self._changed(activity_id)
        return activity

    async def figures(self, activity_id: int) -> dict[str, Any]:
        """The board's figures: the activity from PostgreSQL, the counts from Redis."""
        activity = await self._activities.get(activity_id)
        if activity is None:
            raise NotFound("activity")
        counts = await self._stock.live_counts(activity_id)
        return live_figures(
            activity,
            counts.total,
            counts.remaining,
            counts.reservations,
            counts.presses,
            counts.sold_out_answers,
            _now(),
        )
