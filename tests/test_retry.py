"""Tests for openai_utils.retry: the backoff formula, attempt counting, server wait hints."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from openai_utils import RateLimitError, RetriesExhaustedError, ServerError
from openai_utils.retry import Attempts, RetryPolicy, parse_retry_after


def policy(max_attempts: int = 5, waiting_time: float = 1.0, factor: float = 2.0, cap: float = 60.0) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=max_attempts, waiting_time=waiting_time, backoff_factor=factor, max_waiting_time=cap
    )


# --- wait_before_retry --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry", "expected"),
    [(1, 1.5), (2, 4.5), (3, 13.5), (4, 40.5)],
)
def test_midpoint_random_gives_exact_formula(retry: int, expected: float) -> None:
    p = policy(waiting_time=1.5, factor=3.0, cap=1000.0)
    assert p.wait_before_retry(retry, None, 0.5) == pytest.approx(expected)


def test_factor_one_waits_the_same_every_time() -> None:
    p = policy(waiting_time=2.0, factor=1.0)
    assert [p.wait_before_retry(r, None, 0.5) for r in (1, 2, 3)] == pytest.approx([2.0, 2.0, 2.0])


def test_jitter_extremes_are_plus_minus_ten_percent() -> None:
    p = policy(waiting_time=2.0, factor=2.0)
    assert p.wait_before_retry(2, None, 0.0) == pytest.approx(4.0 * 0.9)
    assert p.wait_before_retry(2, None, 1.0) == pytest.approx(4.0 * 1.1)


def test_jitter_stays_within_ten_percent_and_varies() -> None:
    p = policy(waiting_time=1.0, factor=2.0, cap=1000.0)
    randoms = [i / 100 for i in range(100)]
    waits = [p.wait_before_retry(3, None, r) for r in randoms]
    assert all(4.0 * 0.9 - 1e-9 <= w <= 4.0 * 1.1 + 1e-9 for w in waits)
    assert len(set(waits)) == len(randoms)  # different random values give different waits
    assert waits == sorted(waits)


def test_wait_is_capped_at_max_waiting_time() -> None:
    p = policy(waiting_time=1.0, factor=2.0, cap=10.0)
    assert p.wait_before_retry(10, None, 0.5) == 10.0  # formula says 512
    assert p.wait_before_retry(5, None, 1.0) == 10.0  # 16 * 1.1
    # just under the cap, jitter upwards is capped too
    assert policy(waiting_time=10.0, factor=2.0, cap=10.0).wait_before_retry(1, None, 1.0) == 10.0
    assert policy(waiting_time=10.0, factor=2.0, cap=10.0).wait_before_retry(1, None, 0.0) == pytest.approx(9.0)


def test_hint_wins_over_formula() -> None:
    p = policy(waiting_time=1.0, factor=2.0, cap=60.0)
    assert p.wait_before_retry(4, 3.0, 0.5) == 3.0
    assert p.wait_before_retry(1, 7.5, 0.0) == 7.5  # no jitter on a server's hint
    assert p.wait_before_retry(1, 0.0, 0.5) == 0.0  # a zero hint is a hint, not "no hint"


def test_hint_is_capped() -> None:
    assert policy(cap=5.0).wait_before_retry(1, 3600.0, 0.5) == 5.0
    assert policy(cap=5.0).wait_before_retry(1, math.inf, 0.5) == 5.0


def test_negative_hint_means_no_wait() -> None:
    assert policy().wait_before_retry(3, -4.0, 0.5) == 0.0


def test_nan_hint_is_not_returned_as_wait() -> None:
    wait = policy().wait_before_retry(1, math.nan, 0.5)
    assert not math.isnan(wait)


@pytest.mark.parametrize(
    ("waiting_time", "factor", "cap"),
    [
        (1e300, 1e300, 1e300),
        (86_400.0, 100.0, 86_400.0),
        (1.0, 2.0, 60.0),
        (1e-300, 100.0, 5.0),
        (0.0, 31.0, 0.0),
        (1.65e-300, 31.0, 60.0),
    ],
)
def test_long_runs_of_retries_never_overflow(waiting_time: float, factor: float, cap: float) -> None:
    # factor ** (retry - 1) leaves the float range after a few hundred retries (2 ** 1024); the
    # wait must still be a number, and the cap once the formula passes it
    p = policy(max_attempts=1200, waiting_time=waiting_time, factor=factor, cap=cap)
    for retry in (1, 2, 100, 1025, 1199):
        for random_value in (0.0, 0.5, 1.0):
            wait = p.wait_before_retry(retry, None, random_value)
            assert math.isfinite(wait) and 0.0 <= wait <= cap
    assert p.wait_before_retry(1199, None, 0.0) == (cap if waiting_time else 0.0)


def test_attempts_at_the_top_of_every_range_count_to_the_end() -> None:
    from openai_utils.config import SETTINGS

    top = {s.name: s.maximum for s in SETTINGS if s.maximum is not None}
    p = policy(
        max_attempts=int(top["max_attempts"]),
        waiting_time=top["waiting_time"],
        factor=top["exponential_backoff_factor"],
        cap=top["max_waiting_time"],
    )
    attempts = p.start(lambda: 1.0)
    waits = [attempts.failed(ServerError("503")) for _ in range(p.max_attempts - 1)]
    assert waits[-1] == p.max_waiting_time
    with pytest.raises(RetriesExhaustedError):
        attempts.failed(ServerError("503"))


# --- Attempts -----------------------------------------------------------------------------------


def test_start_returns_attempts_at_one() -> None:
    attempts = policy().start(lambda: 0.5)
    assert isinstance(attempts, Attempts)
    assert attempts.number == 1


def test_failed_returns_waits_and_counts_then_gives_up() -> None:
    attempts = policy(max_attempts=3, waiting_time=1.0, factor=2.0).start(lambda: 0.5)
    first, second, third = RateLimitError("slow down"), ServerError("boom"), RateLimitError("again")

    assert attempts.failed(first) == pytest.approx(1.0)
    assert first.attempts == 1
    assert attempts.number == 2

    assert attempts.failed(second) == pytest.approx(2.0)
    assert second.attempts == 2
    assert attempts.number == 3

    with pytest.raises(RetriesExhaustedError) as info:
        attempts.failed(third)
    err = info.value
    assert err.attempts == 3
    assert err.last_error is third
    assert err.__cause__ is third
    assert third.attempts == 3
    assert "3 attempts" in str(err)
    assert "RateLimitError" in str(err)


def test_exhausted_error_carries_status_and_request_id_of_last_error() -> None:
    attempts = policy(max_attempts=1).start(lambda: 0.5)
    last = ServerError("bad gateway", status_code=502, request_id="req-9")
    with pytest.raises(RetriesExhaustedError) as info:
        attempts.failed(last)
    assert info.value.status_code == 502
    assert info.value.request_id == "req-9"


def test_max_attempts_one_raises_on_first_failure() -> None:
    attempts = policy(max_attempts=1).start(lambda: 0.5)
    err = RateLimitError("no")
    with pytest.raises(RetriesExhaustedError) as info:
        attempts.failed(err)
    assert info.value.attempts == 1
    assert info.value.last_error is err
    assert err.attempts == 1
    assert "1 attempt;" in str(info.value)  # singular


def test_failed_uses_the_error_retry_after_hint() -> None:
    attempts = policy(max_attempts=5, cap=30.0).start(lambda: 0.5)
    assert attempts.failed(RateLimitError("wait", retry_after=12.0)) == 12.0
    assert attempts.failed(RateLimitError("wait", retry_after=999.0)) == 30.0
    # no hint: back to the formula for retry 3
    assert attempts.failed(RateLimitError("no hint")) == pytest.approx(4.0)


def test_failed_uses_the_injected_random_value() -> None:
    values = iter([0.0, 1.0])
    attempts = policy(max_attempts=5, waiting_time=10.0, factor=1.0).start(lambda: next(values))
    assert attempts.failed(RateLimitError("a")) == pytest.approx(9.0)
    assert attempts.failed(RateLimitError("b")) == pytest.approx(11.0)


def test_each_start_counts_afresh() -> None:
    p = policy(max_attempts=2)
    one = p.start(lambda: 0.5)
    one.failed(RateLimitError("x"))
    two = p.start(lambda: 0.5)
    assert two.number == 1
    assert two.failed(RateLimitError("y")) == pytest.approx(1.0)


# --- parse_retry_after --------------------------------------------------------------------------


def test_retry_after_ms_wins_over_retry_after() -> None:
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == pytest.approx(1.5)


def test_retry_after_seconds() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "0.25"}) == 0.25


def test_negative_values_become_zero() -> None:
    assert parse_retry_after({"retry-after": "-5"}) == 0.0
    assert parse_retry_after({"retry-after-ms": "-5"}) == 0.0


def test_garbage_retry_after_ms_falls_back_to_retry_after() -> None:
    assert parse_retry_after({"retry-after-ms": "soon", "retry-after": "4"}) == 4.0
    assert parse_retry_after({"retry-after-ms": "soon"}) is None


def test_retry_after_http_date_uses_now() -> None:
    now = datetime(2015, 10, 21, 7, 27, 30, tzinfo=timezone.utc).timestamp()
    headers = {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}
    assert parse_retry_after(headers, now=lambda: now) == pytest.approx(30.0)
    later = now + timedelta(minutes=5).total_seconds()
    assert parse_retry_after(headers, now=lambda: later) == 0.0  # a date in the past: no wait


@pytest.mark.parametrize("value", ["garbage", "", "Wed, 99 Foo 2015", "in a while"])
def test_garbage_retry_after_is_none(value: str) -> None:
    assert parse_retry_after({"retry-after": value}, now=lambda: 0.0) is None


def test_missing_headers_give_none() -> None:
    assert parse_retry_after({}) is None
    assert parse_retry_after({"content-type": "application/json"}) is None


@pytest.mark.parametrize("header", ["retry-after", "retry-after-ms"])
def test_nan_retry_after_is_garbage(header: str) -> None:
    assert parse_retry_after({header: "nan"}) is None
