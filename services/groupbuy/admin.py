"""The merchant console's changes to a campaign (docs/admin-api.md): edit, stock, end,
cancel, and the live figures. Rules are in domain.py; this module orders the steps.

Every change of one campaign runs under its admin lock (repository.LOCK_CAMPAIGN) and,
inside one transaction, reads the row FOR UPDATE, writes the change and its audit entry,
and runs the Redis script before the COMMIT, rolling back when the script refuses.
Which of PostgreSQL and Redis goes first is chosen so that a crash between the two
never leaves Redis (the gate) more open than PostgreSQL (the record) says: Redis takes
less stock, an end and a cancel first; a stock raise reaches Redis only after PostgreSQL
committed it (restock.lua is idempotent on the total, so a retry catches Redis up).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from services.common.audit import changed_fields
from services.common.errors import NotFound
from services.common.events import from_epoch_ms, rfc3339
from services.common.resources import REDIS_UNANSWERED
from services.common.sale_cache import SaleCache
from services.groupbuy.domain import (
    AdminResult,
    Campaign,
    admin_refusal,
    admin_state,
    check_edit_fields,
    editable_values,
    figures_view,
    parse_campaign_edit,
    parse_stock_total,
    require_not_closed,
    require_warm,
)
from services.groupbuy.repository import CampaignChange, CampaignRepository
from services.groupbuy.store import GroupStore
from services.groupbuy.sweeper import GroupSweeper

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class CampaignAdmin:
    def __init__(
        self,
        campaigns: CampaignRepository,
        store: GroupStore,
        sweeper: GroupSweeper,
        cache: SaleCache[Campaign],
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._campaigns = campaigns
        self._store = store
        self._sweeper = sweeper
        self._cache = cache
        self._clock = clock

    async def edit(self, campaign_id: int, body: dict[str, Any], actor: str) -> Campaign:
        """PATCH: only while upcoming, by Redis TIME (edit.lua re-checks it atomically
        with the rewrite; the COMMIT follows only if it agreed)."""
        check_edit_fields(body)
        async with self._campaigns.locked(campaign_id) as conn:
            async with conn.transaction():
                change = CampaignChange(conn, campaign_id)
                campaign = await self._locked(change)
                now = self._clock()
                require_not_closed(campaign, now)
                require_warm(campaign)
                edited = parse_campaign_edit(campaign, body, now)
                before, after = changed_fields(editable_values(campaign), editable_values(edited))
                updated = campaign
                if after:
                    updated = await change.edit(edited)
                    await change.audit(actor, "campaign.edit", before, after)
                # A raise waits for the COMMIT (restock below); a cut goes in now.
                applied = min(campaign.stock, edited.stock)
                result = await self._store.edit(campaign_id, edited, applied, campaign.stock)
                if result is not AdminResult.OK:
                    raise admin_refusal(result)  # rolls the transaction back
            if updated.stock > applied:
                await self._restock_after_commit(updated, applied)
        self._cache.forget(campaign_id)
        return updated

    async def set_stock(self, campaign_id: int, body: dict[str, Any], actor: str) -> Campaign:
        """PUT .../stock: the total, while upcoming or live, never below what groups hold."""
        async with self._campaigns.locked(campaign_id) as conn:
            async with conn.transaction():
                change = CampaignChange(conn, campaign_id)
                campaign = await self._locked(change)
                total = parse_stock_total(body, campaign)
                require_not_closed(campaign, self._clock())
                require_warm(campaign)
                if total < campaign.stock:
                    # Redis first: it decides against the units groups hold right now,
                    # and a crash before the COMMIT leaves Redis with less, not more.
                    cut = await self._store.restock(campaign_id, total, campaign.stock)
                    if cut.result is not AdminResult.OK:
                        raise admin_refusal(cut.result, cut.reserved)
                updated = campaign
                if total != campaign.stock:
                    updated = await change.set_stock(total)
                    await change.audit(
                        actor, "campaign.stock", {"stock": campaign.stock}, {"stock": total}
                    )
            if total >= campaign.stock:
                # A raise, or the same total: also catches Redis up with a raise that was
                # committed before a crash.
                await self._restock_after_commit(updated, campaign.stock)
        self._cache.forget(campaign_id)
        return updated

    async def end(self, campaign_id: int, actor: str) -> Campaign:
        """POST .../end: no new group from now (end.lua); open groups may still fill
        until their own deadline. A repeat answers the campaign unchanged."""
        async with self._campaigns.locked(campaign_id) as conn:
            async with conn.transaction():
                change = CampaignChange(conn, campaign_id)
                campaign = await self._locked(change)
                require_warm(campaign)
                closing = await self._store.end(campaign_id)
                if closing.result not in (AdminResult.OK, AdminResult.ALREADY):
                    raise admin_refusal(closing.result, ending=True)
                updated = campaign
                if campaign.ended_early_at is None and closing.at_ms is not None:
                    # (ALREADY here: Redis ended it, then the COMMIT was lost.)
                    at = from_epoch_ms(closing.at_ms)
                    updated = await change.set_ended_early(at) or campaign
                    await change.audit(
                        actor,
                        "campaign.end",
                        {"state": "live"},
                        {"state": "ended", "ended_early_at": rfc3339(at)},
                    )
        self._cache.forget(campaign_id)
        return updated

    async def cancel(self, campaign_id: int, actor: str) -> Campaign:
        """POST .../cancel: no new group and no join from now (cancel.lua), and every
        open group fails through expire.lua, swept here at once (and by the sweeper
        should this sweep not finish). A repeat answers the campaign unchanged."""
        async with self._campaigns.locked(campaign_id) as conn:
            async with conn.transaction():
                change = CampaignChange(conn, campaign_id)
                campaign = await self._locked(change)
                require_warm(campaign)
                closing = await self._store.cancel(campaign_id)
                if closing.result not in (AdminResult.OK, AdminResult.ALREADY):
                    raise admin_refusal(closing.result)
                updated = campaign
                if campaign.cancelled_at is None:
                    now = self._clock()
                    at = now if closing.at_ms is None else from_epoch_ms(closing.at_ms)
                    updated = await change.set_cancelled(at) or campaign
                    await change.audit(
                        actor,
                        "campaign.cancel",
                        {"state": admin_state(campaign, now).value},
                        {"state": "cancelled", "cancelled_at": rfc3339(at)},
                    )
        self._cache.forget(campaign_id)
        try:
            counts = await self._sweeper.sweep_campaign(campaign_id)
            log.info("campaign %d cancelled: %d open groups failed", campaign_id, counts["failed"])
        except REDIS_UNANSWERED as exc:
            # The groups are due: the sweeper fails them on its next round.
            log.warning(
                "campaign %d cancelled, its sweep is left to the sweeper: %r", campaign_id, exc
            )
        return updated

    async def figures(self, campaign_id: int) -> dict[str, Any]:
        """The live board's reading: stock from Redis (the gate), groups and members
        from PostgreSQL (the record the groupbuy consumer keeps)."""
        campaign = await self._campaigns.get(campaign_id)
        if campaign is None:
            raise NotFound("campaign")
        total, remaining = await self._store.stock_figures(campaign_id)
        counts = await self._campaigns.group_counts(campaign_id)
        return figures_view(campaign, total, remaining, counts, self._clock())

    @staticmethod
    async def _locked(change: CampaignChange) -> Campaign:
        campaign = await change.campaign()
        if campaign is None:
            raise NotFound("campaign")
        return campaign

    async def _restock_after_commit(self, campaign: Campaign, recorded_total: int) -> None:
        done = await self._store.restock(campaign.id, campaign.stock, recorded_total)
        if done.result is not AdminResult.OK:
            # Cannot happen for a raise (groups never hold more than the old total);
            # reconcile reports the drift should it ever.
            log.error("campaign %d: raising the stock to %d: %s", campaign.id, campaign.stock, done)
            raise admin_refusal(done.result, done.reserved)
