"""groupbuy_groups{state} counts the groups PostgreSQL recorded, by state."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
from prometheus_client import CollectorRegistry

from services.common.settings import Settings
from services.groupbuy.app import create_app
from services.groupbuy.state_metrics import GroupStateMetrics
from tests.helpers import create_campaign, started_client, wait_for


async def test_the_gauge_counts_open_and_completed_groups_from_the_record(
    settings: Settings, token: Callable[..., dict[str, str]], db: asyncpg.Connection
) -> None:
    api = await started_client(create_app(settings, run_sweeper=False))
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        campaign = await create_campaign(api, token("ops", admin=True), group_size=2, stock=10)
        groups = f"/api/groupbuy/campaigns/{campaign['id']}/groups"
        full = (await (await api.post(groups, headers=token("u1"))).json())["id"]
        assert (
            await api.post(f"/api/groupbuy/groups/{full}/join", headers=token("u2"))
        ).status == 201
        assert (await api.post(groups, headers=token("u3"))).status == 201

        async def recorded() -> list[tuple[str, int]]:
            rows = await db.fetch(
                "SELECT state, count(*) AS n FROM groupbuy.groups GROUP BY state ORDER BY state"
            )
            return [(r["state"], r["n"]) for r in rows]

        expected = [("completed", 1), ("open", 1)]
        assert await wait_for(recorded, expected, within=30) == expected
        metrics = GroupStateMetrics(CollectorRegistry())
        await metrics.refresh(pool)
        values = {s.labels["state"]: s.value for m in metrics.groups.collect() for s in m.samples}
        assert values == {"open": 1.0, "completed": 1.0, "failed": 0.0}
    finally:
        await pool.close()
        await api.close()
