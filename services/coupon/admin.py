"""The merchant console's changes to a coupon template (docs/admin-api.md): edit, set
the quantity, end, and the live figures. Rules are in domain.py; this module orders the
steps.

Every change of one template runs under its admin lock (repository.LOCK_TEMPLATE) and,
inside one transaction, reads the row FOR UPDATE, writes the change and its audit entry,
and runs the Redis script before the COMMIT, rolling back when the script refuses.
Which of PostgreSQL and Redis goes first is chosen, as for flash sales, so that a crash
between the two never leaves Redis (the gate) offering more than PostgreSQL (the record)
says: a cut of the quantity and an end go to Redis first; a raise reaches Redis only after
PostgreSQL committed it (set_total.lua is idempotent on the total, so repeating the
request catches Redis up).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from services.common.audit import changed_fields
from services.common.errors import NotFound
from services.common.events import from_epoch_ms, rfc3339
from services.common.resources import REDIS_UNANSWERED
from services.common.sale_cache import SaleCache
from services.common.sales import SaleState, warm_up_pending
from services.coupon.domain import (
    WHAT,
    Template,
    already_issued,
    already_started,
    below_issued,
    change_unanswered,
    check_editable,
    creation_values,
    figures_view,
    parse_edit,
    template_ended,
    template_state,
    with_terms,
)
from services.coupon.repository import CouponRecord, TemplateChange, TemplateRepository
from services.coupon.store import CouponStore, ScriptAnswer


def _now() -> datetime:
    return datetime.now(UTC)


def _refused(answer: ScriptAnswer) -> None:
    """Map an admin script's refusal to its HTTP answer (raising rolls the transaction
    back); "ok" passes."""
    match answer.outcome:
        case "ok":
            return
        case "not_found":
            raise warm_up_pending(WHAT)
        case "started":
            raise already_started()
        case "closed":
            raise template_ended()
        case "issued":
            raise already_issued(int(answer.values[0]))
        case "below_reserved":  # set_total.lua's word for what was taken
            raise below_issued(int(answer.values[0]))
    raise RuntimeError(f"unexpected script answer {answer!r}")


class TemplateAdmin:
    def __init__(
        self,
        templates: TemplateRepository,
        coupons: CouponRecord,
        store: CouponStore,
        cache: SaleCache[Template],
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._templates = templates
        self._coupons = coupons
        self._store = store
        self._cache = cache
        self._clock = clock

    async def _script(self, answer: Any) -> ScriptAnswer:
        try:
            result: ScriptAnswer = await answer
        except REDIS_UNANSWERED as exc:
            raise change_unanswered() from exc
        return result

    @staticmethod
    async def _locked(change: TemplateChange) -> Template:
        template = await change.template()
        if template is None:
            raise NotFound("coupon template")
        if template.warmed_at is None:
            raise warm_up_pending(WHAT)
        return template

    async def edit(self, template_id: int, body: dict[str, Any], actor: str) -> Template:
        """PATCH: only before the claims open and while nothing is issued, both decided
        by Redis (edit.lua) atomically with the rewrite; the COMMIT follows only if it
        agreed."""
        async with self._templates.locked(template_id) as conn:
            async with conn.transaction():
                change = TemplateChange(conn, template_id)
                template = await self._locked(change)
                now = self._clock()
                check_editable(template, now)
                edited = with_terms(template, parse_edit(template, body, now))
                before, after = changed_fields(creation_values(template), creation_values(edited))
                updated = template
                if after:
                    updated = await change.edit(edited)
                    await change.audit(actor, "template.edit", before, after)
                # A raise waits for the COMMIT (set_total below); a cut goes in now.
                applied = min(template.quantity, edited.quantity)
                _refused(await self._script(self._store.edit(edited, applied, template.quantity)))
            if updated.quantity > applied:
                await self._set_after_commit(template_id, updated.quantity, applied)
        self._cache.forget(template_id)
        return updated

    async def set_quantity(self, template_id: int, wanted: int, actor: str) -> Template:
        """PUT .../quantity: never below the coupons issued, while the template has not
        been ended. The same quantity again changes nothing."""
        async with self._templates.locked(template_id) as conn:
            async with conn.transaction():
                change = TemplateChange(conn, template_id)
                template = await self._locked(change)
                if template.ended_early_at is not None:
                    raise template_ended()
                recorded = template.quantity
                if wanted < recorded:
                    # Redis first: it decides against the coupons issued right now, and a
                    # crash before the COMMIT leaves Redis with less, not more.
                    _refused(
                        await self._script(self._store.set_quantity(template_id, wanted, recorded))
                    )
                updated = template
                if wanted != recorded:
                    updated = await change.set_quantity(wanted)
                    await change.audit(
                        actor, "template.quantity", {"quantity": recorded}, {"quantity": wanted}
                    )
            if wanted >= recorded:
                # A raise, or the same quantity: also catches Redis up with a raise that
                # was committed before a crash.
                await self._set_after_commit(template_id, wanted, recorded)
        self._cache.forget(template_id)
        return updated

    async def end(self, template_id: int, actor: str) -> Template:
        """POST .../end: no claim and no grant from now (end.lua), whatever the state; a
        repeat answers the template unchanged."""
        async with self._templates.locked(template_id) as conn:
            async with conn.transaction():
                change = TemplateChange(conn, template_id)
                template = await self._locked(change)
                if template.ended_early_at is not None:
                    return template
                answer = await self._script(self._store.end(template_id))
                if answer.outcome not in ("ok", "already"):
                    _refused(answer)
                now = self._clock()
                # "already": Redis ended it, then the COMMIT was lost; now stands in.
                at = from_epoch_ms(int(answer.values[0])) if answer.values else now
                before = template_state(template, now).value
                updated = await change.set_ended_early(at) or replace(template, ended_early_at=at)
                await change.audit(
                    actor,
                    "template.end",
                    {"state": before},
                    {"state": SaleState.ENDED.value, "ended_early_at": rfc3339(at)},
                )
        self._cache.forget(template_id)
        return updated

    async def figures(self, template_id: int) -> dict[str, Any]:
        """The live board's reading: the quantity from Redis (the gate), the coupons from
        PostgreSQL (the record the coupons consumer keeps)."""
        template = await self._templates.get(template_id)
        if template is None:
            raise NotFound("coupon template")
        total, remaining = await self._store.quantity_figures(template_id)
        now = self._clock()
        counts = await self._coupons.counts(template_id, now)
        return figures_view(template, total, remaining, counts, now)

    async def _set_after_commit(self, template_id: int, quantity: int, recorded: int) -> None:
        _refused(await self._script(self._store.set_quantity(template_id, quantity, recorded)))
