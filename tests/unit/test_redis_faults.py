"""Which Redis failures mean the command did not run (503 redis_unavailable, retry) and
which leave its outcome unknown (503 outcome_unknown, look first), with redis-py's own
exception classes."""

from __future__ import annotations

from redis import exceptions as redis_errors

from services.common.redis_faults import RedisNotReached, did_not_run, unanswered_change

CHECK = "/api/seckill/reservations/1-abc"


def test_a_refused_connection_and_a_loading_redis_did_not_run_the_command() -> None:
    assert did_not_run(RedisNotReached("Error 111 connecting to 127.0.0.1:6379."))
    assert did_not_run(redis_errors.BusyLoadingError("Redis is loading the dataset in memory"))


def test_a_reply_lost_after_sending_leaves_the_outcome_unknown() -> None:
    for lost in (
        redis_errors.ConnectionError("Connection closed by server."),
        redis_errors.TimeoutError("Timeout reading from socket"),
        TimeoutError(),  # our own deadline around the whole call
        ConnectionError(),
    ):
        assert not did_not_run(lost), lost


def test_a_change_that_did_not_run_is_answered_unavailable_with_retry_after() -> None:
    answer = unanswered_change(RedisNotReached("refused"), CHECK, reservation_id="1-abc")
    assert (answer.status, answer.code) == (503, "redis_unavailable")
    assert answer.headers == {"Retry-After": "1"}
    assert answer.extra == {}  # no check link: there is nothing to look up


def test_a_change_whose_reply_was_lost_is_answered_outcome_unknown_with_its_check_link() -> None:
    lost = redis_errors.ConnectionError("Connection closed by server.")
    answer = unanswered_change(lost, CHECK, reservation_id="1-abc")
    assert (answer.status, answer.code) == (503, "outcome_unknown")
    assert answer.extra == {"check": CHECK, "reservation_id": "1-abc"}
