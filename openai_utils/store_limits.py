"""Rate limits and 429 pauses kept in the shared store, so they hold for every worker at once.

The rate gate (ratelimit.py) depends only on what a bucket does (`token_bucket.Bucket`) and what
the pauses do (`pause.Pauses`); this module gives both, kept in the Valkey/Redis store that
CACHE_BACKEND names, for the gate to use in place of its in-process ones.

`StoreBucket.reserve` is one Lua script call: the store refills the bucket by its own clock
(`TIME`, the same for every machine), takes the amount, and answers the wait, all atomically, so
concurrent workers never overwrite each other's counts (no read-modify-write from a client) and
the arithmetic is exactly the in-process `TokenBucket`'s: over any window of w seconds at most
`capacity + rate/60 * w` leave, for all workers together. A bucket left alone expires from the
store once it would be full again.

`StorePauses` adds to the in-process pauses a key per endpoint (`<namespace>:pause:<endpoint>`)
that expires when the pause ends and names who registered it (host, process, thread or task): a
429 with a wait hint seen by one worker holds every other worker's requests to that endpoint until
then; the one who saw it is exempt, as in one process.

When the store fails, each falls back to the in-process one it wraps: limits of this process
only, pauses of this process only (store.py logs the one WARNING).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from .pause import Pauses
from .store import SharedStore, shared_store
from .token_bucket import AsyncSleep, Bucket, Clock, Sleep, TokenBucket

__all__ = ["SharedLimits", "StoreBucket", "StorePauses", "worker_id"]

_RESERVE = """
local rate, cap, amount = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = tonumber(ARGV[4])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local state = redis.call('HMGET', KEYS[1], 'level', 'updated')
local level, updated = tonumber(state[1]), tonumber(state[2])
if level == nil or updated == nil then
  level, updated = cap, now
end
if now > updated then
  level = math.min(cap, level + (now - updated) * rate)
  updated = now
end
local wait = 0
if amount > 0 then
  local needed = math.min(amount, cap)
  if needed > level then wait = (needed - level) / rate end
  level = level - amount
  redis.call('HSET', KEYS[1], 'level', string.format('%.17g', level), 'updated', string.format('%.17g', updated))
  redis.call('PEXPIRE', KEYS[1], math.ceil(((cap - level) / rate + 1) * 1000))
end
return {string.format('%.17g', wait), string.format('%.17g', now), string.format('%.17g', level)}
"""

_PAUSE = """
local ms = tonumber(ARGV[2])
if redis.call('PTTL', KEYS[1]) < ms then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ms)
end
return 1
"""

_LOOK = """
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
"""


class StoreBucket:
    """A `token_bucket.Bucket` kept in the store; `fallback` answers while the store cannot.

    `clock` None (the default) measures time by the store's clock; a test may give its own, whose
    readings are then sent with each reservation (all users of the bucket must share it).
    """

    def __init__(self, store: SharedStore, key: str, fallback: TokenBucket, clock: Clock | None = None) -> None:
        self.store = store
        self.key = key
        self.fallback = fallback
        self.rate_per_minute = fallback.rate_per_minute
        self.capacity = fallback.capacity
        self._clock = clock
        self.last_admission: float | None = None
        """When the last reservation made here may be used, on the store's clock (seconds)."""

    def __repr__(self) -> str:
        return f"StoreBucket({self.key!r}, rate_per_minute={self.rate_per_minute:g}, capacity={self.capacity:g})"

    def _run(self, amount: float) -> tuple[float, float, float] | None:
        script = self.store.script(_RESERVE)
        now = -1.0 if self._clock is None else self._clock()
        args = [repr(self.rate_per_minute / 60.0), repr(self.capacity), repr(float(amount)), repr(now)]
        answer = self.store.run("take a rate-limit token", lambda c: script(keys=[self.key], args=args, client=c), None)
        if answer is None:
            return None
        wait, at, level = (float(part) for part in answer)
        return wait, at, level

    @property
    def level(self) -> float:
        """Tokens available now, for every worker together (this process's, while the store is down)."""
        answer = self._run(0)
        return self.fallback.level if answer is None else answer[2]

    def reserve(self, amount: float = 1) -> float:
        """Take `amount` tokens now, for every worker; the seconds to wait before using them."""
        if amount < 0:
            raise ValueError(f"amount must not be negative, not {amount!r}")
        if amount == 0:
            return 0.0
        answer = self._run(amount)
        if answer is None:
            return self.fallback.reserve(amount)
        wait, at, _ = answer
        self.last_admission = at + wait
        return wait


def worker_id(owner: Any) -> str:
    """Who holds a pause, across machines: host, process and the thread or task within it."""
    return f"{socket.gethostname()}:{os.getpid()}:{owner}"


class StorePauses:
    """A `pause.Pauses` whose pauses every worker of the store sees, on top of `local`'s."""

    def __init__(self, store: SharedStore, namespace: str, local: Pauses, clock: Clock = time.monotonic) -> None:
        self.store = store
        self.namespace = namespace
        self.local = local
        self._clock = clock

    def key(self, endpoint: str) -> str:
        return f"{self.namespace}:pause:{endpoint}"

    def set_clock(
        self, clock: Clock = time.monotonic, sleep: Sleep = time.sleep, async_sleep: AsyncSleep | None = None
    ) -> None:
        self._clock = clock
        self.local.set_clock(clock, sleep, async_sleep)

    def pause_for(self, endpoint: str, seconds: float, owner: Any = None) -> None:
        """Hold `endpoint` for `seconds` from now, for every worker but `owner`."""
        self.local.pause_for(endpoint, seconds, owner)
        ms = max(1, int(seconds * 1000))
        script, holder = self.store.script(_PAUSE), worker_id(owner)
        self.store.run("share a pause", lambda c: script(keys=[self.key(endpoint)], args=[holder, ms], client=c), None)

    def resume_time(self, endpoint: str, owner: Any = None) -> float | None:
        """The clock time `endpoint` may be called again by `owner`, or None if it may be now."""
        until = self.local.resume_time(endpoint, owner)
        script = self.store.script(_LOOK)
        found = self.store.run("read a pause", lambda c: script(keys=[self.key(endpoint)], client=c), None)
        if found is None:
            return until
        holder, ms = found
        if holder is None or ms is None or int(ms) <= 0:
            return until
        if owner is not None and (holder.decode() if isinstance(holder, bytes) else holder) == worker_id(owner):
            return until
        shared = self._clock() + int(ms) / 1000.0
        return shared if until is None else max(until, shared)

    def remaining(self, endpoint: str, owner: Any = None) -> float:
        until = self.resume_time(endpoint, owner)
        return 0.0 if until is None else max(0.0, until - self._clock())

    def next_wait(self, endpoint: str, owner: Any, slept_until: float | None) -> tuple[float, float] | None:
        """(resume time, seconds to sleep), or None when there is nothing (more) to wait for.

        A pause slept through is not slept again: the store's expiry is in milliseconds, so a
        pause read again right after its sleep may still show the last one."""
        until = self.resume_time(endpoint, owner)
        if until is None or (slept_until is not None and until <= slept_until + 0.002):
            return None
        return until, max(0.0, until - self._clock())

    def clear(self, endpoint: str | None = None) -> None:
        """Forget this process's pauses; the shared ones expire by themselves."""
        self.local.clear(endpoint)


class SharedLimits:
    """What the rate gate asks of a store: buckets and pauses kept there (`RateGate._shared`)."""

    def __init__(self, url: str, namespace: str, local_pauses: Pauses, clock: Clock | None) -> None:
        store = shared_store(url)
        assert store is not None
        self.store, self.namespace, self.local_pauses, self.clock = store, namespace, local_pauses, clock

    def bucket(self, endpoint: str, kind: str, stage: str, local: TokenBucket) -> Bucket:
        """The bucket of `endpoint` for `kind` and `stage` at `local`'s rate, which stands in while the
        store cannot (the rate is in the key: workers configured with another rate do not share it)."""
        key = f"{self.namespace}:rate:{endpoint}:{kind}:{stage}:{local.rate_per_minute:g}"
        return StoreBucket(self.store, key, local, self.clock)

    def pauses(self) -> Pauses:
        return StorePauses(self.store, self.namespace, self.local_pauses, self.clock or time.monotonic)
