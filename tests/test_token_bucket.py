"""Tests for openai_utils.token_bucket: the rate, the burst, oversized requests, sync and async waits.

The buckets run on a fake clock; one test awaits a real 50 ms to show the default async sleep.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from openai_utils.token_bucket import TokenBucket
from tests.fake_clock import FakeClock, respects


def test_rpm_60_spaces_20_requests_a_second_apart() -> None:
    clock = FakeClock()
    bucket = TokenBucket(60, clock, clock.sleep)
    assert bucket.capacity == 1
    sent = []
    for _ in range(20):
        bucket.acquire()
        sent.append(clock.now)
    assert sent == [float(i) for i in range(20)]
    assert respects(sent, capacity=1, per_second=1)


def test_the_burst_is_one_seconds_worth() -> None:
    clock = FakeClock()
    bucket = TokenBucket(600, clock, clock.sleep)
    assert bucket.capacity == 10
    sent = []
    for _ in range(20):
        bucket.acquire()
        sent.append(round(clock.now, 9))
    assert sent[:10] == [0.0] * 10
    assert sent[10:] == [pytest.approx(0.1 * k) for k in range(1, 11)]
    assert respects(sent, capacity=10, per_second=10)
    assert not respects(sent, capacity=9, per_second=10)


def test_the_burst_can_be_chosen() -> None:
    assert TokenBucket(600, burst_seconds=0.1).capacity == 1
    assert TokenBucket(6000, burst_seconds=2).capacity == 200
    assert TokenBucket(1).capacity == 1  # never below one request


def test_an_idle_bucket_refills_up_to_its_capacity_only() -> None:
    clock = FakeClock()
    bucket = TokenBucket(600, clock, clock.sleep)
    for _ in range(10):
        assert bucket.reserve() == 0
    clock.now = 1000.0
    assert bucket.level == 10
    waits = [bucket.reserve() for _ in range(12)]
    assert waits[:10] == [0] * 10 and waits[10:] == [pytest.approx(0.1), pytest.approx(0.2)]


def test_concurrent_reservations_each_get_their_own_place() -> None:
    clock = FakeClock()  # frozen: only the reservations move the level
    bucket = TokenBucket(60, clock, clock.sleep)
    waits: list[float] = []
    lock = threading.Lock()

    def reserve_many() -> None:
        for _ in range(50):
            wait = bucket.reserve()
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=reserve_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(round(w, 6) for w in waits) == [float(i) for i in range(400)]


def test_a_request_larger_than_the_bucket_waits_for_a_full_bucket_then_goes() -> None:
    clock = FakeClock()
    bucket = TokenBucket(600, clock, clock.sleep)  # 10 a second, capacity 10
    assert bucket.acquire(4) == 0  # level 6
    assert bucket.acquire(25) == pytest.approx(0.4)  # waits until full, then takes 25
    assert bucket.level == pytest.approx(-15)
    assert bucket.acquire(1) == pytest.approx(1.6)  # the debt is repaid before anyone else goes
    assert clock.now == pytest.approx(2.0)


def test_oversized_requests_still_respect_the_rate_over_time() -> None:
    clock = FakeClock()
    bucket = TokenBucket(600, clock, clock.sleep)
    for _ in range(10):
        bucket.acquire(30)
    # the first goes at once, each next one when its 30 tokens are repaid: 3 s apart
    assert clock.now == pytest.approx(27.0)


def test_zero_and_negative_amounts() -> None:
    bucket = TokenBucket(60)
    assert bucket.reserve(0) == 0 and bucket.level == 1
    with pytest.raises(ValueError):
        bucket.reserve(-1)


@pytest.mark.parametrize("rate", [0, -5])
def test_a_bucket_needs_a_positive_rate(rate: float) -> None:
    with pytest.raises(ValueError, match="rate_per_minute"):
        TokenBucket(rate)


def test_aacquire_shares_the_arithmetic_and_awaits() -> None:
    clock = FakeClock()
    bucket = TokenBucket(120, clock, clock.sleep, async_sleep=clock.asleep)

    async def main() -> list[float]:
        return [await bucket.aacquire() for _ in range(4)]

    assert asyncio.run(main()) == [0, 0, 0.5, 0.5]  # 2 a second, capacity 2
    assert clock.now == 1.0


def test_aacquire_uses_asyncio_sleep_by_default() -> None:
    """It awaits (another task runs meanwhile) and really waits: at least what it said, since a
    busy machine can only make a sleep longer."""
    bucket = TokenBucket(60 * 20, clock=lambda: 0.0)  # frozen: the 21st token is exactly 50 ms away
    order: list[str] = []

    async def other() -> None:
        await asyncio.sleep(0)
        order.append("the other task")

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        await bucket.aacquire(20)
        started = loop.time()
        task = asyncio.create_task(other())
        waited = await bucket.aacquire(1)
        order.append("acquired")
        await task
        return waited, loop.time() - started

    waited, elapsed = asyncio.run(main())
    assert waited == 0.05
    assert order == ["the other task", "acquired"]
    assert elapsed >= 0.05 - 0.001  # the event loop may fire a timer up to its clock resolution early
