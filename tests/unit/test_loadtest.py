"""Pure parts of the load tests and the benchmark: shapes, scenario picking, answer logs,
the post-run invariant checks, chart data, wrk parsing and the benchmark's verdicts."""

from __future__ import annotations

import dataclasses

import pytest

from loadtest.bench import cpu, report, wrk
from loadtest.board import board_lag
from loadtest.charts import parse_history
from loadtest.demo import StoreSnapshot
from loadtest.scenarios import (
    SCENARIOS,
    Answer,
    AnswerLog,
    GroupAnswer,
    PaymentAnswer,
    SpikePlan,
    classify,
    classify_group,
    classify_payment,
    load_answers,
    needs_campaign,
    needs_sale,
    pick_user_classes,
    steady_target,
)
from loadtest.verify import (
    GroupbuySnapshot,
    GroupState,
    OrderRow,
    PaymentRow,
    RedisReservation,
    groups_settled,
    parse_group,
    parse_reservations,
    run_groupbuy_checks,
    run_load_checks,
    run_payment_checks,
)

# ------------------------------------------------------------------------- shapes


def test_spike_has_early_birds_then_the_peak_then_a_falling_tail() -> None:
    plan = SpikePlan(peak=2000, spawn_rate=500, run_time_s=60, warmup_s=10, spike_s=15)
    assert plan.target(0) == (100, pytest.approx(20.0))
    assert plan.target(9.9)[0] == 100  # type: ignore[index]
    assert plan.target(10) == (2000, 500)
    assert plan.target(24.9) == (2000, 500)
    tail = [plan.target(t)[0] for t in (25, 35, 45, 59.9)]  # type: ignore[index]
    assert tail == sorted(tail, reverse=True) and tail[0] == 2000 and tail[-1] >= 200
    assert plan.target(60) is None


def test_steady_shape_stops_at_the_run_time_only_if_there_is_one() -> None:
    assert steady_target(5, 10, 2.0, 5) is None
    assert steady_target(4.9, 10, 2.0, 5) == (10, 2.0)
    assert steady_target(10**6, 10, 2.0, None) == (10, 2.0)


# ---------------------------------------------------------------- picking classes

AVAILABLE = {
    "SpikeShopper": {"spike", "mixed"},
    "Browser": {"browse", "mixed"},
    "GroupBuyInviter": {"groupbuy", "mixed"},
    "Payer": {"payment", "mixed"},
}


def test_a_run_without_names_or_tags_runs_every_class() -> None:
    assert pick_user_classes(AVAILABLE) == list(AVAILABLE)


def test_tags_pick_whole_classes() -> None:
    assert pick_user_classes(AVAILABLE, tags=["browse"]) == ["Browser"]
    assert pick_user_classes(AVAILABLE, tags=["mixed"]) == list(AVAILABLE)
    assert pick_user_classes(AVAILABLE, tags=["groupbuy"]) == ["GroupBuyInviter"]
    assert pick_user_classes(AVAILABLE, tags=["payment"]) == ["Payer"]
    assert pick_user_classes(AVAILABLE, tags=["mixed"], exclude_tags=["spike", "groupbuy"]) == [
        "Browser",
        "Payer",
    ]


def test_named_classes_run_and_unknown_names_are_refused() -> None:
    assert pick_user_classes(AVAILABLE, names=["GroupBuyInviter"]) == ["GroupBuyInviter"]
    with pytest.raises(ValueError, match="Nope"):
        pick_user_classes(AVAILABLE, names=["Nope"])


def test_every_scenario_names_classes_and_a_mixed_day_has_them_all() -> None:
    assert all(s.user_classes and s.shape in ("spike", "steady") for s in SCENARIOS.values())
    assert SCENARIOS["groupbuy"].user_classes == ("GroupBuyInviter",)
    assert SCENARIOS["payment"].user_classes == ("Payer",)
    named = {c for s in SCENARIOS.values() if s.name != "mixed" for c in s.user_classes}
    assert set(SCENARIOS["mixed"].user_classes) == named


def test_only_the_classes_that_use_a_sale_or_a_campaign_get_one() -> None:
    assert needs_campaign(["GroupBuyInviter"]) and not needs_sale(["GroupBuyInviter"])
    assert needs_sale(["Payer"]) and not needs_campaign(["Payer"])
    assert needs_sale(["Browser", "GroupBuyInviter"])
    assert needs_campaign(["Browser", "GroupBuyInviter"])


# ------------------------------------------------------------------- answer logs


def test_answers_are_classified_by_status_and_error_code() -> None:
    assert classify(201, None) == Answer.RESERVED
    assert classify(410, "sold_out") == Answer.SOLD_OUT
    assert classify(409, "limit_reached") == Answer.LIMIT_REACHED
    assert classify(409, "not_started") == Answer.NOT_STARTED
    assert classify(429, "rate_limited") == Answer.RATE_LIMITED
    assert classify(410, "gone_fishing") == Answer.UNEXPECTED
    assert classify(500, "internal") == Answer.UNEXPECTED
    assert classify(None, None) == Answer.UNEXPECTED


def test_answer_log_counts_definitive_presses_and_survives_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a = AnswerLog()
    a.record("u1", 409, "not_started", None, 1)
    a.record("u1", 201, None, "1-a", 1)
    a.record("u1", 409, "limit_reached", None, 1)
    a.record("u2", 201, None, None, 1)  # a 201 without an id is not a reservation
    b = AnswerLog()
    b.record("u3", 410, "sold_out", None, 1)
    import json

    (tmp_path / "answers-1.json").write_text(json.dumps(a.to_json()))
    (tmp_path / "answers-2.json").write_text(json.dumps(b.to_json()))
    merged, files = load_answers(tmp_path)
    assert files == 2
    assert merged.reservations == [("u1", "1-a", 1)]
    assert dict(merged.definitive_presses) == {"u1": 2, "u3": 1}
    assert merged.answers[Answer.UNEXPECTED] == 1


def test_group_answers_are_classified_and_a_lost_race_for_the_last_slot_is_expected() -> None:
    assert classify_group("open", 201, None, "open") == GroupAnswer.OPENED
    assert classify_group("join", 201, None, "open") == GroupAnswer.JOINED
    assert classify_group("join", 201, None, "completed") == GroupAnswer.COMPLETED
    assert classify_group("join", 409, "group_full", None) == GroupAnswer.FULL
    assert classify_group("join", 409, "already_member", None) == GroupAnswer.ALREADY_MEMBER
    assert classify_group("join", 410, "group_expired", None) == GroupAnswer.EXPIRED
    assert classify_group("open", 410, "sold_out", None) == GroupAnswer.SOLD_OUT
    assert GroupAnswer.FULL in GroupAnswer.EXPECTED
    assert classify_group("join", 409, "sold_out", None) == Answer.UNEXPECTED
    assert classify_group("join", 500, "internal", None) == Answer.UNEXPECTED
    assert classify_group("join", None, None, None) == Answer.UNEXPECTED


def test_payment_answers_are_classified_by_the_outcome() -> None:
    assert classify_payment(200, "paid") == PaymentAnswer.PAID
    assert classify_payment(200, "refund_requested") == PaymentAnswer.REFUND_REQUESTED
    assert classify_payment(401, None) == Answer.UNEXPECTED
    assert classify_payment(200, "maybe") == Answer.UNEXPECTED


def test_group_and_payment_answers_survive_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a = AnswerLog()
    a.record_group("open", "lead", 201, None, "7-g1")
    a.record_group("join", "f1", 201, None, "7-g1", "completed")
    a.record_group("join", "f2", 409, "group_full", None)
    a.record_group("open", "lead2", 201, None, None)  # a 201 without a group id
    a.record_payment("o-1", "t-1", 200, "paid")
    a.record_payment("o-2", "t-2", 401, None)
    import json

    (tmp_path / "answers-1.json").write_text(json.dumps(a.to_json()))
    merged, _ = load_answers(tmp_path)
    assert merged.groups == [("7-g1", "lead")]
    assert merged.joins == [("7-g1", "f1", True)]
    assert merged.payments == [("o-1", "t-1", "paid")]
    assert merged.answers[GroupAnswer.FULL] == 1
    assert merged.answers[Answer.UNEXPECTED] == 2


# ------------------------------------------------------------ post-run invariants


def _snapshot(orders: list[str], by_user: dict[str, int], remaining: int) -> StoreSnapshot:
    return StoreSnapshot(
        order_reservation_ids=orders,
        order_units_by_user=by_user,
        order_units_total=sum(by_user.values()),
        redis_remaining=remaining,
        redis_held_by_user=dict(by_user),
        api_remaining=remaining,
        api_status="live",
    )


def _answers(*rows: tuple[str, int | None, str | None, str | None]) -> AnswerLog:
    log = AnswerLog()
    for user, status, error, rid in rows:
        log.record(user, status, error, rid, 1)
    return log


def _failed(checks) -> list[str]:  # type: ignore[no-untyped-def]
    return [c.name for c in checks if not c.passed]


def test_a_clean_sale_passes_every_check() -> None:
    answers = _answers(
        ("u1", 201, None, "1-a"), ("u2", 201, None, "1-b"), ("u3", 410, "sold_out", None)
    )
    recorded = [
        RedisReservation("1-a", "u1", 1, "reserved"),
        RedisReservation("1-b", "u2", 1, "reserved"),
    ]
    checks = run_load_checks(
        stock=2,
        per_user_limit=1,
        answers=answers,
        processes=1,
        recorded=recorded,
        snapshot=_snapshot(["1-a", "1-b"], {"u1": 1, "u2": 1}, 0),
    )
    assert _failed(checks) == []


def test_oversell_a_lost_order_and_a_lost_acknowledgement_are_each_caught() -> None:
    answers = _answers(("u1", 201, None, "1-a"), ("u2", 201, None, "1-b"), ("u3", 201, None, "1-c"))
    recorded = [
        RedisReservation("1-a", "u1", 1, "reserved"),
        RedisReservation("1-b", "u2", 1, "reserved"),
    ]
    checks = run_load_checks(
        stock=1,
        per_user_limit=1,
        answers=answers,
        processes=2,
        recorded=recorded,
        snapshot=_snapshot(["1-a"], {"u1": 1}, -1),
    )
    assert set(_failed(checks)) >= {
        "no oversell",
        "201 answers recorded",
        "reservation -> exactly one order",
        "stock conservation",
    }


def test_stock_left_while_a_shopper_was_told_sold_out_fails() -> None:
    answers = _answers(("u1", 201, None, "1-a"), ("u2", 410, "sold_out", None))
    checks = run_load_checks(
        stock=5,
        per_user_limit=1,
        answers=answers,
        processes=1,
        recorded=[RedisReservation("1-a", "u1", 1, "reserved")],
        snapshot=_snapshot(["1-a"], {"u1": 1}, 4),
    )
    assert _failed(checks) == ["no oversell"]


def test_a_user_over_the_limit_or_an_unexpected_answer_fails() -> None:
    answers = _answers(("u1", 201, None, "1-a"), ("u1", 201, None, "1-b"), ("u2", 500, "x", None))
    recorded = [
        RedisReservation("1-a", "u1", 1, "reserved"),
        RedisReservation("1-b", "u1", 1, "reserved"),
    ]
    checks = run_load_checks(
        stock=10,
        per_user_limit=1,
        answers=answers,
        processes=1,
        recorded=recorded,
        snapshot=_snapshot(["1-a", "1-b"], {"u1": 2}, 8),
    )
    assert "per-user limit" in _failed(checks)
    assert "answers as expected" in _failed(checks)


def test_no_answer_files_means_the_checks_cannot_pass() -> None:
    checks = run_load_checks(
        stock=1,
        per_user_limit=1,
        answers=AnswerLog(),
        processes=0,
        recorded=[],
        snapshot=_snapshot([], {}, 1),
    )
    assert "answers as expected" in _failed(checks)


def test_redis_reservations_hash_is_parsed() -> None:
    raw = {b"7-x": b'{"state":"reserved","user":"u9","qty":2,"at":"1","deadline":"2"}'}
    assert parse_reservations(raw) == [RedisReservation("7-x", "u9", 2, "reserved")]


# ------------------------------------------------------ group-buy and payment checks

G1, G2, G3 = "7-aa", "7-bb", "7-cc"


def _group(gid: str, state: str, members: tuple[str, ...], how: str = "") -> GroupState:
    return GroupState(gid, state, how, 3, members, deadline_ms=2_000)


def _gorder(
    gid: str,
    user: str,
    state: str = "pending_payment",
    reason: str | None = None,
    group_state: str = "open",
    paid: bool = False,
) -> OrderRow:
    return OrderRow(f"o-{gid}-{user}", f"{gid}:{user}", user, state, reason, paid, gid, group_state)


def _clean_campaign() -> tuple[GroupbuySnapshot, AnswerLog]:
    """Stock 9, N = 3: G1 completed in full, G2 failed (one friend only), G3 still open."""
    groups = {
        G1: _group(G1, "completed", ("a", "b", "c"), "full"),
        G2: _group(G2, "failed", ("d", "e")),
        G3: _group(G3, "open", ("f",)),
    }
    orders = [_gorder(G1, u, group_state="completed") for u in ("a", "b", "c")]
    orders += [_gorder(G2, u, "cancelled", "group_failed", "failed") for u in ("d", "e")]
    orders.append(_gorder(G3, "f"))
    answers = AnswerLog()
    for gid, leader in ((G1, "a"), (G2, "d"), (G3, "f")):
        answers.record_group("open", leader, 201, None, gid)
    answers.record_group("join", "b", 201, None, G1, "open")
    answers.record_group("join", "c", 201, None, G1, "completed")
    answers.record_group("join", "x", 409, "group_full", None)
    answers.record_group("join", "e", 201, None, G2, "open")
    snapshot = GroupbuySnapshot(
        remaining=3,  # 9 - 3 sold to G1 - 3 held by G3 (G2's came back)
        redis_groups=groups,
        pg_groups=dict(groups),
        orders=orders,
        now_ms=1_000,
    )
    return snapshot, answers


def _gb_failed(snapshot: GroupbuySnapshot, answers: AnswerLog, stock: int = 9) -> list[str]:
    return _failed(run_groupbuy_checks(stock=stock, answers=answers, snapshot=snapshot))


def test_a_clean_campaign_passes_every_group_check_and_is_settled() -> None:
    snapshot, answers = _clean_campaign()
    assert _gb_failed(snapshot, answers) == []
    assert groups_settled(snapshot)


def test_an_oversold_campaign_fails() -> None:
    snapshot, answers = _clean_campaign()
    assert _gb_failed(snapshot, answers, stock=5) == ["group-buy: no oversell"]
    negative = GroupbuySnapshot(-1, snapshot.redis_groups, snapshot.pg_groups, snapshot.orders, 0)
    assert "group-buy: no oversell" in _gb_failed(negative, answers)


def test_a_group_completed_short_or_twice_or_over_n_fails() -> None:
    snapshot, answers = _clean_campaign()
    answers.record_group("join", "z", 201, None, G1, "completed")  # a second completion
    assert "group-buy: N members, one completion" in _gb_failed(snapshot, answers)
    snapshot, answers = _clean_campaign()
    short = dict(snapshot.redis_groups, **{G1: _group(G1, "completed", ("a", "b"), "full")})
    snap = GroupbuySnapshot(4, short, short, snapshot.orders, 0)
    assert "group-buy: N members, one completion" in _gb_failed(snap, answers)
    crowded = dict(snapshot.redis_groups, **{G3: _group(G3, "open", ("f", "g", "h", "i"))})
    snap = GroupbuySnapshot(3, crowded, crowded, snapshot.orders, 0)
    assert "group-buy: N members, one completion" in _gb_failed(snap, answers)


def test_a_lost_join_or_a_record_that_differs_from_redis_fails() -> None:
    snapshot, answers = _clean_campaign()
    answers.record_group("join", "ghost", 201, None, G3, "open")
    assert _gb_failed(snapshot, answers) == ["group-buy: 201 answers recorded"]
    snapshot, answers = _clean_campaign()
    record = dict(snapshot.pg_groups, **{G2: _group(G2, "open", ("d", "e"))})
    snap = GroupbuySnapshot(3, snapshot.redis_groups, record, snapshot.orders, 1_000)
    assert _gb_failed(snap, answers) == ["group-buy: 201 answers recorded"]
    assert not groups_settled(snap)


def test_a_member_without_an_order_or_an_order_of_a_stranger_fails() -> None:
    snapshot, answers = _clean_campaign()
    missing = [o for o in snapshot.orders if o.user_id != "b"]
    snap = GroupbuySnapshot(3, snapshot.redis_groups, snapshot.pg_groups, missing, 1_000)
    assert _gb_failed(snap, answers) == ["group member -> exactly one order"]
    assert not groups_settled(snap)
    stranger = [*snapshot.orders, _gorder(G3, "stranger")]
    snap = GroupbuySnapshot(3, snapshot.redis_groups, snapshot.pg_groups, stranger, 1_000)
    assert _gb_failed(snap, answers) == ["group member -> exactly one order"]


def test_a_failed_group_with_a_live_order_fails_and_so_does_a_wrong_group_failed() -> None:
    snapshot, answers = _clean_campaign()
    live = [
        _gorder(G2, "e", group_state="failed") if o.reservation_id == f"{G2}:e" else o
        for o in snapshot.orders
    ]
    snap = GroupbuySnapshot(3, snapshot.redis_groups, snapshot.pg_groups, live, 1_000)
    assert _gb_failed(snap, answers) == ["failed groups' orders cancelled"]
    wrong = [
        _gorder(G1, "a", "cancelled", "group_failed", "completed")
        if o.reservation_id == f"{G1}:a"
        else o
        for o in snapshot.orders
    ]
    snap = GroupbuySnapshot(3, snapshot.redis_groups, snapshot.pg_groups, wrong, 1_000)
    assert _gb_failed(snap, answers) == ["failed groups' orders cancelled"]


def test_an_unswept_group_past_its_deadline_is_not_settled() -> None:
    snapshot, _ = _clean_campaign()
    later = GroupbuySnapshot(3, snapshot.redis_groups, snapshot.pg_groups, snapshot.orders, 5_000)
    assert not groups_settled(later)


def test_a_groups_redis_hash_is_parsed() -> None:
    raw = {
        b"state": b"completed",
        b"how": b"full",
        b"size": b"3",
        b"deadline": b"99",
        b"released:b": b"1",
    }
    g = parse_group("7-aa", raw, [b"a", b"b", b"c"])
    assert g == GroupState("7-aa", "completed", "full", 3, ("a", "b", "c"), 99, 1)


def _seckill_order(oid: str, state: str, reason: str | None = None, paid: bool = False) -> OrderRow:
    return OrderRow(oid, f"r-{oid}", "u", state, reason, paid)


def _pay_failed(
    answered: list[tuple[str, str, str]], orders: list[OrderRow], payments: list[PaymentRow]
) -> list[str]:
    answers = AnswerLog()
    answers.payments = answered
    return _failed(run_payment_checks(answers=answers, orders=orders, payments=payments))


def test_clean_payments_pass_including_a_refunded_group_order_and_a_replay() -> None:
    orders = [
        _seckill_order("o1", "paid", paid=True),
        _seckill_order("o2", "pending_payment"),
        _seckill_order("o3", "cancelled", "timeout"),
        OrderRow("o4", "7-bb:d", "d", "cancelled", "group_failed", True, "7-bb", "failed"),
    ]
    payments = [
        PaymentRow("t1", "o1", "applied", None),
        PaymentRow("t3", "o3", "refund_requested", "order_cancelled"),
        PaymentRow("t4", "o4", "applied", None),
    ]
    answered = [
        ("o1", "t1", "paid"),
        ("o1", "t1", "paid"),
        ("o3", "t3", "refund_requested"),
        ("o4", "t4", "paid"),
    ]
    assert _pay_failed(answered, orders, payments) == []


def test_an_order_paid_and_cancelled_for_another_reason_fails() -> None:
    orders = [_seckill_order("o1", "cancelled", "timeout", paid=True)]
    payments = [PaymentRow("t1", "o1", "applied", None)]
    assert _pay_failed([], orders, payments) == ["no order both paid and cancelled"]
    twice = [_seckill_order("o1", "paid", paid=True)]
    two = [PaymentRow("t1", "o1", "applied", None), PaymentRow("t2", "o1", "applied", None)]
    assert _pay_failed([], twice, two) == ["no order both paid and cancelled"]


def test_an_acknowledged_payment_that_did_not_stick_fails() -> None:
    orders = [_seckill_order("o1", "pending_payment"), _seckill_order("o2", "paid", paid=True)]
    payments = [PaymentRow("t2", "o2", "applied", None)]
    lost = [("o1", "t1", "paid"), ("o2", "t2", "paid")]
    assert _pay_failed(lost, orders, payments) == ["acknowledged payments applied"]
    unpaid = [_seckill_order("o1", "pending_payment")]
    recorded = [PaymentRow("t1", "o1", "applied", None)]
    assert "acknowledged payments applied" in _pay_failed([("o1", "t1", "paid")], unpaid, recorded)
    flip = [("o2", "t2", "paid"), ("o2", "t2", "refund_requested")]
    assert _pay_failed(flip, orders[1:], payments) == ["acknowledged payments applied"]


# ------------------------------------------------------------------------ charts

HEADER = ",".join(
    [
        "Timestamp",
        "User Count",
        "Type",
        "Name",
        "Requests/s",
        "Failures/s",
        "50%",
        "66%",
        "75%",
        "80%",
        "90%",
        "95%",
        "98%",
        "99%",
        "99.9%",
        "99.99%",
        "100%",
        "Total Request Count",
        "Total Failure Count",
        "Total Median Response Time",
        "Total Average Response Time",
        "Total Min Response Time",
        "Total Max Response Time",
        "Total Average Content Size",
    ]
)
HISTORY = f"""{HEADER}
1700000000,0,,Aggregated,0.0,0.0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,0,0,0,0,0,0,0
1700000001,5,POST,/r,9.0,0.0,2,2,2,2,2,2,2,2,2,2,2,9,0,2,2.0,1,3,80.0
1700000002,10,,Aggregated,12.5,0.5,3,4,5,6,7,8,9,10,11,12,13,20,1,3,3.5,1,13,80.0
"""


def test_history_rows_of_all_requests_become_points_in_time() -> None:
    points = parse_history(HISTORY.splitlines(keepends=True))
    assert [(p.t_s, p.users, p.rps) for p in points] == [(0.0, 0, 0.0), (2.0, 10, 12.5)]
    assert points[0].p99_ms is None
    assert (points[1].p50_ms, points[1].p95_ms, points[1].p99_ms, points[1].failures_per_s) == (
        3.0,
        8.0,
        10.0,
        0.5,
    )


# --------------------------------------------------------------------------- wrk

WRK_OUT = """Running 10s test @ http://127.0.0.1:38081/api/seckill/activities/3/reservations
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    17.01ms    5.20ms  96.32ms   80.00%
    Req/Sec     3.78k   320.11     4.20k    71.00%
  Latency Distribution
     50%  850.00us
     75%   18.50ms
     90%   22.10ms
     99%    1.02s
  37712 requests in 10.00s, 9.57MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 12
Requests/sec:   3771.20
Transfer/sec:      0.96MB
"""


def test_wrk_report_is_parsed_with_its_units() -> None:
    r = wrk.parse(WRK_OUT)
    assert (r.requests, r.seconds, r.rps) == (37712, 10.0, 3771.2)
    assert (r.p50_ms, r.p99_ms) == (0.85, 1020.0)
    assert (r.non_2xx, r.socket_errors) == (12, 3)
    assert r.ok_rps == pytest.approx((37712 - 12) / 10)


def test_wrk_output_without_numbers_is_an_error() -> None:
    with pytest.raises(wrk.WrkError):
        wrk.parse("unable to connect to 127.0.0.1:1 Connection refused")
    with pytest.raises(wrk.WrkError):
        wrk.to_ms("12 parsecs")


def test_wrk_command_pins_the_client_when_asked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    argv = wrk.command("http://x/y", tmp_path / "t", connections=8, threads=1, seconds=5, cpus="1")
    assert argv[:3] == ["taskset", "-c", "1"] and "-c8" in argv and "-d5s" in argv
    assert argv[-2:] == ["--", str(tmp_path / "t")]  # rotate.lua's own body


def test_a_claim_round_sends_its_own_body_after_the_tokens(tmp_path) -> None:  # type: ignore[no-untyped-def]
    argv = wrk.command("http://x/y", tmp_path / "t", connections=8, threads=1, seconds=5, body="{}")
    assert argv[-3:] == ["--", str(tmp_path / "t"), "{}"]
    assert "args[2]" in wrk.ROTATE_LUA.read_text()


# ------------------------------------------------------------ benchmark verdicts


def _wrk(rps: float, p50: float = 1.0, p99: float = 2.0) -> wrk.WrkResult:
    return wrk.WrkResult(int(rps * 10), 10.0, rps, p50, p99, 0, 0)


def test_summary_takes_medians_over_rounds() -> None:
    s = report.summarize("hello", [_wrk(100, 1, 9), _wrk(300, 3, 7), _wrk(200, 2, 8)])
    assert (s.rps, s.p50_ms, s.p99_ms, s.rps_all) == (200, 2, 8, (100, 300, 200))


def _summaries(
    hello: float, reserve: float, naive: float, claim: float | None = None
) -> dict[str, report.Summary]:
    return {
        "hello": report.summarize("hello", [_wrk(hello)]),
        "reserve": report.summarize("reserve", [_wrk(reserve)]),
        "naive": report.summarize("naive", [_wrk(naive)]),
        "claim": report.summarize("claim", [_wrk(reserve if claim is None else claim)]),
    }


def test_verdicts_compare_against_the_issue_targets() -> None:
    good = report.Pipeline(100, 100, 5000, 40.0, 300.0, 0)
    drain = report.Pipeline(100, 100, 9000, None, None, 0)
    ok = report.verdicts(_summaries(10000, 7000, 500), [good], drain)
    assert all(v.passed for v in ok), ok
    slow = report.Pipeline(100, 100, 5000, 40.0, 1500.0, 1)
    missed = report.verdicts(_summaries(10000, 5000, 600, claim=3999), [slow], None)
    assert {v.name for v in missed if not v.passed} == {
        "reserve / hello",
        "reserve / naive PostgreSQL",
        "claim / reserve",
        "reservation -> order p99 (worst round)",
        "invariant violations",
    }


def test_claims_within_20_percent_of_reservations_pass_and_a_bad_coupon_record_fails() -> None:
    good = report.Pipeline(100, 100, 5000, 40.0, 300.0, 0)
    near = report.verdicts(_summaries(10000, 7000, 500, claim=5600), [good], None)
    assert [v.value for v in near if v.name == "claim / reserve"] == ["0.80"]
    assert all(v.passed for v in near), near
    lost = report.Pipeline(100, 99, 5000, 40.0, 300.0, 1)
    records = report.verdicts(_summaries(10000, 7000, 500), [good], None, [lost])
    assert [v.name for v in records if not v.passed] == ["invariant violations"]


def test_report_names_the_machine_and_every_number() -> None:
    text = report.render(
        {"date": "2026-01-01 00:00 UTC", "cpu": "X, 2 cores"},
        {"client": "wrk"},
        _summaries(10000, 7000, 500),
        [report.Pipeline(100, 100, 5000, 40.0, 300.0, 0)],
        report.Pipeline(100, 100, 9000, None, None, 0),
        ["measured on a busy machine"],
        records=[report.Pipeline(4321, 4321, 4300, 55.5, 210.25, 0)],
    )
    for needle in (
        "2026-01-01",
        "X, 2 cores",
        "| hello |",
        "| 7000 |",
        "0.70",
        "14.0x",
        "9000 (capacity)",
        "busy machine",
        "| claim | POST /api/coupons/templates/{id}/claims",
        "| claim / reserve | 1.00 | >= 0.8 | PASS |",
        "| 1 | 4321 | 4321 | 4300 | 55.5 | 210.2 | 0 |",
    ):
        assert needle in text, needle


PROC_STAT = """cpu  900 0 300 2000 100 0 0 0 0 0
cpu0 500 0 100 400 0 0 0 0 0 0
cpu1 400 0 200 1600 100 0 0 0 0 0
intr 12345
"""


def test_core_ticks_count_iowait_as_idle_and_skip_the_total_line() -> None:
    assert cpu.core_ticks(PROC_STAT) == {"cpu0": (600, 1000), "cpu1": (600, 2300)}


def test_shares_of_a_core_come_from_tick_differences_over_the_wall_time() -> None:
    tick = cpu.TICKS_PER_SECOND
    before = cpu.Snapshot({"seckill": 0, "order": 10 * tick}, {"cpu0": (0, 0), "cpu1": (0, 0)})
    after = cpu.Snapshot(
        # The worker started after the first reading: no share can be told for it.
        {"seckill": 6 * tick, "order": 12 * tick, "seckill-worker": 3 * tick},
        {"cpu0": (90, 100), "cpu1": (50, 100)},
    )
    use = cpu.used(before, after, 10.0)
    assert use.processes == {"seckill": pytest.approx(0.6), "order": pytest.approx(0.2)}
    assert use.cores == {"cpu0": 0.9, "cpu1": 0.5}
    assert use.machine == pytest.approx(1.4)
    assert use.others() == pytest.approx(0.6)


def test_the_cpu_summary_takes_medians_and_the_cost_of_one_answer() -> None:
    def use(server: float, core: float) -> cpu.CpuUse:
        return cpu.CpuUse({"seckill": server, "order": 0.2}, {"cpu0": core, "cpu1": 0.9})

    rounds = [use(0.5, 0.9), use(0.7, 1.0), use(0.6, 0.95)]
    c = report.summarize_cpu("reserve", rounds, [_wrk(5000), _wrk(7000), _wrk(4000)], "cpu0")
    assert (c.server, c.server_core) == (pytest.approx(0.6), 0.95)
    assert c.us_per_ok == pytest.approx(100.0)  # 0.5 / 5000, 0.7 / 7000, 0.6 / 4000 s
    assert c.pipeline == {"seckill-worker": 0.0, "order": pytest.approx(0.2)}
    assert c.others == pytest.approx(1.05)  # per round 1.1, 1.0, 1.05 (busy - ours)
    text = report.render({"date": "d"}, {}, _summaries(10000, 7000, 500), [], None, (), [c])
    assert "| reserve | 0.60 | 100 µs | 0.95 | 0.00 | 0.20 | 1.05 | 1.85 |" in text
    with pytest.raises(ValueError):
        report.summarize_cpu("reserve", rounds[:2], [_wrk(1)] * 3, None)


METRICS = """# HELP seckill_outbox_publish_delay_seconds Time from the script ...
# TYPE seckill_outbox_publish_delay_seconds histogram
seckill_outbox_publish_delay_seconds_bucket{le="0.1"} 50.0
seckill_outbox_publish_delay_seconds_bucket{le="0.5"} 90.0
seckill_outbox_publish_delay_seconds_bucket{le="1.0"} 100.0
seckill_outbox_publish_delay_seconds_bucket{le="+Inf"} 100.0
seckill_outbox_publish_delay_seconds_count 100.0
other_bucket{le="0.1"} 7.0
"""


def test_relay_delay_quantiles_come_from_the_difference_of_two_scrapes() -> None:
    after = report.histogram_buckets(METRICS, "seckill_outbox_publish_delay_seconds")
    assert after == [(0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert report.histogram_quantile(0.5, after) == pytest.approx(0.1)
    assert report.histogram_quantile(0.99, after) == pytest.approx(0.95)
    before = [(0.1, 50.0), (0.5, 50.0), (1.0, 50.0), (float("inf"), 50.0)]
    delta = report.bucket_delta(after, before)
    assert delta == [(0.1, 0.0), (0.5, 40.0), (1.0, 50.0), (float("inf"), 50.0)]
    assert report.histogram_quantile(0.5, delta) == pytest.approx(0.35)  # 0.1 + 0.4 * 25/40
    assert report.histogram_quantile(0.5, report.bucket_delta(before, before)) is None


def test_a_quantile_beyond_the_last_finite_bucket_is_that_bound() -> None:
    buckets = [(0.1, 0.0), (1.0, 1.0), (float("inf"), 10.0)]
    assert report.histogram_quantile(0.99, buckets) == 1.0


def test_only_the_spike_sells_out_by_default_and_an_explicit_stock_wins() -> None:
    from loadtest.run import default_stock, locust_argv, parse_args
    from services.common.settings import Settings

    settings = Settings()
    assert default_stock(parse_args(settings, ["--scenario", "spike", "--users", "5000"])) == 500
    repeat = parse_args(
        settings, ["--scenario", "repeat", "--users", "400", "--per-user-limit", "2"]
    )
    assert default_stock(repeat) == 1600
    assert default_stock(parse_args(settings, ["--scenario", "repeat", "--stock", "7"])) == 7
    argv = locust_argv(
        parse_args(settings, ["--scenario", "mixed", "--", "--tags", "x"]), repeat.out
    )
    assert argv[-8:] == [
        "--tags",
        "x",
        "Browser",
        "SpikeShopper",
        "RepeatPresser",
        "Payer",
        "GroupBuyInviter",
        "CouponRusher",
    ]
    rush = parse_args(settings, ["--scenario", "coupon-rush", "--users", "5000"])
    assert default_stock(rush) == 500  # the coupons run out, as a sale sells out
    argv = locust_argv(rush, rush.out)
    assert argv[argv.index("--coupon-admin-url") + 1] == "http://127.0.0.1:8091"
    assert argv[-1] == "CouponRusher"
    assert "--processes" in argv and "--shape" in argv and "--groupbuy-admin-url" in argv


def test_the_benchmark_keeps_its_data_out_of_the_dev_stack() -> None:
    from loadtest.bench.__main__ import bench_settings
    from services.common.settings import Settings

    base = Settings(
        database_url="postgresql://postgres@127.0.0.1:5432/flashsale",
        redis_url="redis://127.0.0.1:6379/0",
        kafka_topic_prefix="",
    )
    bench = bench_settings(base)
    assert bench.database_url == "postgresql://postgres@127.0.0.1:5432/flashsale_bench"
    assert bench.redis_url == "redis://127.0.0.1:6379/13"
    assert bench.topic("seckill.reservations") == "bench.seckill.reservations"
    chosen = bench_settings(dataclasses.replace(base, redis_url="redis://h:6379/7"))
    assert chosen.redis_url == "redis://h:6379/7"  # a database the operator named is kept


def test_the_demo_login_check_needs_every_login_answered_with_a_distinct_user() -> None:
    from loadtest.demo import Logins, check_logins

    ok = Logins(2, [("u1", "t1"), ("u2", "t2")], {}, 100.0)
    assert check_logins(ok).passed
    refused = Logins(3, [("u1", "t1"), ("u2", "t2")], {"503 provider_unavailable": 1}, 1.0)
    result = check_logins(refused)
    assert not result.passed
    assert "503 provider_unavailable" in result.detail
    same_user = Logins(2, [("u1", "t1"), ("u1", "t2")], {}, 1.0)
    assert not check_logins(same_user).passed


def test_board_lag_counts_from_when_the_truth_reached_each_value() -> None:
    truth = [(0.0, 10), (0.1, 8), (0.2, 8), (0.3, 5), (0.4, 0)]
    # The board samples every half second: it skips 8 and 5, and shows 0 at 0.9.
    board = [(0.0, 10), (0.5, 5), (0.9, 0)]
    lag = board_lag(truth, board, falling=True)
    assert lag.changes == 3
    assert lag.missed == 0
    # 8 shown (passed) at 0.5 after 0.1, 5 at 0.5 after 0.3, 0 at 0.9 after 0.4.
    assert lag.max_ms == pytest.approx(500)
    assert lag.p50_ms == pytest.approx(400)


def test_board_lag_reports_values_the_board_never_reached() -> None:
    lag = board_lag([(0.0, 0), (0.2, 3), (0.4, 5)], [(0.0, 0), (0.5, 3)], falling=False)
    assert (lag.changes, lag.missed) == (2, 1)
    assert lag.max_ms == pytest.approx(300)


def test_the_demo_presses_on_a_given_activity_or_creates_its_own() -> None:
    from loadtest.demo import parse_args as demo_args
    from services.common.settings import Settings

    settings = Settings()
    assert demo_args(settings, []).activity is None
    assert demo_args(settings, ["--activity", "7"]).activity == 7
    assert demo_args(settings, []).board_url == "http://127.0.0.1:8088"
    with pytest.raises(SystemExit):
        demo_args(settings, ["--activity", "0"])
