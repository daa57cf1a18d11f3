"""Client-side rate limits: token buckets, coordinated backoff after a 429, and the gate combining them.

The buckets and pauses run on a fake clock, so nothing here depends on how fast the machine is;
the tests against the loopback server check the arrival times the server recorded.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from openai_utils import (
    OpenAIClient,
    RateLimitError,
    ServerError,
    client,
    default,
    force_default_value,
)
from openai_utils.ratelimit import EndpointPause, RateGate, TokenBucket, estimate_tokens
from tests.fake_server import FakeOpenAIServer, Fault


class FakeClock:
    """A clock that moves only when slept on; records every sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.sleeps.append(seconds)
            self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def respects(times: list[float], capacity: float, per_second: float, slack: float = 0.0) -> bool:
    """Over every window [t_i, t_j], at most capacity + rate x (window + slack) events."""
    times = sorted(times)
    return all(
        j - i + 1 <= capacity + per_second * (times[j] - times[i] + slack) + 1e-9
        for i in range(len(times))
        for j in range(i, len(times))
    )


# -- TokenBucket -----------------------------------------------------------------------------


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
    bucket = TokenBucket(60 * 50)  # 50 a second: the second call waits 20 ms

    async def main() -> float:
        await bucket.aacquire(50)
        return await bucket.aacquire(1)

    assert asyncio.run(main()) == pytest.approx(0.02, abs=0.005)


# -- EndpointPause ---------------------------------------------------------------------------


def test_a_pause_holds_its_endpoint_only_and_keeps_the_latest_time() -> None:
    clock = FakeClock()
    pauses = EndpointPause(clock, clock.sleep)
    pauses.pause_until("a", 5.0)
    pauses.pause_until("a", 3.0)  # earlier: ignored
    assert pauses.remaining("a") == 5.0 and pauses.remaining("b") == 0
    assert pauses.wait("b") == 0 and clock.sleeps == []
    assert pauses.wait("a") == 5.0 and clock.now == 5.0
    assert pauses.remaining("a") == 0 and pauses.wait("a") == 0


def test_a_pause_extended_while_waiting_is_waited_out_too() -> None:
    clock = FakeClock()

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 1:
            pauses.pause_for("a", 2.0)  # another 429 arrived meanwhile

    pauses = EndpointPause(clock, sleep)
    pauses.pause_for("a", 1.0)
    assert pauses.wait("a") == 3.0
    assert clock.sleeps == [1.0, 2.0]


def test_a_sleep_that_does_not_sleep_cannot_spin() -> None:
    recorded: list[float] = []
    pauses = EndpointPause(lambda: 0.0, recorded.append)
    pauses.pause_until("a", 4.0)
    assert pauses.wait("a") == 4.0
    assert recorded == [4.0]


def test_the_owner_of_a_pause_is_exempt() -> None:
    clock = FakeClock()
    pauses = EndpointPause(clock, clock.sleep)
    pauses.pause_for("a", 2.0, owner="me")
    assert pauses.remaining("a", owner="me") == 0
    assert pauses.remaining("a", owner="you") == 2.0 and pauses.remaining("a") == 2.0
    pauses.pause_for("a", 3.0, owner="you")  # a later pause by someone else holds me too
    assert pauses.remaining("a", owner="me") == 3.0


def test_await_pauses_without_blocking() -> None:
    clock = FakeClock()
    pauses = EndpointPause(clock, clock.sleep, clock.asleep)
    pauses.pause_for("a", 1.5)
    assert asyncio.run(pauses.await_("a")) == 1.5 and clock.now == 1.5


def test_clear_forgets_pauses() -> None:
    pauses = EndpointPause(lambda: 0.0)
    pauses.pause_until("a", 1.0)
    pauses.pause_until("b", 1.0)
    pauses.clear("a")
    assert pauses.remaining("a") == 0 and pauses.remaining("b") == 1.0
    pauses.clear()
    assert pauses.remaining("b") == 0


# -- RateGate --------------------------------------------------------------------------------


def gate_with(clock: FakeClock, rpm: float = 0, tpm: float = 0, **kw: Any) -> RateGate:
    return RateGate(clock, clock.sleep, clock.asleep, limits=lambda endpoint: (rpm, tpm), **kw)


def test_with_no_limits_configured_the_gate_never_waits() -> None:
    clock = FakeClock()
    gate = RateGate(clock, clock.sleep)  # reads REQUESTS_PER_MINUTE / TOKENS_PER_MINUTE, absent or 0
    calls = []
    for _ in range(100):
        assert gate.before_request("e", lambda: calls.append(1) or 10) == 0
    assert clock.sleeps == [] and calls == []  # tokens are not even counted


def test_the_gate_applies_rpm_per_endpoint() -> None:
    clock = FakeClock()
    gate = gate_with(clock, rpm=60)
    assert [gate.before_request("a") for _ in range(3)] == [0, 1, 1]
    assert gate.before_request("b") == 0  # another endpoint has its own bucket


def test_the_gate_applies_tpm_with_the_estimate() -> None:
    clock = FakeClock()
    gate = gate_with(clock, tpm=6000)  # 100 tokens a second, capacity 100
    assert gate.before_request("a", 60) == 0
    assert gate.before_request("a", lambda: 60) == pytest.approx(0.2)
    assert gate.before_request("a", None) == 0  # nothing to count


def test_rpm_and_tpm_together_wait_for_the_slower() -> None:
    clock = FakeClock()
    gate = gate_with(clock, rpm=600, tpm=600)
    gate.before_request("a", 10)
    assert gate.before_request("a", 5) == pytest.approx(0.5)


def test_a_changed_rate_applies_to_the_next_request() -> None:
    clock = FakeClock()
    rates = {"rpm": 60.0}
    gate = RateGate(clock, clock.sleep, limits=lambda e: (rates["rpm"], 0))
    gate.before_request("a")
    assert gate.before_request("a") == 1
    rates["rpm"] = 6000
    assert gate.before_request("a") == 0


def test_a_429_with_retry_after_pauses_everyone_else() -> None:
    clock = FakeClock()
    gate = gate_with(clock)
    error = RateLimitError("slow down", status_code=429, retry_after=2.0)
    gate.after_error("a", error)
    assert gate.before_request("a") == 0  # this thread got the 429: its retry loop already waits
    other: list[float] = []
    worker = threading.Thread(target=lambda: other.append(gate.before_request("a")))
    worker.start()
    worker.join()
    assert other == [2.0]
    assert gate.before_request("b") == 0


def test_async_tasks_other_than_the_one_that_got_the_429_wait() -> None:
    clock = FakeClock()
    gate = gate_with(clock)

    async def got_429() -> float:
        gate.after_error("a", RateLimitError("slow", status_code=429, retry_after=1.0))
        return await gate.abefore_request("a")

    async def main() -> list[float]:
        first = await asyncio.create_task(got_429())
        second = await asyncio.create_task(gate.abefore_request("a"))
        return [first, second]

    assert asyncio.run(main()) == [0, 1.0]


def test_paused_tells_without_waiting() -> None:
    clock = FakeClock()
    gate = gate_with(clock)
    assert not gate.paused("a")
    gate.pauses.pause_for("a", 2.0, owner="someone else")
    assert gate.paused("a") and not gate.paused("b")
    gate.after_error("a", RateLimitError("slow", status_code=429, retry_after=3.0))
    assert not gate.paused("a")  # our own pause: our retry loop waits for it
    clock.now = 10.0
    gate.pauses.pause_for("a", 1.0, owner="someone else")
    clock.now = 11.0
    assert not gate.paused("a") and clock.sleeps == []


@pytest.mark.parametrize(
    "error",
    [
        RateLimitError("no hint", status_code=429),
        RateLimitError("zero", status_code=429, retry_after=0.0),
        ServerError("busy", status_code=503, retry_after=5.0),
        ValueError("not an API error"),
    ],
)
def test_errors_without_a_429_wait_hint_pause_nothing(error: BaseException) -> None:
    clock = FakeClock()
    gate = gate_with(clock)
    gate.after_error("a", error)
    assert gate.pauses.remaining("a") == 0


def test_quota_exhaustion_is_not_a_pause() -> None:
    from openai_utils import QuotaExceededError

    gate = gate_with(FakeClock())
    gate.after_error("a", QuotaExceededError("no credit", status_code=429, retry_after=30.0))
    assert gate.pauses.remaining("a") == 0


def test_a_pause_is_capped_at_max_waiting_time() -> None:
    force_default_value("max_waiting_time", 5)
    clock = FakeClock()
    gate = gate_with(clock)
    gate.after_error("a", RateLimitError("slow", status_code=429, retry_after=500.0))
    assert gate.pauses.remaining("a") == 5.0


def test_a_pause_during_the_bucket_wait_is_waited_out_and_a_new_place_taken() -> None:
    clock = FakeClock()
    gate = gate_with(clock, rpm=60)
    gate.before_request("a")  # the bucket is empty now

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 1:  # while we wait for the bucket, someone else gets a 429
            gate.pauses.pause_for("a", 3.0, owner="someone else")

    gate._sleep = sleep
    assert gate.before_request("a") == pytest.approx(1 + 3)
    assert clock.sleeps == [1.0, 3.0]
    bucket = gate.bucket("a", "requests", 60)
    assert bucket is not None and bucket.level == 0  # a second place was taken after the pause


def test_reset_forgets_buckets_and_pauses() -> None:
    clock = FakeClock()
    gate = gate_with(clock, rpm=60)
    gate.before_request("a")
    gate.pauses.pause_for("a", 10)
    gate.reset()
    worker: list[float] = []
    thread = threading.Thread(target=lambda: worker.append(gate.before_request("a")))
    thread.start()
    thread.join()
    assert worker == [0]


@pytest.mark.skipif("requests_per_minute" not in default, reason="REQUESTS_PER_MINUTE not in config yet")
def test_the_default_limits_come_from_config() -> None:
    clock = FakeClock()
    gate = RateGate(clock, clock.sleep)
    force_default_value("requests_per_minute", 60)
    force_default_value("tokens_per_minute", 6000)
    assert gate.before_request("a", 10) == 0
    assert gate.before_request("a", 10) == 1


# -- token estimates -------------------------------------------------------------------------


def test_estimate_counts_the_prompt_and_the_completion_budget() -> None:
    messages = [{"role": "user", "content": "Hello there"}]
    bare = estimate_tokens({"model": "gpt-4o-mini", "messages": messages})
    assert 5 < bare < 20
    assert estimate_tokens({"model": "gpt-4o-mini", "messages": messages, "max_tokens": 100}) == bare + 100
    assert estimate_tokens({"model": "gpt-4o-mini", "messages": messages, "max_tokens": 100, "n": 3}) == bare + 300


def test_estimate_counts_embedding_inputs() -> None:
    one = estimate_tokens({"model": "text-embedding-3-small", "input": "Hello there"}, "embedding")
    assert one >= 2
    assert estimate_tokens({"model": "text-embedding-3-small", "input": ["Hello there"] * 3}, "embedding") == 3 * one


def test_estimate_falls_back_to_characters_without_an_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    from openai_utils import tokens

    monkeypatch.setattr(tokens, "count_tokens", lambda *a, **k: None)
    assert estimate_tokens({"model": "m", "messages": [{"role": "user", "content": "x" * 400}]}) >= 100


# -- against the loopback server, through a thin loop ----------------------------------------


def thin_loop(oai: OpenAIClient, gate: RateGate, key: str, prompts: list[str]) -> None:
    """What the client will do around each attempt, minus everything else."""
    for prompt in prompts:
        request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]}
        while True:
            gate.before_request(key)
            try:
                oai._raw_model_call(request, 10.0)
                break
            except RateLimitError as error:
                gate.after_error(key, error)
                time.sleep(error.retry_after or 0)


def warm_up(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    """Build the SDK client and open a connection before measuring.

    A request delayed after passing the gate (the first one builds the SDK client, and may even
    import openai) leaves the bucket to refill meanwhile, so the requests behind it can arrive
    bunched with it: true of any gate placed before the send, and not what these tests measure.
    """
    oai.send_message([{"role": "user", "content": "warm-up"}])
    server.reset()


def run_threads(count: int, target: Any) -> None:
    threads = [threading.Thread(target=target, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)


def test_after_a_429_no_other_request_reaches_the_endpoint_during_the_pause(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    warm_up(oai, server)
    latency = 0.05
    server.latency = latency
    server.script(Fault.status(429, headers={"Retry-After": "1"}))
    gate = RateGate()
    run_threads(8, lambda n: thin_loop(oai, gate, "loopback", [f"t{n} r{k}" for k in range(5)]))
    times = [r.time for r in server.requests]
    assert len(times) == 8 * 5 + 1
    limited = times[0]  # the first arrival got the scripted 429
    # Requests already on their way when the 429 came back may still arrive; after that, nothing
    # until the pause (1 s from the moment the client read the 429) is over.
    quiet_from, quiet_to = limited + latency + 0.1, limited + latency + 0.95
    assert [t - limited for t in times if quiet_from < t < quiet_to] == []
    assert sum(t >= limited + 1 for t in times) >= 8  # the work went on after the pause


def test_rpm_limits_the_arrival_times_at_the_server(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    warm_up(oai, server)
    gate = RateGate(limits=lambda endpoint: (600, 0))  # 10 a second, burst of 10
    run_threads(4, lambda n: thin_loop(oai, gate, "loopback", [f"t{n} r{k}" for k in range(5)]))
    times = [r.time for r in server.requests]
    assert len(times) == 20
    assert respects(times, capacity=10, per_second=10, slack=0.05)
    assert max(times) - min(times) >= 0.9  # 10 had to wait, 0.1 s apart


# -- end to end, once the client calls the gate (see the wiring notes) -----------------------


def test_e2e_a_429_pauses_the_other_threads(server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from openai_utils import register_client

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    force_default_value("base_url", server.base_url)
    real = OpenAIClient(sleep=time.sleep, random_value=lambda: 0.5)  # real waits
    register_client("openai", real)
    warm_up(real, server)
    latency = 0.05
    server.latency = latency
    server.script(Fault.status(429, headers={"Retry-After": "1"}))
    results = client().send_messages([[{"role": "user", "content": f"q{i}"}] for i in range(40)], max_workers=8)
    assert results == [{"role": "assistant", "content": f"echo: q{i}"} for i in range(40)]
    times = [r.time for r in server.requests]
    assert len(times) == 41
    limited = times[0]
    assert [t - limited for t in times if limited + latency + 0.1 < t < limited + latency + 0.95] == []


def test_e2e_rpm_limits_the_arrival_times(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    warm_up(oai, server)
    force_default_value("requests_per_minute", 600)
    results = client().send_messages([[{"role": "user", "content": f"q{i}"}] for i in range(20)], max_workers=8)
    assert len(results) == 20 and all(isinstance(r, dict) for r in results)
    times = [r.time for r in server.requests]
    assert respects(times, capacity=10, per_second=10, slack=0.05)
    assert max(times) - min(times) >= 0.9


def test_e2e_rpm_60_over_20_requests(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    """The issue's own numbers, in real time (about 19 s): a bucket of one second's worth, so
    the server sees the first request at once and every later one a second after the previous."""
    warm_up(oai, server)
    force_default_value("requests_per_minute", 60)
    results = client().send_messages([[{"role": "user", "content": f"q{i}"}] for i in range(20)], max_workers=8, progress=False)
    assert all(isinstance(r, dict) for r in results) and len(results) == 20
    times = [r.time for r in server.requests]
    assert len(times) == 20
    assert respects(times, capacity=1, per_second=1, slack=0.05)
    assert max(times) - min(times) >= 18.9
