"""The token bucket: a rate per minute with a small burst, and the arithmetic of waiting for it.

One job, kept apart from the gate that uses it: `TokenBucket.reserve(amount)` takes the tokens
at once (the level may go below zero) and returns how long the caller must wait before sending,
so `acquire` (time.sleep) and `aacquire` (asyncio.sleep) differ only in how they wait, and each
request sleeps exactly once, first come first served. The clock and the sleeps are injected, so
tests run on a fake clock without waiting. The gate depends only on `Bucket`, what a bucket does
(`rate_per_minute`, `level`, `reserve`), so a bucket kept elsewhere (shared by several
processes, say) can stand in for this one.

Design choices, documented here because callers can observe them:

Burst
    A bucket holds `max(1, rate / 60 * burst_seconds)` tokens, with `burst_seconds` = 1 by
    default: one second's worth, not one minute's. OpenAI enforces per-minute limits over much
    shorter windows, so a full minute's burst sent at once would be refused. Over any window of
    `w` seconds a bucket lets through at most `capacity + rate_per_second * w`.

Requests larger than the bucket
    A TPM bucket of one second's worth is often smaller than one big prompt. Such a request is
    not refused and cannot deadlock: it waits until the bucket is full, then takes everything
    and leaves the level negative, so the requests after it wait for the debt to be repaid and
    the rate over a minute is still respected.

Interrupted waits
    A wait interrupted (Ctrl-C, task cancellation) keeps its reservation: the tokens are spent
    without a request. That errs on the side of sending less, never more.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .forksafe import renew_in_child

__all__ = ["BURST_SECONDS", "AsyncSleep", "Bucket", "Clock", "Sleep", "TokenBucket", "asyncio_sleep"]

BURST_SECONDS = 1.0
"""A bucket holds this many seconds' worth of its rate (at least one request or token)."""

Clock = Callable[[], float]
Sleep = Callable[[float], Any]
AsyncSleep = Callable[[float], Awaitable[Any]]


async def asyncio_sleep(seconds: float) -> None:
    """The default async sleep; asyncio is imported only by those who await."""
    import asyncio

    await asyncio.sleep(seconds)


class Bucket(Protocol):
    """What the rate gate needs of a bucket: its rate, its level, and a place in line."""

    @property
    def rate_per_minute(self) -> float: ...

    @property
    def level(self) -> float: ...

    def reserve(self, amount: float = 1) -> float:
        """Take `amount` tokens now; return the seconds to wait before using them (0: go)."""
        ...


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
        self._async_sleep = async_sleep or asyncio_sleep
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
