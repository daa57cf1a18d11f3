"""The process-wide limit on model requests in flight, shared by every client, thread and task.

One pool of slots serves threads (which block) and asyncio tasks (which await) alike, so a
notebook mixing thread pools and `asyncio.gather` still never has more than
MAX_CONCURRENT_MODEL_CALLS requests open at once. The limit is read from `default` at each
acquire, so changing it takes effect for the next request.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING

from .config import default
from .forksafe import renew_in_child

if TYPE_CHECKING:
    import asyncio

__all__ = ["CallSlots", "call_slots"]


class CallSlots:
    """A counting semaphore whose limit comes from config and which threads and tasks share."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._in_use = 0
        self._async_waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()
        renew_in_child(self)

    def _renew_after_fork(self) -> None:
        """A forked child starts with every slot free: the ones held at the fork belong to
        parent threads and tasks, which do not exist in the child and would never give them back."""
        self._cond = threading.Condition()
        self._in_use = 0
        self._async_waiters = deque()

    @property
    def in_use(self) -> int:
        return self._in_use

    def _try_acquire(self) -> bool:
        limit = default["max_concurrent_model_calls"]
        if limit and self._in_use >= limit:
            return False
        self._in_use += 1
        return True

    def _release(self) -> None:
        with self._cond:
            self._in_use -= 1
            self._cond.notify()
            while self._async_waiters:
                loop, waiter = self._async_waiters.popleft()
                if not waiter.done() and not loop.is_closed():
                    loop.call_soon_threadsafe(_wake, waiter)
                    break

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold one slot for the body, blocking the thread while none is free."""
        with self._cond:
            while not self._try_acquire():
                self._cond.wait(timeout=0.5)  # also notices a raised limit without a release
        shared = None
        try:
            if default["max_shared_calls"]:  # a slot over every worker of the store too (store_slots.py)
                from .store_slots import take

                shared = take(time.sleep)
            yield
        finally:
            if shared is not None:
                shared[0].give_back(shared[1])
            self._release()

    @asynccontextmanager
    async def ahold(self) -> AsyncIterator[None]:
        """Hold one slot for the body, awaiting (never blocking the loop) while none is free."""
        import asyncio

        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                if self._try_acquire():
                    break
                waiter: asyncio.Future[None] = loop.create_future()
                self._async_waiters.append((loop, waiter))
            try:
                await asyncio.wait_for(asyncio.shield(waiter), timeout=0.5)
            except asyncio.TimeoutError:
                pass
            finally:
                waiter.cancel()
        shared = None
        try:
            if default["max_shared_calls"]:
                from .store_slots import atake

                shared = await atake()
            yield
        finally:
            if shared is not None:
                shared[0].give_back(shared[1])
            self._release()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


call_slots = CallSlots()
"""The one pool for this process."""
