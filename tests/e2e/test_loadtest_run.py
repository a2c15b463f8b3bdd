"""`make loadtest` for a few seconds against real service processes: the locustfile runs
headless, the charts are drawn and the invariant checks pass.

Needs Locust (requirements-loadtest.txt, installed by `make loadtest`); skipped without it,
so `make test` stays lean.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.settings import Settings
from tests.e2e.processes import ROOT, service
from tests.gateway_process import running_gateway
from tests.helpers import free_port, settings_env
from tools.fake_wechat import running_fake_wechat

# Looked up, not imported: importing locust monkey-patches the whole test process with
# gevent, which breaks ssl for any module (selenium's urllib3) that imported it first.
for _needed in ("locust", "matplotlib"):
    if importlib.util.find_spec(_needed) is None:
        pytest.skip(f"{_needed} is not installed", allow_module_level=True)
pytestmark = pytest.mark.slow


async def test_a_short_spike_through_locust_passes_the_invariant_checks(
    settings: Settings, tmp_path: Path
) -> None:
    """Every shopper logs in through the gateway first (identity, the fake WeChat
    provider), then presses through it."""
    out = tmp_path / "run"
    async with running_fake_wechat() as fake:
        s = dataclasses.replace(
            settings,
            wechat_api_url=fake.url,
            wechat_appid=fake.appid,
            wechat_secret=fake.secret,
            gateway_port=free_port(),
            admin_gateway_port=free_port(),
        )
        async with (
            service("identity", s, tmp_path),
            service("seckill", s, tmp_path),
            service("order", s, tmp_path),
            running_gateway(s, tmp_path / "gateway") as gateway,
        ):
            done = await locust_spike(s, gateway.public, out)
        logged_in = sum(fake.logins.values())
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    checks = (out / "checks.txt").read_text()
    assert "ALL PASS" in checks and "sold out exactly" in checks, checks
    assert logged_in == 60  # one code2Session per shopper
    for name in ("report.html", "locust_stats.csv", "throughput.png", "latency.png"):
        assert (out / name).stat().st_size > 0, name


async def locust_spike(
    settings: Settings, gateway: str, out: Path
) -> subprocess.CompletedProcess[str]:
    seckill = f"http://127.0.0.1:{settings.seckill_port}"
    argv = [sys.executable, "-m", "loadtest.run", "--scenario", "spike", "--users", "60"]
    argv += ["--spawn-rate", "60", "--run-time", "8s", "--processes", "1", "--stock", "25"]
    argv += ["--host", gateway, "--admin-url", seckill]
    argv += ["--out", str(out), "--orders-timeout", "60"]
    argv += ["--", "--warmup-seconds", "2", "--spike-seconds", "3"]
    return await run_loadtest(argv, settings)


async def run_loadtest(argv: list[str], settings: Settings) -> subprocess.CompletedProcess[str]:
    """`python -m loadtest.run ...` with these settings, off the event loop (the services
    and the fake provider of the test keep answering on it)."""
    return await asyncio.to_thread(
        subprocess.run,
        argv,
        cwd=ROOT,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_a_short_group_buy_run_passes_the_group_and_payment_checks(
    settings: Settings, tmp_path: Path
) -> None:
    """Groups of 3 open for 3 s: friends race for the slots (group_full answered and not a
    failure), short circles expire and fail, leaders pay; every invariant holds."""
    out = tmp_path / "run"
    groupbuy = f"http://127.0.0.1:{settings.groupbuy_port}"
    order = f"http://127.0.0.1:{settings.order_port}"
    argv = [sys.executable, "-m", "loadtest.run", "--scenario", "groupbuy", "--users", "6"]
    argv += ["--spawn-rate", "6", "--run-time", "10s", "--processes", "1", "--stock", "60"]
    argv += ["--host", groupbuy, "--order-host", order, "--groupbuy-admin-url", groupbuy]
    argv += ["--out", str(out), "--orders-timeout", "60"]
    # Straight to the services, no gateway: the shoppers sign their own tokens.
    argv += ["--", "--group-window-seconds", "3", "--pay-share", "0.5", "--auth", "mint"]
    async with service("groupbuy", settings, tmp_path), service("order", settings, tmp_path):
        done = await run_loadtest(argv, settings)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    checks = (out / "checks.txt").read_text()
    assert "ALL PASS" in checks, checks
    for name in ("group-buy: no oversell", "failed groups' orders cancelled"):
        assert name in checks, checks
    assert "acknowledged payments applied" in checks, checks


async def test_a_short_coupon_rush_passes_the_coupon_checks(
    settings: Settings, tmp_path: Path
) -> None:
    """60 shoppers for 20 coupons: early birds are told not_started, the window opens,
    double taps are told limit_reached, the late are told exhausted; every 201 is one
    coupon row, the coupons run out exactly and nobody holds two."""
    out = tmp_path / "run"
    coupon = f"http://127.0.0.1:{settings.coupon_port}"
    argv = [sys.executable, "-m", "loadtest.run", "--scenario", "coupon-rush", "--users", "60"]
    argv += ["--spawn-rate", "60", "--run-time", "8s", "--processes", "1", "--stock", "20"]
    argv += ["--host", coupon, "--coupon-admin-url", coupon]
    argv += ["--out", str(out), "--orders-timeout", "60"]
    # Straight to the service, no gateway: the shoppers sign their own tokens.
    argv += ["--", "--warmup-seconds", "2", "--spike-seconds", "3", "--auth", "mint"]
    async with service("coupon", settings, tmp_path):
        done = await run_loadtest(argv, settings)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    checks = (out / "checks.txt").read_text()
    assert "ALL PASS" in checks and "claimed out exactly" in checks, checks
    for name in ("coupons: 201 answers recorded", "coupons: no duplicates", "claims: no 5xx"):
        assert name in checks, checks
    for name in ("coupon_claimed 20,", "coupon_exhausted", "coupon_not_started"):
        assert name in checks, checks
    for name in ("report.html", "locust_stats.csv", "throughput.png", "latency.png"):
        assert (out / name).stat().st_size > 0, name
