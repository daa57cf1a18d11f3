"""Client-side rate limits: wait before a request rather than be refused with a 429 after it.

Three pieces, each usable alone and all shared by threads and asyncio tasks:

* `TokenBucket`: a rate per minute with a small burst. `reserve(amount)` is the only arithmetic:
  it takes the tokens at once (the level may go below zero) and returns how long the caller must
  wait before sending, so `acquire` (time.sleep) and `aacquire` (asyncio.sleep) differ only in
  how they wait, and each request sleeps exactly once, first come first served.
* `EndpointPause`: coordinated backoff. When one request gets a 429 with Retry-After, every other
  request to that endpoint waits until the same moment instead of hammering the server and
  collecting 429s of its own.
* `RateGate`: both of the above per endpoint, configured from REQUESTS_PER_MINUTE and
  TOKENS_PER_MINUTE (0: off), and the hooks a client calls around each HTTP attempt:
  `before_request` / `abefore_request` before it waits for a concurrency slot,
  `before_send` / `abefore_send` as the last step before the request is sent, and
  `after_error`.

Design choices, documented here because callers can observe them:

Burst
    A bucket holds `max(1, rate / 60 * burst_seconds)` tokens, with `burst_seconds` = 1 by
    default: one second's worth, not one minute's. OpenAI enforces per-minute limits over much
    shorter windows, so a full minute's burst sent at once would be refused. Over any window of
    `w` seconds a bucket lets through at most `capacity + rate_per_second * w`.

Where the limit is measured
    At the moment a request leaves, not the moment it asks. A token taken early and used late
    (after waiting for a concurrency slot, or while the first request builds the SDK client or
    starts the local server) would let the requests whose time came meanwhile leave together,
    well above the rate. So each request passes two buckets of the same rate and size:
    `before_request` gives it a place in line (the wait that keeps it from taking a slot it
    cannot use yet), and `before_send`, called once the slot is held and the client is built,
    takes the token that counts. When nothing delays a request between the two, the second
    wait is zero or next to it; when something did, it is what keeps the rate.

Requests larger than the bucket
    A TPM bucket of one second's worth is often smaller than one big prompt. Such a request is
    not refused and cannot deadlock: it waits until the bucket is full, then takes everything
    and leaves the level negative, so the requests after it wait for the debt to be repaid and
    the rate over a minute is still respected.

Who waits for a pause
    The request that received the 429 already waits the same Retry-After in its own retry loop
    (`retry.Attempts.failed` uses the hint), so the pause does not hold it back a second time: the
    thread or asyncio task that registered the latest pause for an endpoint is exempt from it.
    Everyone else waits. A pause is capped at MAX_WAITING_TIME, like the retry wait.

Interrupted waits
    A wait interrupted (Ctrl-C, task cancellation) keeps its reservation: the tokens are spent
    without a request. That errs on the side of sending less, never more.

Clocks and sleeps are injectable everywhere, so tests run on a fake clock without waiting.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from .config import default
from .exceptions import RateLimitError
from .forksafe import renew_in_child

__all__ = [
    "BURST_SECONDS",
    "PLACE",
    "SEND",
    "TokenBucket",
    "EndpointPause",
    "RateGate",
    "estimate_tokens",
    "endpoint_pauses",
    "rate_gate",
]

logger = logging.getLogger("openai_utils")

BURST_SECONDS = 1.0
"""A bucket holds this many seconds' worth of its rate (at least one request or token)."""

PLACE = "place"
"""The stage of `before_request`: a place in line, taken before a concurrency slot."""
SEND = "send"
"""The stage of `before_send`: the token that counts, taken right before the request leaves."""

Clock = Callable[[], float]
Sleep = Callable[[float], Any]
AsyncSleep = Callable[[float], Awaitable[Any]]
Tokens = int | float | None | Callable[[], int | float | None]


async def _asyncio_sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


class TokenBucket:
    """`rate_per_minute` tokens a minute, at most `capacity` at once; waits rather than fails.

    Thread-safe. `reserve` does the arithmetic; `acquire` and `aacquire` sleep what it says.
    """

    def __init__(
        self,
        rate_per_minute: float,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        *,
        burst_seconds: float = BURST_SECONDS,
        async_sleep: AsyncSleep | None = None,
    ) -> None:
        if not rate_per_minute > 0:
            raise ValueError(f"rate_per_minute must be positive, not {rate_per_minute!r}")
        if not burst_seconds > 0:
            raise ValueError(f"burst_seconds must be positive, not {burst_seconds!r}")
        self.rate_per_minute = float(rate_per_minute)
        self.rate = self.rate_per_minute / 60.0
        """Tokens per second."""
        self.capacity = max(1.0, self.rate * burst_seconds)
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep or _asyncio_sleep
        self._lock = threading.Lock()
        self._level = self.capacity
        self._updated = clock()
        renew_in_child(self)

    def _renew_after_fork(self) -> None:
        """A forked child keeps the level (its requests share the parent's budget so far) but
        not a lock a parent thread may hold."""
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenBucket(rate_per_minute={self.rate_per_minute:g}, capacity={self.capacity:g})"

    @property
    def level(self) -> float:
        """Tokens available now; negative while a reservation or an oversized request is being repaid."""
        with self._lock:
            self._refill(self._clock())
            return self._level

    def _refill(self, now: float) -> None:
        elapsed = now - self._updated
        if elapsed > 0:
            self._level = min(self.capacity, self._level + elapsed * self.rate)
            self._updated = now

    def reserve(self, amount: float = 1) -> float:
        """Take `amount` tokens now; return the seconds to wait before using them (0: go).

        The wait is until the bucket would hold `min(amount, capacity)` tokens had nobody
        reserved after us, so concurrent callers are served in the order they reserved and an
        amount above capacity goes through once the bucket is full.
        """
        if amount < 0:
            raise ValueError(f"amount must not be negative, not {amount!r}")
        if amount == 0:
            return 0.0
        with self._lock:
            self._refill(self._clock())
            needed = min(float(amount), self.capacity)
            wait = max(0.0, (needed - self._level) / self.rate)
            self._level -= amount
            return wait

    def acquire(self, amount: float = 1) -> float:
        """Block until `amount` tokens may be used; return the seconds waited."""
        wait = self.reserve(amount)
        if wait > 0:
            self._sleep(wait)
        return wait

    async def aacquire(self, amount: float = 1) -> float:
        """Await (never blocking the loop) until `amount` tokens may be used; return the seconds waited."""
        wait = self.reserve(amount)
        if wait > 0:
            await self._async_sleep(wait)
        return wait


def _owner() -> tuple[str, int]:
    """Who is asking: the current asyncio task if there is one in this thread, else the thread."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None:
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no running loop in this thread
            task = None
        if task is not None:
            return ("task", id(task))
    return ("thread", threading.get_ident())


class EndpointPause:
    """The moment each endpoint may be called again, after a 429 told us to wait.

    Endpoints are plain strings chosen by the caller (e.g. server URL plus model). Process-wide
    use goes through the `endpoint_pauses` instance below.
    """

    def __init__(
        self, clock: Clock = time.monotonic, sleep: Sleep = time.sleep, async_sleep: AsyncSleep | None = None
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep or _asyncio_sleep
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}
        self._owners: dict[str, Any] = {}
        renew_in_child(self)

    def _renew_after_fork(self) -> None:
        """A forked child keeps the pauses (the server asked the parent's process to wait) but
        not a lock a parent thread may hold."""
        self._lock = threading.Lock()

    def set_clock(
        self, clock: Clock = time.monotonic, sleep: Sleep = time.sleep, async_sleep: AsyncSleep | None = None
    ) -> None:
        """Measure pauses on another clock from now on; every pause is forgotten (see `RateGate.set_clock`)."""
        with self._lock:
            self._clock, self._sleep, self._async_sleep = clock, sleep, async_sleep or _asyncio_sleep
            self._until.clear()
            self._owners.clear()

    def pause_until(self, endpoint: str, when: float, owner: Any = None) -> None:
        """Hold `endpoint` until clock time `when`; an earlier time than the one held is ignored.

        `owner` (a thread or task id) is exempt from the pause it registered; None exempts nobody.
        """
        with self._lock:
            current = self._until.get(endpoint)
            if current is None or when >= current:
                self._until[endpoint] = when
                self._owners[endpoint] = owner

    def pause_for(self, endpoint: str, seconds: float, owner: Any = None) -> None:
        """Hold `endpoint` for `seconds` from now."""
        self.pause_until(endpoint, self._clock() + max(0.0, seconds), owner)

    def resume_time(self, endpoint: str, owner: Any = None) -> float | None:
        """The clock time `endpoint` may be called again by `owner`, or None if it may be now."""
        with self._lock:
            until = self._until.get(endpoint)
            if until is None:
                return None
            if until <= self._clock():
                del self._until[endpoint]
                self._owners.pop(endpoint, None)
                return None
            if owner is not None and self._owners.get(endpoint) == owner:
                return None
            return until

    def remaining(self, endpoint: str, owner: Any = None) -> float:
        """Seconds until `endpoint` may be called again by `owner` (0: now)."""
        until = self.resume_time(endpoint, owner)
        return 0.0 if until is None else max(0.0, until - self._clock())

    def _next_wait(self, endpoint: str, owner: Any, slept_until: float | None) -> tuple[float, float] | None:
        """(resume time, seconds to sleep), or None when there is nothing (more) to wait for.

        A pause already slept through is not slept again, even if the clock says otherwise (a
        test's sleep that records instead of sleeping); only a pause extended meanwhile is.
        """
        until = self.resume_time(endpoint, owner)
        if until is None or (slept_until is not None and until <= slept_until):
            return None
        return until, max(0.0, until - self._clock())

    def wait(self, endpoint: str, owner: Any = None) -> float:
        """Block while `endpoint` is paused, including extensions made meanwhile; return seconds waited."""
        waited, slept_until = 0.0, None
        while (step := self._next_wait(endpoint, owner, slept_until)) is not None:
            slept_until, seconds = step
            self._sleep(seconds)
            waited += seconds
        return waited

    async def await_(self, endpoint: str, owner: Any = None) -> float:
        """The async form of `wait`."""
        waited, slept_until = 0.0, None
        while (step := self._next_wait(endpoint, owner, slept_until)) is not None:
            slept_until, seconds = step
            await self._async_sleep(seconds)
            waited += seconds
        return waited

    def clear(self, endpoint: str | None = None) -> None:
        """Forget the pause of `endpoint`, or of every endpoint."""
        with self._lock:
            if endpoint is None:
                self._until.clear()
                self._owners.clear()
            else:
                self._until.pop(endpoint, None)
                self._owners.pop(endpoint, None)


def _configured_limits(endpoint: str) -> tuple[float, float]:
    """(requests per minute, tokens per minute) from config; 0 or a missing key means off."""
    return (default.get("requests_per_minute") or 0, default.get("tokens_per_minute") or 0)


class RateGate:
    """Per-endpoint RPM and TPM buckets plus coordinated backoff, in front of every HTTP attempt.

    `limits(endpoint) -> (rpm, tpm)` is read at each request (default: REQUESTS_PER_MINUTE and
    TOKENS_PER_MINUTE from config, the same for every endpoint), so a changed setting applies
    to the next request; a bucket whose rate changed is replaced by a full one. Each endpoint
    has one bucket per kind ("requests", "tokens") and stage (`PLACE`, `SEND`).
    """

    def __init__(
        self,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        async_sleep: AsyncSleep | None = None,
        *,
        limits: Callable[[str], tuple[float, float]] = _configured_limits,
        burst_seconds: float = BURST_SECONDS,
        pauses: EndpointPause | None = None,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep or _asyncio_sleep
        self._limits = limits
        self._burst_seconds = burst_seconds
        self.pauses = pauses if pauses is not None else EndpointPause(clock, sleep, async_sleep)
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str, str], TokenBucket] = {}
        renew_in_child(self)

    def _renew_after_fork(self) -> None:
        """A forked child keeps the buckets but not a lock a parent thread may hold."""
        self._lock = threading.Lock()

    def set_clock(
        self, clock: Clock = time.monotonic, sleep: Sleep = time.sleep, async_sleep: AsyncSleep | None = None
    ) -> None:
        """Run this gate and its pauses on another clock from now on, starting afresh.

        The one switch that puts the process-wide gate on a simulated clock (tests that must
        not depend on how fast the machine is); `set_clock()` goes back to real time. Every
        bucket and pause is forgotten: they were measured on the old clock.
        """
        with self._lock:
            self._clock, self._sleep, self._async_sleep = clock, sleep, async_sleep or _asyncio_sleep
            self._buckets.clear()
        self.pauses.set_clock(clock, sleep, async_sleep)

    def bucket(self, endpoint: str, kind: str, rate_per_minute: float, stage: str = PLACE) -> TokenBucket | None:
        """The `kind` ("requests" or "tokens") bucket of `endpoint` for `stage` at this rate; None when the rate is 0."""
        if not rate_per_minute or rate_per_minute <= 0:
            return None
        key = (endpoint, kind, stage)
        with self._lock:
            found = self._buckets.get(key)
            if found is None or found.rate_per_minute != float(rate_per_minute):
                found = self._buckets[key] = TokenBucket(
                    rate_per_minute,
                    self._clock,
                    self._sleep,
                    burst_seconds=self._burst_seconds,
                    async_sleep=self._async_sleep,
                )
            return found

    def _reserve(self, endpoint: str, estimated_tokens: Tokens, stage: str = PLACE) -> float:
        """Take this request's turn in the endpoint's `stage` buckets; the seconds to wait for it."""
        rpm, tpm = self._limits(endpoint)
        wait = 0.0
        requests = self.bucket(endpoint, "requests", rpm, stage)
        if requests is not None:
            wait = requests.reserve(1)
        tokens = self.bucket(endpoint, "tokens", tpm, stage)
        if tokens is not None:
            amount = estimated_tokens() if callable(estimated_tokens) else estimated_tokens
            if amount:
                wait = max(wait, tokens.reserve(amount))
        return wait

    def _waits(self, endpoint: str, estimated_tokens: Tokens) -> Iterator[float]:
        """The waits before one request, in order; the sync and async forms only sleep them.

        First any pause of the endpoint, then this request's place in the RPM and TPM buckets.
        If a pause was registered while we waited for the bucket, we wait it out and take a new
        place, so the requests held back by a pause do not all leave together when it ends.
        """
        owner = _owner()
        slept_until: float | None = None
        while True:
            while (step := self.pauses._next_wait(endpoint, owner, slept_until)) is not None:
                slept_until, seconds = step
                yield seconds
            wait = self._reserve(endpoint, estimated_tokens)
            if wait > 0:
                yield wait
            if self.pauses._next_wait(endpoint, owner, slept_until) is None:
                return

    def before_request(self, endpoint: str, estimated_tokens: Tokens = None) -> float:
        """Block while `endpoint` is paused, then until this request's place in line comes up;
        return the seconds waited. `before_send` must follow, right before the request leaves.

        `estimated_tokens` may be a number or a function computing it, called only when a TPM
        limit is set (counting tokens costs time); pass the same function to `before_send`,
        memoized, to count once.
        """
        waited = 0.0
        for seconds in self._waits(endpoint, estimated_tokens):
            self._sleep(seconds)
            waited += seconds
        if waited > 0:
            logger.debug("waited %.2f s for the rate limits of %s", waited, endpoint)
        return waited

    async def abefore_request(self, endpoint: str, estimated_tokens: Tokens = None) -> float:
        """The async form of `before_request`: awaits, never blocking the event loop."""
        waited = 0.0
        for seconds in self._waits(endpoint, estimated_tokens):
            await self._async_sleep(seconds)
            waited += seconds
        if waited > 0:
            logger.debug("waited %.2f s for the rate limits of %s", waited, endpoint)
        return waited

    def before_send(self, endpoint: str, estimated_tokens: Tokens = None) -> float:
        """Block until this request's rate-limit token is due; return the seconds waited.

        The last step before the request is sent: after the concurrency slot is held and the
        SDK client is built, so that what goes out over any window of `w` seconds stays within
        `capacity + rate * w` however long requests were held up on their way here.
        """
        wait = self._reserve(endpoint, estimated_tokens, SEND)
        if wait > 0:
            self._sleep(wait)
            logger.debug("waited %.2f s to send to %s within its rate limits", wait, endpoint)
        return wait

    async def abefore_send(self, endpoint: str, estimated_tokens: Tokens = None) -> float:
        """The async form of `before_send`: awaits, never blocking the event loop."""
        wait = self._reserve(endpoint, estimated_tokens, SEND)
        if wait > 0:
            await self._async_sleep(wait)
            logger.debug("waited %.2f s to send to %s within its rate limits", wait, endpoint)
        return wait

    def paused(self, endpoint: str) -> bool:
        """Whether a pause registered by someone else holds `endpoint` now; never waits.

        For a check after a wait that followed `before_request` (for a concurrency slot, say):
        a 429 that arrived meanwhile means the request should go back through the gate.
        """
        return self.pauses.resume_time(endpoint, _owner()) is not None

    def after_error(self, endpoint: str, error: BaseException) -> None:
        """After a failed attempt: a 429 with a wait hint pauses `endpoint` for everyone else.

        The pause is capped at MAX_WAITING_TIME, as the retry wait is. Other errors, a 429
        without a hint, and QuotaExceededError (not a RateLimitError) change nothing.
        """
        if not isinstance(error, RateLimitError):
            return
        hint = error.retry_after
        if hint is None or math.isnan(hint) or hint <= 0:
            return
        cap = default.get("max_waiting_time")
        seconds = min(hint, cap) if cap is not None else hint
        logger.info("%s asked to wait %.2f s: pausing every request to it until then", endpoint, seconds)
        self.pauses.pause_for(endpoint, seconds, _owner())

    def reset(self) -> None:
        """Forget every bucket and pause (tests call this between cases)."""
        with self._lock:
            self._buckets.clear()
        self.pauses.clear()


def estimate_tokens(request: Mapping[str, Any], kind: str = "chat") -> int:
    """Tokens a request will count against a TPM limit: its prompt plus the completion budget.

    Chat: prompt tokens (tiktoken, via `count_tokens`) plus `max_tokens` (or
    `max_completion_tokens`) times `n` when set. Embeddings: the tokens of every input. When no
    encoding loads, about four characters a token.
    """
    from .tokens import count_text_tokens, count_tokens

    model = str(request.get("model") or "")
    if kind == "chat":
        messages = request.get("messages") or []
        prompt = count_tokens(messages, model, request.get("tools"))
        if prompt is None:
            prompt = _rough(messages) + _rough(request.get("tools") or "")
        budget = request.get("max_completion_tokens", request.get("max_tokens")) or 0
        choices = request.get("n") or 1
        return int(prompt + budget * choices)
    inputs = request.get("input")
    texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
    total = 0
    for text in texts:
        counted = count_text_tokens(text, model) if isinstance(text, str) else None
        total += counted if counted is not None else (len(text) if isinstance(text, list) else _rough(text))
    return total


def _rough(value: Any) -> int:
    return (len(str(value)) + 3) // 4


endpoint_pauses = EndpointPause()
"""The process-wide pauses, shared by every client, thread and task."""

rate_gate = RateGate(pauses=endpoint_pauses)
"""The process-wide gate the clients call around each attempt."""
