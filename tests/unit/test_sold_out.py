"""In-process sold-out flags: trusted for a short while, then Redis is asked again."""

from __future__ import annotations

from services.seckill.sold_out import SoldOutFlags


def test_an_activity_never_marked_is_not_known_sold_out() -> None:
    assert SoldOutFlags(recheck_seconds=0.5).is_sold_out(42, now=100.0) is False


def test_a_sold_out_flag_is_trusted_until_the_recheck_time() -> None:
    flags = SoldOutFlags(recheck_seconds=0.5)
    flags.mark(42, now=100.0)
    assert flags.is_sold_out(42, now=100.0) is True
    assert flags.is_sold_out(42, now=100.49) is True


def test_a_sold_out_flag_is_no_longer_trusted_once_the_recheck_time_has_passed() -> None:
    flags = SoldOutFlags(recheck_seconds=0.5)
    flags.mark(42, now=100.0)
    assert flags.is_sold_out(42, now=100.5) is False
    assert flags.is_sold_out(42, now=160.0) is False


def test_marking_again_after_a_recheck_trusts_the_flag_anew() -> None:
    flags = SoldOutFlags(recheck_seconds=0.5)
    flags.mark(42, now=100.0)
    flags.mark(42, now=101.0)
    assert flags.is_sold_out(42, now=101.4) is True
    assert flags.is_sold_out(42, now=101.5) is False


def test_a_flag_concerns_only_its_own_activity() -> None:
    flags = SoldOutFlags(recheck_seconds=0.5)
    flags.mark(42, now=100.0)
    assert flags.is_sold_out(43, now=100.1) is False


def test_clearing_a_flag_asks_redis_again_at_once() -> None:
    flags = SoldOutFlags(recheck_seconds=0.5)
    flags.mark(42, now=100.0)
    flags.mark(43, now=100.0)
    flags.clear(42)
    assert flags.is_sold_out(42, now=100.1) is False
    assert flags.is_sold_out(43, now=100.1) is True


def test_clearing_an_unmarked_activity_is_harmless() -> None:
    flags = SoldOutFlags(recheck_seconds=0.5)
    flags.clear(42)
    assert flags.is_sold_out(42, now=100.0) is False


def test_a_zero_recheck_time_never_trusts_a_flag() -> None:
    flags = SoldOutFlags(recheck_seconds=0)
    flags.mark(42, now=100.0)
    assert flags.is_sold_out(42, now=100.0) is False
