"""Client-side rate limits: wait before a request rather than be refused with a 429 after it.

`RateGate` wires the two pieces together per endpoint, for threads and asyncio tasks alike:
`token_bucket.TokenBucket` (a rate per minute with a small burst) for REQUESTS_PER_MINUTE and
TOKENS_PER_MINUTE (0: off), and `pause.EndpointPause` (coordinated backoff after a 429). It
depends only on what they do (`token_bucket.Bucket`, `pause.Pauses`), and gives a client the hooks
to call around each HTTP attempt: `before_request` / `abefore_request` before it waits for a
concurrency slot, `before_send` / `abefore_send` as the last step before the request is sent, and
`after_error`. How many tokens a request counts is `request.estimate_tokens`.

Where the limit is measured
    At the moment a request leaves, not the moment it asks. A token taken early and used late
    (after waiting for a concurrency slot, or while the first request builds the SDK client or
    starts the local server) would let the requests whose time came meanwhile leave together,
    well above the rate. So each request passes two buckets of the same rate and size:
    `before_request` gives it a place in line (the wait that keeps it from taking a slot it
    cannot use yet), and `before_send`, called once the slot is held and the client is built,
    takes the token that counts. When nothing delays a request between the two, the second
    wait is zero or next to it; when something did, it is what keeps the rate.

A pause is capped at MAX_WAITING_TIME, like the retry wait. Clocks and sleeps are injectable
everywhere (`RateGate.set_clock` moves the process-wide gate), so tests run on a fake clock
without waiting.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from .config import default
from .exceptions import RateLimitError
from .forksafe import renew_in_child
from .pause import EndpointPause, Pauses
from .token_bucket import BURST_SECONDS, AsyncSleep, Bucket, Clock, Sleep, TokenBucket, asyncio_sleep

if TYPE_CHECKING:
    from .store_limits import SharedLimits

__all__ = ["PLACE", "SEND", "RateGate", "endpoint_pauses", "rate_gate"]

logger = logging.getLogger("openai_utils")

PLACE = "place"
"""The stage of `before_request`: a place in line, taken before a concurrency slot."""
SEND = "send"
"""The stage of `before_send`: the token that counts, taken right before the request leaves."""

Tokens = int | float | None | Callable[[], int | float | None]


def _owner() -> tuple[str, int]:
    """Who is asking: the current asyncio task if there is one in this thread, else the thread."""
    # asyncio may be half imported by another thread right now (redis-py imports it on first use
    # of a store): without current_task yet, no task can be running in this thread.
    current_task = getattr(sys.modules.get("asyncio"), "current_task", None)
    if current_task is not None:
        try:
            task = current_task()
        except RuntimeError:  # no running loop in this thread
            task = None
        if task is not None:
            return ("task", id(task))
    return ("thread", threading.get_ident())


def _configured_limits(endpoint: str) -> tuple[float, float]:
    """(requests per minute, tokens per minute) from config; 0 or a missing key means off."""
    return (default.get("requests_per_minute") or 0, default.get("tokens_per_minute") or 0)


def _backend() -> str:
    """ "file", or the store CACHE_BACKEND names with CACHE_NAMESPACE: where limits and pauses are kept."""
    if default["cache_backend"] == "file":
        return "file"
    from .store import backend_url

    url = backend_url()
    return "file" if url is None else f"{url} {default['cache_namespace']}"


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
        pauses: Pauses | None = None,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep or asyncio_sleep
        self._limits = limits
        self._burst_seconds = burst_seconds
        self.pauses: Pauses = pauses if pauses is not None else EndpointPause(clock, sleep, async_sleep)
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str, str, str], Bucket] = {}
        self._shared_pauses: dict[str, Pauses] = {}
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
            self._clock, self._sleep, self._async_sleep = clock, sleep, async_sleep or asyncio_sleep
            self._buckets.clear()
            self._shared_pauses.clear()
        self.pauses.set_clock(clock, sleep, async_sleep)

    def bucket(self, endpoint: str, kind: str, rate_per_minute: float, stage: str = PLACE) -> Bucket | None:
        """The `kind` ("requests" or "tokens") bucket of `endpoint` for `stage` at this rate; None when the rate is 0."""
        if not rate_per_minute or rate_per_minute <= 0:
            return None
        backend = _backend()
        key = (endpoint, kind, stage, backend)
        with self._lock:
            found = self._buckets.get(key)
            if found is None or found.rate_per_minute != float(rate_per_minute):
                found = TokenBucket(
                    rate_per_minute,
                    self._clock,
                    self._sleep,
                    burst_seconds=self._burst_seconds,
                    async_sleep=self._async_sleep,
                )
                if backend != "file":
                    found = self._shared(backend).bucket(endpoint, kind, stage, found)
                self._buckets[key] = found
            return found

    def _shared(self, backend: str) -> SharedLimits:
        """The store CACHE_BACKEND names, as limits and pauses every worker shares (store_limits.py)."""
        from .store_limits import SharedLimits

        url, namespace = backend.split(" ", 1)
        clock = None if self._clock is time.monotonic else self._clock
        return SharedLimits(url, namespace, self.pauses, clock)

    def _pauses(self) -> Pauses:
        """The pauses requests wait for: this process's, or with CACHE_BACKEND a store, everyone's."""
        backend = _backend()
        if backend == "file":
            return self.pauses
        found = self._shared_pauses.get(backend)
        if found is None:
            found = self._shared_pauses[backend] = self._shared(backend).pauses()
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
        pauses = self._pauses()
        slept_until: float | None = None
        while True:
            while (step := pauses.next_wait(endpoint, owner, slept_until)) is not None:
                slept_until, seconds = step
                yield seconds
            wait = self._reserve(endpoint, estimated_tokens)
            if wait > 0:
                yield wait
            if pauses.next_wait(endpoint, owner, slept_until) is None:
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
        return self._pauses().resume_time(endpoint, _owner()) is not None

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
        self._pauses().pause_for(endpoint, seconds, _owner())

    def reset(self) -> None:
        """Forget every bucket and pause (tests call this between cases)."""
        with self._lock:
            self._buckets.clear()
            self._shared_pauses.clear()
        self.pauses.clear()


endpoint_pauses = EndpointPause()
"""The process-wide pauses, shared by every client, thread and task."""

rate_gate = RateGate(pauses=endpoint_pauses)
"""The process-wide gate the clients call around each attempt."""
