"""The alert rules are valid, and each alert fires on synthetic failing series and stays
silent on healthy ones (promtool unit tests in deploy/prometheus/tests/)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from services.common.settings import Settings
from tests.deploy.tools import require
from tools.deploy import ROOT, RULES_DIR, local_prometheus_config
from tools.stack import SERVICES

PROMETHEUS = RULES_DIR.parent
PROMTOOL_HOW = "install the Debian package prometheus (make infra does when root)"
# runbook_url = RUNBOOK#<alert name in lower case> (docs/runbook.md documents the template).
RUNBOOK = "https://github.com/flashsale/flashsale/blob/main/docs/runbook.md"
RUNBOOK_FILE = ROOT / "docs" / "runbook.md"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require("promtool", PROMTOOL_HOW)
    return subprocess.run([binary, *args], capture_output=True, text=True, check=False, timeout=120)


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def alerts() -> list[dict[str, Any]]:
    return [
        rule
        for path in rule_files()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces
    as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(markdown: str) -> list[str]:
    """Headings outside fenced code blocks."""
    found, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6} (.+)", line)):
            found.append(m.group(1))
    return found


def alert_names() -> set[str]:
    names = set()
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {r["alert"] for r in group["rules"] if "alert" in r}
    return names


def test_promtool_accepts_the_rule_files() -> None:
    result = promtool("check", "rules", *map(str, rule_files()))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_in_a_unit_test_and_stays_silent_on_a_healthy_sale() -> None:
    tests = sorted((PROMETHEUS / "tests").glob("*.yml"))
    result = promtool("test", "rules", *map(str, tests))
    assert result.returncode == 0, result.stdout + result.stderr
    fired: set[str] = set()
    silent: set[str] = set()
    for path in tests:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    assert alert_names() - fired == set(), "alerts never shown firing"
    assert alert_names() - silent == set(), "alerts never shown silent"


def test_the_target_down_alert_watches_every_service_make_up_starts() -> None:
    (expr,) = [
        rule["expr"]
        for path in rule_files()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if rule.get("alert") == "FlashsaleTargetDown"
    ]
    (jobs,) = re.findall(r'up\{job=~"([^"]+)"\}', expr)
    assert set(jobs.split("|")) == {s.name for s in SERVICES}


def test_the_issue_s_alerts_exist() -> None:
    wanted = {
        "FlashsaleHigh5xxRate",
        "FlashsaleReservationP99AboveTarget",
        "FlashsaleConsumerLagGrowing",
        "FlashsaleOutboxBacklogGrowing",
        "FlashsaleReconciliationMismatch",
        "FlashsaleDeadLetters",
    }
    assert wanted <= alert_names()


def test_the_local_scrape_config_is_valid_and_scrapes_every_service(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    settings = Settings()
    config.write_text(local_prometheus_config(settings, [(s.name, s.ops_port) for s in SERVICES]))
    result = promtool("check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {
        j["job_name"]: j["static_configs"][0]["targets"]
        for j in yaml.safe_load(config.read_text())["scrape_configs"]
    }
    assert jobs == {s.name: [f"127.0.0.1:{getattr(settings, s.ops_port)}"] for s in SERVICES}
    assert jobs["seckill-worker"] == ["127.0.0.1:9085"]


def test_the_dashboards_queries_are_valid_promql(tmp_path: Path) -> None:
    """Every dashboard query, as a recording rule, passes promtool's parser."""
    from tools.dashboards import dashboards

    exprs = [
        t["expr"].replace("$__rate_interval", "1m")
        for board in dashboards().values()
        for panel in board["panels"]
        for t in panel["targets"]
    ]
    rules = [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_links_the_runbook_section_that_explains_it() -> None:
    text = RUNBOOK_FILE.read_text()
    anchors = {github_anchor(h) for h in headings(text)}
    assert f"runbook_url: {RUNBOOK}#<alert name in lower case>" in text  # the template
    for rule in alerts():
        url = rule["annotations"].get("runbook_url")
        assert url == f"{RUNBOOK}#{rule['alert'].lower()}", rule["alert"]
        assert url.rsplit("#", 1)[1] in anchors, f"no heading {rule['alert']} in the runbook"


def test_the_runbook_s_links_to_its_own_sections_resolve() -> None:
    text = RUNBOOK_FILE.read_text()
    anchors = {github_anchor(h) for h in headings(text)}
    links = re.findall(r"\]\(#([\w-]+)\)", text)
    assert links, "the runbook links its sections to each other"
    assert set(links) <= anchors


def test_the_mismatch_page_leaves_out_exactly_the_kinds_reconciliation_repairs_itself() -> None:
    from services.reconcile.domain import REPAIRABLE

    (rule,) = [a for a in alerts() if a["alert"] == "FlashsaleReconciliationMismatch"]
    (excluded,) = re.findall(r'kind!~"([^"]+)"', rule["expr"])
    assert set(excluded.split("|")) == {kind.value for kind in REPAIRABLE}
