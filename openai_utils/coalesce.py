"""Identical calls in flight at once share one computation, in threads and in tasks alike.

When a value is missing from a store (the response cache), the first caller computes it and every
caller asking for the same key meanwhile, from another thread or another task of any event loop,
waits for that one computation instead of paying for the same answer again. Separate from the
cache because it is not about the file at all: it only needs a store that can `get`, `put` and
say whether it `holds` a key, so any cache backend can reuse it.

The waiting is written once, as a flow of steps (`Wait` for the call in flight, `Compute` the
value) in the manner of flow.py, and driven by flow.py's two drivers: `compute_once` waits on a
thread event, `acompute_once` on a future of its own loop, without blocking the loop or a thread.
The hit path does not come here: the store answers a hit itself before anything is claimed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from .flow import Flow, Step, adrive, drive

__all__ = ["MISSING", "Store", "InFlight", "Coalescer", "Wait", "Compute", "Found"]

MISSING: Any = object()
"""Returned by `get` for a key that is not cached (None is a valid cached value)."""

T = TypeVar("T")


class Store(Protocol):
    """What coalescing needs of a cache."""

    def get(self, key: str) -> Any:
        """The value for `key`, or MISSING."""

    def holds(self, key: str) -> bool:
        """Whether `key` is already stored, from memory alone."""

    def put(self, key: str, value: Any, request: Mapping[str, Any] | None = None) -> None:
        """Store `value` under `key`."""


class InFlight:
    """One call being computed for a key: threads wait on `event`, tasks on a future of their
    loop, resolved from whichever thread or loop finishes the call."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._lock = threading.Lock()
        self._futures: list[Any] = []

    async def wait_async(self) -> None:
        import asyncio

        future = asyncio.get_running_loop().create_future()
        with self._lock:
            if self.event.is_set():
                return
            self._futures.append(future)
        await future

    def done(self) -> None:
        with self._lock:
            self.event.set()
            futures, self._futures = self._futures, []
        for future in futures:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits there any more
                future.get_loop().call_soon_threadsafe(_resolve, future)


def _resolve(future: Any) -> None:
    if not future.done():
        future.set_result(None)


class Wait(Step):
    """Wait until `flight` is done."""

    __slots__ = ("flight",)

    def __init__(self, flight: InFlight) -> None:
        self.flight = flight


class Compute(Step):
    """Compute the missing value; the result is the value (or a `Found`)."""


class Found:
    """What a computation returns when the value turned up in the store meanwhile, put there by
    someone this process cannot see (another process, through a shared store): it is answered as
    a hit and not stored again."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


_COMPUTE = Compute()


class Coalescer:
    """The calls in flight for one store, by key."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._inflight: dict[str, InFlight] = {}

    def compute_once(self, key: str, compute: Callable[[], T], request: Mapping[str, Any] | None) -> tuple[Any, bool]:
        """(value, was_cached) for a key the store just missed; see `after_miss`."""

        def perform(step: Step) -> Any:
            return step.flight.event.wait() if isinstance(step, Wait) else compute()

        return drive(self.after_miss(key, request), perform)

    async def acompute_once(
        self, key: str, compute: Callable[[], Awaitable[T]], request: Mapping[str, Any] | None
    ) -> tuple[Any, bool]:
        """The async form of `compute_once`: a task waits for an identical call of another task or
        thread without blocking its loop or any thread."""

        async def perform(step: Step) -> Any:
            if isinstance(step, Wait):
                return await step.flight.wait_async()
            return await compute()

        return await adrive(self.after_miss(key, request), perform)

    def after_miss(self, key: str, request: Mapping[str, Any] | None) -> Flow[tuple[Any, bool]]:
        """Compute and store the value of `key` exactly once: (value, was_cached).

        The first caller computes; the others wait for it and then read the store. If the first
        fails, its error reaches it alone (nothing is stored) and the next waiter tries in its place.
        """
        while True:
            flight, owner = self._claim(key)
            if not owner:
                yield Wait(flight)
            else:
                try:
                    if not self._store.holds(key):  # else finished by another caller between get and claim
                        computed = yield _COMPUTE
                        if isinstance(computed, Found):
                            return computed.value, True
                        self._store.put(key, computed, request)
                        return computed, False
                finally:
                    self._release(key, flight)
            value = self._store.get(key)
            if value is not MISSING:
                return value, True

    def _claim(self, key: str) -> tuple[InFlight, bool]:
        """The call in flight for `key`, and whether this caller now owns it."""
        with self._lock:
            flight = self._inflight.get(key)
            if flight is not None:
                return flight, False
            flight = self._inflight[key] = InFlight()
            return flight, True

    def _release(self, key: str, flight: InFlight) -> None:
        with self._lock:
            del self._inflight[key]
        flight.done()
