"""Client-side rate limits: the gate combining token buckets and coordinated backoff after a 429.

The bucket and the pauses alone are tested in test_token_bucket.py and test_pause.py. Nothing
here depends on how fast or busy the machine is. The gate runs on a fake clock; the tests
against the loopback server run the real client, the process-wide gate and the server's arrival
stamps on one simulated clock that moves only when every call is asleep on it, and check the
arrival times the server recorded. One test uses the real clock, and asserts only
a lower bound that a slow machine can only exceed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from openai_utils import (
    OpenAIClient,
    RateLimitError,
    ServerError,
    default,
    force_default_value,
)
from openai_utils.ratelimit import RateGate, rate_gate
from tests.fake_clock import FakeClock, respects
from tests.fake_server import FakeOpenAIServer, Fault

# -- RateGate --------------------------------------------------------------------------------


def gate_with(clock: FakeClock, rpm: float = 0, tpm: float = 0, **kw: Any) -> RateGate:
    return RateGate(clock, clock.sleep, clock.asleep, limits=lambda endpoint: (rpm, tpm), **kw)


def test_with_no_limits_configured_the_gate_never_waits() -> None:
    clock = FakeClock()
    gate = RateGate(clock, clock.sleep)  # reads REQUESTS_PER_MINUTE / TOKENS_PER_MINUTE, absent or 0
    calls: list[int] = []

    def count_tokens() -> int:
        calls.append(1)
        return 10

    for _ in range(100):
        assert gate.before_request("e", count_tokens) == 0
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


@pytest.mark.parametrize(("rpm", "tpm", "amount"), [(240, 0, None), (0, 2400, 10)], ids=["rpm", "tpm"])
def test_the_token_that_counts_is_taken_when_the_request_leaves(rpm: float, tpm: float, amount: int | None) -> None:
    """Eight requests take their places at once, then are all held up for a second (a busy slot,
    the first SDK build): when they reach the send, they leave at the rate, not together."""
    now = [0.0]
    gate = RateGate(lambda: now[0], lambda seconds: None, limits=lambda endpoint: (rpm, tpm))
    spaced = [0.0] * 4 + [0.25, 0.5, 0.75, 1.0]  # 4 a second (or 40 tokens of 10), a second's worth at once
    assert [gate.before_request("a", amount) for _ in range(8)] == pytest.approx(spaced)
    now[0] = 1.0
    sends = [gate.before_send("a", amount) for _ in range(8)]
    assert sends == pytest.approx(spaced)
    assert respects([1.0 + wait for wait in sends], capacity=4, per_second=4)


def test_a_request_not_held_up_waits_only_for_its_place() -> None:
    clock = FakeClock()
    gate = gate_with(clock, rpm=60)
    for _ in range(5):
        gate.before_request("a")
        assert gate.before_send("a") == 0
    assert clock.sleeps == [1.0] * 4


def test_abefore_send_awaits_its_turn() -> None:
    clock = FakeClock()
    gate = gate_with(clock, rpm=60)

    async def main() -> list[float]:
        return [await gate.abefore_send("a") for _ in range(3)]

    assert asyncio.run(main()) == [0, 1, 1] and clock.now == 2


def test_set_clock_moves_the_gate_and_its_pauses_to_another_clock() -> None:
    gate = RateGate(limits=lambda endpoint: (60, 0))
    gate.before_send("a")  # on the real clock: the bucket is empty now
    gate.pauses.pause_for("a", 100.0, owner="someone else")
    clock = FakeClock()
    gate.set_clock(clock, clock.sleep, clock.asleep)
    assert not gate.paused("a")  # measured on the old clock: forgotten
    assert [gate.before_send("a") for _ in range(3)] == [0, 1, 1] and clock.now == 2
    gate.pauses.pause_for("a", 5.0, owner="someone else")
    assert gate.pauses.remaining("a") == 5.0
    gate.set_clock()
    assert gate.before_send("a") == 0 and not gate.paused("a")  # real time again, afresh


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


# -- at the loopback server, on a simulated clock --------------------------------------------

HANG = 30.0
"""Seconds of real time after which a test stops waiting: only a hang gets there."""


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)


class VirtualClock:
    """Simulated time shared by threads, event loops and the server, which machine load cannot bend.

    Time stands still until the test moves it, and the test moves it only once every call in
    progress is asleep here: whatever the machine does meanwhile (start threads, build SDK
    clients, send requests, answer them) happens at one instant, however long it really takes.
    A sleeper wakes when the time reaches its wake-up time; `advance` jumps to the earliest.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self._cond = threading.Condition()
        self._wakes: list[float] = []
        self._tasks: list[tuple[float, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    def parked(self) -> int:
        """Sleepers whose time has not come."""
        with self._cond:
            return len(self._wakes)

    def sleep(self, seconds: float) -> None:
        with self._cond:
            wake = self.now + seconds
            if wake <= self.now:
                return
            self._wakes.append(wake)
            if not self._cond.wait_for(lambda: self.now >= wake, timeout=HANG):
                raise AssertionError(f"asleep until {wake} for {HANG} s of real time: the clock never got there")

    async def asleep(self, seconds: float) -> None:
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._cond:
            wake = self.now + seconds
            if wake <= self.now:
                return
            self._wakes.append(wake)
            self._tasks.append((wake, asyncio.get_running_loop(), woken))
        await asyncio.wait_for(woken, HANG)

    def advance(self, to: float | None = None) -> None:
        """Move to `to`, or to the earliest wake-up time, and wake everyone due by then."""
        with self._cond:
            self.now = min(self._wakes) if to is None else to
            self._wakes = [wake for wake in self._wakes if wake > self.now]
            due = [(loop, woken) for wake, loop, woken in self._tasks if wake <= self.now]
            self._tasks = [task for task in self._tasks if task[0] > self.now]
            self._cond.notify_all()
        for loop, woken in due:
            loop.call_soon_threadsafe(_wake, woken)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Wait (in real time, bounded only to catch a hang) until `condition` holds."""
    deadline = time.monotonic() + HANG
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what} after {HANG} s")
        time.sleep(0.001)


class SimulatedClient(OpenAIClient):
    """The openai client with its retry waits on the virtual clock, counting calls as they end.

    With `build_seconds`, building its SDK client (sync or async) takes that long for every
    request that needs it before it is built: what importing openai costs a cold process.
    """

    def __init__(self, clock: VirtualClock, build_seconds: float = 0.0) -> None:
        super().__init__(sleep=clock.sleep, async_sleep=clock.asleep, random_value=lambda: 0.5)
        self.clock = clock
        self.build_seconds = build_seconds
        self.ready_at: float | None = None
        self.finished = 0
        self._count_lock = threading.Lock()

    def _building(self) -> float:
        """Seconds until the SDK client is built; the first request to ask starts the build."""
        with self._count_lock:
            if self.ready_at is None:
                self.ready_at = self.clock() + self.build_seconds
            return self.ready_at - self.clock()

    def _sdk(self, kind: str = "chat") -> Any:
        self.clock.sleep(self._building())
        return super()._sdk(kind)

    async def _async_sdk(self, kind: str = "chat") -> Any:
        await self.clock.asleep(self._building())
        return await super()._async_sdk(kind)

    def _finish(self) -> None:
        with self._count_lock:
            self.finished += 1

    def send_message(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().send_message(*args, **kwargs)
        finally:
            self._finish()

    async def asend_message(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().asend_message(*args, **kwargs)
        finally:
            self._finish()


def run_out(clock: VirtualClock, client: SimulatedClient, calls: int, at_once: int) -> None:
    """Move the clock from wake-up to wake-up until `client` has ended `calls` calls.

    The clock moves only when every call that can be in progress (`at_once` of them, or all
    that are left) is asleep on it: nothing is on its way anywhere.
    """
    deadline = time.monotonic() + HANG
    while (finished := client.finished) < calls:
        if clock.parked() == min(at_once, calls - finished):
            clock.advance()
            deadline = time.monotonic() + HANG
        elif time.monotonic() > deadline:
            raise AssertionError(f"{finished} of {calls} calls ended, {clock.parked()} asleep, for {HANG} s")
        else:
            time.sleep(0.001)


class Workers:
    """Calls started together, each in its own thread or each a task of one event loop."""

    def __init__(self, asynchronous: bool) -> None:
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._loop = asyncio.new_event_loop() if asynchronous else None
        if self._loop is not None:
            self._spawn(self._loop.run_forever)

    def _spawn(self, target: Callable[..., Any], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def start(self, client: SimulatedClient, prompts: list[str]) -> None:
        """One call per prompt, all at once; each must be answered with its own echo."""
        for prompt in prompts:
            if self._loop is None:
                self._spawn(self._call, client, prompt)
            else:
                asyncio.run_coroutine_threadsafe(self._acall(client, prompt), self._loop)

    def _check(self, prompt: str, reply: Any) -> None:
        if reply != {"role": "assistant", "content": f"echo: {prompt}"}:
            self.errors.append(AssertionError(f"{prompt!r} was answered {reply!r}"))

    def _call(self, client: SimulatedClient, prompt: str) -> None:
        try:
            self._check(prompt, client.send_message([{"role": "user", "content": prompt}]))
        except BaseException as error:  # a worker's failure must fail the test, not vanish
            self.errors.append(error)

    async def _acall(self, client: SimulatedClient, prompt: str) -> None:
        try:
            self._check(prompt, await client.asend_message([{"role": "user", "content": prompt}]))
        except BaseException as error:
            self.errors.append(error)

    def close(self) -> None:
        """Close the loop's SDK clients and the loop; raise the first failure of any call."""
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._loop.shutdown_asyncgens(), self._loop).result(HANG)
            self._loop.call_soon_threadsafe(self._loop.stop)
        for thread in self._threads:
            thread.join(HANG)
        if self._loop is not None:
            self._loop.close()
        if self.errors:
            raise self.errors[0]


@pytest.fixture
def virtual(server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[VirtualClock]:
    """The process-wide gate and the server's arrival stamps on one virtual clock."""
    clock = VirtualClock()
    rate_gate.set_clock(clock, clock.sleep, clock.asleep)
    server.clock = clock
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    force_default_value("base_url", server.base_url)
    yield clock
    rate_gate.set_clock()


def arrivals(server: FakeOpenAIServer) -> list[float]:
    return sorted(round(r.time, 9) for r in server.requests)


BOTH = pytest.mark.parametrize("asynchronous", [False, True], ids=["threads", "asyncio"])


@BOTH
def test_a_cold_process_sends_no_burst_above_the_rate(
    virtual: VirtualClock, server: FakeOpenAIServer, asynchronous: bool
) -> None:
    """16 calls at once in a fresh process, whose first requests spend a second building the
    SDK client: at 240 a minute the server sees 4 at once (a second's worth), then one every
    0.25 s, not the 8 whose turn had come while the client was being built."""
    force_default_value("requests_per_minute", 240)
    client = SimulatedClient(virtual, build_seconds=1.0)
    workers = Workers(asynchronous)
    try:
        workers.start(client, [f"q{i}" for i in range(16)])
        run_out(virtual, client, calls=16, at_once=16)
    finally:
        workers.close()
    times = arrivals(server)
    assert respects(times, capacity=4, per_second=4)
    assert times == [1.0] * 4 + [1.0 + 0.25 * k for k in range(1, 13)]


@BOTH
def test_requests_held_up_by_busy_slots_leave_at_the_rate(
    virtual: VirtualClock, server: FakeOpenAIServer, asynchronous: bool
) -> None:
    """Both concurrency slots are held by slow requests while 6 more wait: when the slow ones
    end, 2 s later, the 6 leave at 240 a minute (4 at once, then every 0.25 s), not together."""
    force_default_value("requests_per_minute", 240)
    force_default_value("max_concurrent_model_calls", 2)
    release = threading.Event()
    server.script(Fault.hold(release), Fault.hold(release))
    client = SimulatedClient(virtual)
    workers = Workers(asynchronous)
    try:
        workers.start(client, ["slow 1", "slow 2"])
        assert server.wait_in_flight(2)
        workers.start(client, [f"q{i}" for i in range(6)])
        wait_until(lambda: virtual.parked() == 4, "four requests waiting for their place in line")
        virtual.advance(to=2.0)
        release.set()
        run_out(virtual, client, calls=8, at_once=8)
    finally:
        release.set()
        workers.close()
    times = arrivals(server)
    assert respects(times, capacity=4, per_second=4)
    assert times == [0.0, 0.0, 2.0, 2.0, 2.0, 2.0, 2.25, 2.5]


def test_rpm_60_spaces_20_requests_from_send_messages_a_second_apart(
    virtual: VirtualClock, server: FakeOpenAIServer
) -> None:
    """A bucket of one second's worth: the first request at once, every later one a second after."""
    force_default_value("requests_per_minute", 60)
    client = SimulatedClient(virtual)
    conversations = [[{"role": "user", "content": f"q{i}"}] for i in range(20)]
    results: list[Any] = []
    runner = threading.Thread(
        target=lambda: results.extend(client.send_messages(conversations, max_workers=8, progress=False))
    )
    runner.start()
    try:
        run_out(virtual, client, calls=20, at_once=8)
    finally:
        runner.join(HANG)
    assert results == [{"role": "assistant", "content": f"echo: q{i}"} for i in range(20)]
    assert arrivals(server) == [float(i) for i in range(20)]


@BOTH
def test_after_a_429_nothing_else_reaches_the_server_until_the_pause_ends(
    virtual: VirtualClock, server: FakeOpenAIServer, asynchronous: bool
) -> None:
    """A 429 saying "Retry-After: 1" holds every other call to that model for that second."""
    server.script(Fault.status(429, headers={"Retry-After": "1"}))
    client = SimulatedClient(virtual)
    workers = Workers(asynchronous)
    try:
        workers.start(client, ["first"])
        wait_until(lambda: virtual.parked() == 1, "the first call waiting to retry after its 429")
        workers.start(client, [f"q{i}" for i in range(7)])
        run_out(virtual, client, calls=8, at_once=8)
    finally:
        workers.close()
    times = arrivals(server)
    assert len(times) == 9
    assert times[:2] == [0.0, 1.0] and min(times[1:]) >= 1.0  # the 429 alone, then the pause


def test_on_the_real_clock_requests_over_the_burst_wait_at_least_their_turn(
    oai: OpenAIClient, server: FakeOpenAIServer
) -> None:
    """The real clock and sleeps, end to end: at 600 a minute (10 at once, then one every 0.1 s)
    the 20th request cannot arrive before 1 s has passed. Only a lower bound, which a slow
    machine can only exceed."""
    force_default_value("requests_per_minute", 600)
    started = time.monotonic()
    results = oai.send_messages(
        [[{"role": "user", "content": f"q{i}"}] for i in range(20)], max_workers=8, progress=False
    )
    assert results == [{"role": "assistant", "content": f"echo: q{i}"} for i in range(20)]
    times = arrivals(server)
    assert len(times) == 20
    assert times[-1] - started >= 1.0 - 1e-6
