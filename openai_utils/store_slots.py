"""A limit on requests in flight over every worker sharing the store (MAX_SHARED_CALLS).

The process-wide pool (concurrency.py) keeps MAX_CONCURRENT_MODEL_CALLS per process; with a store
named by CACHE_BACKEND and MAX_SHARED_CALLS above 0, a request also holds one of the store's
slots while it is in flight. The slots are a sorted set (`<namespace>:slots`) of holders scored
by when their hold expires: one Lua script drops the expired holders and adds this one if fewer
than the limit remain, atomically, by the store's clock. A keeper thread renews the holds of this
process every few seconds, so a worker that dies (and stops renewing) gives its slots back
within SLOT_SECONDS. Waiting for a slot looks again after 10 ms, doubling up to 100 ms.

When the store fails, requests go without a shared slot (the per-process limit still holds) and
store.py logs the one WARNING.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from .flow import Flow, Sleep, Step, adrive, drive
from .forksafe import renew_in_child
from .store import SharedStore

__all__ = ["SLOT_SECONDS", "SharedSlots", "atake", "configured", "shared_slots", "take"]

SLOT_SECONDS = 30.0
"""A hold's life without renewal: how long a dead worker's slot stays taken."""

_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
  return 1
end
return 0
"""

_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""

OPEN = "no store"
"""The token of a request that went without a shared slot because the store could not say."""


class SharedSlots:
    """The store's slots for one namespace; `waits()` takes one, `give_back` returns it."""

    def __init__(self, store: SharedStore, namespace: str, seconds: float = SLOT_SECONDS) -> None:
        self.store = store
        self.key = f"{namespace}:slots"
        self.seconds = seconds
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._keeper: threading.Thread | None = None
        self._owner = uuid.uuid4().hex
        renew_in_child(self)

    def _renew_after_fork(self) -> None:
        """A child holds none of its parent's slots and has no keeper thread."""
        self._held, self._lock, self._keeper, self._owner = set(), threading.Lock(), None, uuid.uuid4().hex

    def take(self, limit: int) -> str | None:
        """A token if a slot was free (OPEN when the store cannot say), else None."""
        token = f"{self._owner}:{threading.get_ident()}:{time.monotonic_ns()}"
        script, ms = self.store.script(_TAKE), int(self.seconds * 1000)
        taken = self.store.run(
            "take a shared slot", lambda c: script(keys=[self.key], args=[limit, token, ms], client=c), None
        )
        if taken is None:
            return OPEN
        if not taken:
            return None
        with self._lock:
            self._held.add(token)
            if self._keeper is None:
                self._keeper = threading.Thread(target=self._keep, name="openai_utils-slots", daemon=True)
                self._keeper.start()
        return token

    def waits(self, limit: int) -> Flow[str]:
        """The sleeps before a slot is free (flow.py's `Sleep` steps, for the sync and async
        drivers alike); the flow's result is the token."""
        wait = 0.01
        while (token := self.take(limit)) is None:
            yield Sleep(wait)
            wait = min(wait * 2, 0.1)
        return token

    def give_back(self, token: str) -> None:
        if token == OPEN:
            return
        with self._lock:
            self._held.discard(token)
        self.store.run("give back a shared slot", lambda c: c.zrem(self.key, token), None)

    def _keep(self) -> None:
        while True:
            time.sleep(self.seconds / 3)
            with self._lock:
                held = sorted(self._held)
            if held:
                self._renew(held)

    def _renew(self, held: list[str]) -> None:
        script, ms = self.store.script(_RENEW), int(self.seconds * 1000)
        self.store.run("renew shared slots", lambda c: script(keys=[self.key], args=[ms, *held], client=c), None)


_slots: dict[tuple[str, str], SharedSlots] = {}
_slots_lock = threading.Lock()


def shared_slots(url: str, namespace: str) -> SharedSlots:
    """The one `SharedSlots` of this store and namespace in this process."""
    from .store import shared_store

    store = shared_store(url)
    assert store is not None
    found = _slots.get((url, namespace))
    if found is None or found.store is not store:
        with _slots_lock:
            found = _slots.get((url, namespace))
            if found is None or found.store is not store:
                found = _slots[(url, namespace)] = SharedSlots(store, namespace)
    return found


def configured() -> tuple[SharedSlots, int] | None:
    """The store's slots and MAX_SHARED_CALLS, or None when there is no shared limit."""
    from .config import default
    from .store import backend_url

    limit: int = default["max_shared_calls"]
    url = backend_url() if limit else None
    if url is None:
        return None
    return shared_slots(url, default["cache_namespace"]), limit


def take(sleep: Any) -> tuple[SharedSlots, str] | None:
    """A shared slot, waited for with a blocking `sleep`, or None when there is no shared limit."""
    found = configured()
    if found is None:
        return None
    return found[0], drive(found[0].waits(found[1]), lambda step: sleep(_seconds(step)))


async def atake() -> tuple[SharedSlots, str] | None:
    """The async form of `take`: awaits between tries."""
    import asyncio

    found = configured()
    if found is None:
        return None
    return found[0], await adrive(found[0].waits(found[1]), lambda step: asyncio.sleep(_seconds(step)))


def _seconds(step: Step) -> float:
    assert isinstance(step, Sleep)
    return step.seconds
