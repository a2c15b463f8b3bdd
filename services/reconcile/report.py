"""The printed report of a reconciliation run (`make reconcile`) and its exit code."""

from __future__ import annotations

from services.reconcile.domain import ACTIVITY, CAMPAIGN, REPAIRABLE, Kind, RunReport, SaleReport

EXIT_OK = 0
# Something failed (a sale could not be compared, a repair did not go through: the next
# run retries) or a mismatch that no repair exists for needs a person.
EXIT_NOT_CLEAN = 1


def render(run: RunReport) -> str:
    activities = sum(s.sale == ACTIVITY for s in run.sales)
    campaigns = sum(s.sale == CAMPAIGN for s in run.sales)
    lines = [
        f"reconciled {activities} {'activity' if activities == 1 else 'activities'} and "
        f"{campaigns} {'campaign' if campaigns == 1 else 'campaigns'}"
    ]
    if run.error:
        lines.append(f"  could not list the sales: {run.error}")
    for sale in run.sales:
        lines.extend(_sale_lines(sale))
    lines.append(f"  {'kind':<30} {'found':>7} {'repaired':>9} {'failed':>7}")
    for kind in Kind:
        found = run.count(kind)
        repaired = sum(s.repaired.get(kind, 0) for s in run.sales)
        failed = sum(s.failed.get(kind, 0) for s in run.sales)
        note = "" if kind in REPAIRABLE or not found else "  needs attention"
        lines.append(f"  {kind.value:<30} {found:>7} {repaired:>9} {failed:>7}{note}")
    unreadable = sum(s.error is not None for s in run.sales) + (run.error is not None)
    failed_repairs = sum(sum(s.failed.values()) for s in run.sales)
    verdict = "clean" if exit_code(run) == EXIT_OK else "NOT CLEAN"
    lines.append(
        f"result: {verdict}: {failed_repairs} repairs failed, {unreadable} could not be "
        f"compared, {run.needs_attention} mismatches need attention"
    )
    return "\n".join(lines)


def _sale_lines(sale: SaleReport) -> list[str]:
    name = f"{sale.sale} {sale.sale_id}"
    if sale.error is not None:
        return [f"  {name}: could not be compared: {sale.error}"]
    lines = []
    for kind, found in sale.mismatches.items():
        if not found:
            continue
        line = f"  {name}: {kind.value}: found {len(found)}"
        if kind in REPAIRABLE:
            line += f", repaired {sale.repaired.get(kind, 0)}"
            if sale.failed.get(kind):
                line += f", failed {sale.failed[kind]} ({sale.repair_errors[kind]})"
        else:
            line += " (needs attention)"
        lines.append(line)
    return lines


def exit_code(run: RunReport) -> int:
    return EXIT_NOT_CLEAN if run.failures or run.needs_attention else EXIT_OK
