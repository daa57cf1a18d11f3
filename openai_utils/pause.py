"""Coordinated backoff: after a 429 with Retry-After, every request to that endpoint waits.

One job, kept apart from the buckets and the gate: remember until when each endpoint is paused,
and who asked, so that the other requests to the endpoint wait until the same moment instead of
hammering the server and collecting 429s of their own. The gate depends only on `Pauses`, what
a pause registry does, so one kept elsewhere (shared by several processes, say) can stand in
for `EndpointPause`.

Who waits for a pause
    The request that received the 429 already waits the same Retry-After in its own retry loop
    (`retry.Attempts.failed` uses the hint), so the pause does not hold it back a second time: the
    thread or asyncio task that registered the latest pause for an endpoint (its `owner`) is
    exempt from it. Everyone else waits. The gate caps a pause at MAX_WAITING_TIME, like the
    retry wait.

Clocks and sleeps are injected, so tests run on a fake clock without waiting.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

from .forksafe import renew_in_child
from .token_bucket import AsyncSleep, Clock, Sleep, asyncio_sleep

__all__ = ["EndpointPause", "Pauses"]


class Pauses(Protocol):
    """What the rate gate needs of the pauses: register one, ask about one, forget them."""

    def set_clock(
        self, clock: Clock = time.monotonic, sleep: Sleep = time.sleep, async_sleep: AsyncSleep | None = None
    ) -> None:
        """Measure pauses on another clock from now on; every pause is forgotten."""
        ...

    def pause_for(self, endpoint: str, seconds: float, owner: Any = None) -> None:
        """Hold `endpoint` for `seconds` from now; `owner` is exempt."""
        ...

    def resume_time(self, endpoint: str, owner: Any = None) -> float | None:
        """The clock time `endpoint` may be called again by `owner`, or None if it may be now."""
        ...

    def remaining(self, endpoint: str, owner: Any = None) -> float:
        """Seconds until `endpoint` may be called again by `owner` (0: now)."""
        ...

    def next_wait(self, endpoint: str, owner: Any, slept_until: float | None) -> tuple[float, float] | None:
        """(resume time, seconds to sleep), or None when there is nothing (more) to wait for."""
        ...

    def clear(self, endpoint: str | None = None) -> None:
        """Forget the pause of `endpoint`, or of every endpoint."""
        ...


class EndpointPause:
    """The moment each endpoint may be called again, after a 429 told us to wait.

    Endpoints are plain strings chosen by the caller (e.g. server URL plus model). Process-wide
    use goes through `ratelimit.endpoint_pauses`, the instance the process-wide gate holds.
    """

    def __init__(
        self, clock: Clock = time.monotonic, sleep: Sleep = time.sleep, async_sleep: AsyncSleep | None = None
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep or asyncio_sleep
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
            self._clock, self._sleep, self._async_sleep = clock, sleep, async_sleep or asyncio_sleep
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

    def next_wait(self, endpoint: str, owner: Any, slept_until: float | None) -> tuple[float, float] | None:
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
        while (step := self.next_wait(endpoint, owner, slept_until)) is not None:
            slept_until, seconds = step
            self._sleep(seconds)
            waited += seconds
        return waited

    async def await_(self, endpoint: str, owner: Any = None) -> float:
        """The async form of `wait`."""
        waited, slept_until = 0.0, None
        while (step := self.next_wait(endpoint, owner, slept_until)) is not None:
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
