"""Pure parts of the coupon rush's load test: claim answers, their record, and the post-run
invariant checks over crafted stores (each violation must fail its check)."""

from __future__ import annotations

import json
from pathlib import Path

from loadtest.scenarios import (
    SCENARIOS,
    Answer,
    AnswerLog,
    ClaimAnswer,
    classify_claim,
    load_answers,
    needs_campaign,
    needs_sale,
    needs_template,
)
from loadtest.verify_coupons import (
    CouponRow,
    TemplateSnapshot,
    recorded_enough,
    run_coupon_checks,
)

T = 7  # the template of these tests


def test_claim_answers_are_classified_by_status_and_error_code() -> None:
    assert classify_claim(201, None) == ClaimAnswer.CLAIMED
    assert classify_claim(410, "exhausted") == ClaimAnswer.EXHAUSTED
    assert classify_claim(410, "claim_ended") == ClaimAnswer.ENDED
    assert classify_claim(409, "limit_reached") == ClaimAnswer.LIMIT_REACHED
    assert classify_claim(409, "not_started") == ClaimAnswer.NOT_STARTED
    assert classify_claim(429, "rate_limited") == ClaimAnswer.RATE_LIMITED
    assert classify_claim(500, "internal") == ClaimAnswer.SERVER_ERROR
    assert classify_claim(503, None) == ClaimAnswer.SERVER_ERROR
    assert classify_claim(410, "sold_out") == Answer.UNEXPECTED  # a seckill code
    assert classify_claim(None, None) == Answer.UNEXPECTED
    assert ClaimAnswer.SERVER_ERROR not in ClaimAnswer.EXPECTED


def test_the_coupon_rush_gets_a_template_and_no_sale_or_campaign() -> None:
    classes = SCENARIOS["coupon-rush"].user_classes
    assert classes == ("CouponRusher",) and SCENARIOS["coupon-rush"].shape == "spike"
    assert needs_template(classes)
    assert not needs_sale(classes) and not needs_campaign(classes)
    assert not needs_template(["SpikeShopper", "GroupBuyInviter"])


def test_claims_demand_and_idempotent_retries_survive_json(tmp_path: Path) -> None:
    a = AnswerLog()
    a.record_claim("u1", 409, "not_started", None)
    a.record_claim("u1", 201, None, "7-aa")
    a.record_claim("u1", 409, "limit_reached", None)
    a.record_claim("u2", 201, None, None)  # a 201 without a coupon id is not a claim
    a.record_claim_replay("u1", "7-aa", 201, "7-aa")
    b = AnswerLog()
    b.record_claim("u3", 410, "exhausted", None)
    b.record_claim_replay("u3", "7-bb", 409, "limit_reached")  # a retry answered otherwise
    b.record_claim("u4", 502, None, None)
    (tmp_path / "answers-1.json").write_text(json.dumps(a.to_json()))
    (tmp_path / "answers-2.json").write_text(json.dumps(b.to_json()))
    merged, files = load_answers(tmp_path)
    assert files == 2
    assert merged.claims == [("u1", "7-aa")]
    assert dict(merged.claim_presses) == {"u1": 2, "u3": 1}
    assert merged.replays == [("u1", "7-aa", "7-aa"), ("u3", "7-bb", "")]
    assert merged.answers[ClaimAnswer.REPLAYED] == 1
    assert merged.answers[Answer.UNEXPECTED] == 2
    assert merged.answers[ClaimAnswer.SERVER_ERROR] == 1
    assert merged.reservations == [] and not merged.definitive_presses


# ------------------------------------------------------------------ invariants


def _rows(*pairs: tuple[str, str]) -> list[CouponRow]:
    return [CouponRow(cid, user, T, "claim") for user, cid in pairs]


def _snapshot(
    rows: list[CouponRow], quantity: int, users: dict[str, int] | None = None
) -> TemplateSnapshot:
    """Redis as it should be after these rows: quantity - rows left, one claim per row."""
    if users is None:
        users = {}
        for r in rows:
            users[r.user_id] = users.get(r.user_id, 0) + 1
    left = quantity - len([r for r in rows if r.template_id == T])
    return TemplateSnapshot(rows, quantity, left, users, api_remaining=left)


def _answers(*rows: tuple[str, int, str | None, str | None]) -> AnswerLog:
    log = AnswerLog()
    for user, status, error, cid in rows:
        log.record_claim(user, status, error, cid)
    return log


def _failed(answers: AnswerLog, snapshot: TemplateSnapshot, quantity: int = 2) -> list[str]:
    checks = run_coupon_checks(
        template_id=T, quantity=quantity, per_user_limit=1, answers=answers, snapshot=snapshot
    )
    return [c.name for c in checks if not c.passed]


CLEAN = (
    ("u1", 201, None, "7-a"),
    ("u2", 201, None, "7-b"),
    ("u2", 409, "limit_reached", None),  # the double tap
    ("u3", 410, "exhausted", None),
)


def test_a_clean_rush_passes_every_check() -> None:
    answers = _answers(*CLEAN)
    answers.record_claim_replay("u1", "7-a", 201, "7-a")
    assert _failed(answers, _snapshot(_rows(("u1", "7-a"), ("u2", "7-b")), 2)) == []


def test_more_coupons_than_the_quantity_fails() -> None:
    answers = _answers(("u1", 201, None, "7-a"), ("u2", 201, None, "7-b"), ("u3", 201, None, "7-c"))
    rows = _rows(("u1", "7-a"), ("u2", "7-b"), ("u3", "7-c"))
    assert "coupons: within quantity" in _failed(answers, _snapshot(rows, 2))


def test_the_gate_issuing_beyond_the_quantity_fails_even_if_the_record_does_not_show_it() -> None:
    rows = _rows(("u1", "7-a"), ("u2", "7-b"))
    snapshot = TemplateSnapshot(rows, 2, -1, {"u1": 1, "u2": 1, "u4": 1}, api_remaining=-1)
    failed = _failed(_answers(*CLEAN), snapshot)
    assert {"coupons: within quantity", "coupons: quantity conserved"} <= set(failed)


def test_coupons_left_while_a_shopper_was_told_exhausted_fails() -> None:
    answers = _answers(("u1", 201, None, "7-a"), ("u3", 410, "exhausted", None))
    assert _failed(answers, _snapshot(_rows(("u1", "7-a")), 2)) == ["coupons: within quantity"]


def test_a_shopper_over_the_limit_fails_whichever_store_shows_it() -> None:
    two = _answers(("u1", 201, None, "7-a"), ("u1", 201, None, "7-b"))
    rows = _rows(("u1", "7-a"), ("u1", "7-b"))
    assert "coupons: per-user limit" in _failed(two, _snapshot(rows, 2))
    redis_only = _snapshot(_rows(("u1", "7-a"), ("u2", "7-b")), 2, {"u1": 2, "u2": 1})
    assert "coupons: per-user limit" in _failed(_answers(*CLEAN), redis_only)


def test_a_claim_answered_201_without_a_row_fails() -> None:
    snapshot = _snapshot(_rows(("u1", "7-a")), 2, {"u1": 1, "u2": 1})
    snapshot = TemplateSnapshot(snapshot.rows, 2, 0, {"u1": 1, "u2": 1}, api_remaining=0)
    failed = _failed(_answers(*CLEAN), snapshot)
    assert "coupons: 201 answers recorded" in failed
    assert "coupons: every issued coupon recorded" in failed


def test_a_coupon_recorded_for_someone_else_or_another_template_fails() -> None:
    other_user = [CouponRow("7-a", "u9", T, "claim"), *_rows(("u2", "7-b"))]
    assert "coupons: 201 answers recorded" in _failed(_answers(*CLEAN), _snapshot(other_user, 2))
    other_template = [CouponRow("7-a", "u1", 8, "claim"), *_rows(("u2", "7-b"))]
    assert "coupons: 201 answers recorded" in _failed(
        _answers(*CLEAN), _snapshot(other_template, 2)
    )


def test_a_row_nobody_was_told_about_fails_unless_an_answer_was_lost() -> None:
    answers = _answers(("u1", 201, None, "7-a"), ("u3", 410, "exhausted", None))
    rows = _rows(("u1", "7-a"), ("u2", "7-b"))
    assert _failed(answers, _snapshot(rows, 2)) == ["coupons: 201 answers recorded"]
    answers.record_claim("u2", None, None, None)  # u2's answer never arrived
    assert _failed(answers, _snapshot(rows, 2)) == []


def test_one_coupon_answered_to_two_presses_fails() -> None:
    answers = _answers(("u1", 201, None, "7-a"), ("u2", 201, None, "7-a"))
    rows = _rows(("u1", "7-a"))
    assert "coupons: no duplicates" in _failed(answers, _snapshot(rows, 1), quantity=1)


def test_one_coupon_recorded_twice_fails() -> None:
    rows = [*_rows(("u1", "7-a"), ("u2", "7-b")), CouponRow("7-b", "u2", T, "claim")]
    snapshot = TemplateSnapshot(rows, 3, 0, {"u1": 1, "u2": 1}, api_remaining=0)
    assert "coupons: no duplicates" in _failed(_answers(*CLEAN), snapshot, quantity=3)


def test_an_idempotent_retry_answered_with_another_coupon_or_a_refusal_fails() -> None:
    rows = _rows(("u1", "7-a"), ("u2", "7-b"))
    second = _answers(*CLEAN)
    second.record_claim_replay("u1", "7-a", 201, "7-z")
    assert _failed(second, _snapshot(rows, 2)) == ["coupons: no duplicates"]
    refused = _answers(*CLEAN)
    refused.record_claim_replay("u1", "7-a", 409, None)
    assert _failed(refused, _snapshot(rows, 2)) == ["coupons: no duplicates"]


def test_a_claim_answered_5xx_fails() -> None:
    answers = _answers(*CLEAN, ("u4", 500, "internal", None))
    assert _failed(answers, _snapshot(_rows(("u1", "7-a"), ("u2", "7-b")), 2)) == ["claims: no 5xx"]


def test_a_template_page_that_disagrees_with_redis_fails() -> None:
    rows = _rows(("u1", "7-a"), ("u2", "7-b"))
    snapshot = TemplateSnapshot(rows, 2, 0, {"u1": 1, "u2": 1}, api_remaining=2)
    assert _failed(_answers(*CLEAN), snapshot) == ["coupons: quantity conserved"]


def test_the_checks_wait_until_every_issued_and_answered_coupon_is_recorded() -> None:
    one = _rows(("u1", "7-a"))
    assert not recorded_enough(T, ["7-a"], TemplateSnapshot(one, 2, 0))  # Redis issued 2
    assert not recorded_enough(T, ["7-a", "7-b"], TemplateSnapshot(one, 2, 1))
    assert recorded_enough(T, ["7-a"], TemplateSnapshot(one, 2, 1))
    assert not recorded_enough(T, [], TemplateSnapshot([], None, None))  # not in Redis
