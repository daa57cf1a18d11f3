"""The shared cache: answers kept in a Valkey/Redis store, for every worker on every machine.

The same keys as the file cache (`key_encoding.cache_key`), under CACHE_NAMESPACE:
`<namespace>:answer:<key>` holds the answer and `<namespace>:request:<key>` the request that
produced it (for `cache show` and `search`), both as JSON text: a network store is writable by
more people than a file, and JSON is data only, so nothing read back can run code (the file cache
reaches the same end with an unpickler that refuses every global). Entries never expire unless
CACHE_TTL says so: a rerun must hit. An answer is written with SET NX, so the first answer for a
key stays, as in the file.

In front of the store, a small in-process tier (LOCAL_ENTRIES answers, oldest out first) answers
repeated hits without a round trip; an answer never changes once stored, so the tier is never
stale (with a TTL, it forgets an answer when the store would).

One paid call per prompt across processes: on a miss, the calls in flight in this process share
one computation (coalesce.py), and that one takes a lease in the store (`<namespace>:lease:<key>`,
SET NX with an expiry, renewed while the call runs by a keeper thread) before it calls the model.
A worker that finds the lease held polls for the answer instead; if the lease goes without an
answer (the call failed, or its worker died and the lease expired) it tries for the lease itself.

When the store fails, `store.SharedStore` answers each operation's fallback: a miss, a lease of
our own, a write that did not happen. The call is answered, uncached, with one WARNING.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from .cache_file import TRANSPORT_ONLY, check_plain
from .coalesce import MISSING, Coalescer, Compute, Found
from .config import default
from .flow import Flow, Sleep, Step, adrive, drive
from .forksafe import renew_in_child
from .store import SharedStore, shared_store

__all__ = ["LEASE_SECONDS", "LOCAL_ENTRIES", "StoreCache", "decode", "forget_store_caches", "store_cache"]

T = TypeVar("T")

LOCAL_ENTRIES = 4096
"""Answers the in-process tier keeps (the oldest goes first): repeated hits skip the round trip."""

LEASE_SECONDS = 10.0
"""A lease's life without renewal: how long the others wait for a worker that died mid-call."""

POLL_FIRST, POLL_MAX = 0.005, 0.1
"""A worker waiting for another's answer looks again after 5 ms, doubling up to 100 ms."""

_TAKE = """
local answer = redis.call('GET', KEYS[1])
if answer then return {answer, 0} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {false, 1} end
return {false, 0}
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_COMPUTE = Compute()


def decode(raw: bytes | str) -> Any:
    """A stored value back as plain data: JSON only, so nothing in the store can run code here."""
    return json.loads(raw)


def _encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=True).encode("utf-8")


class Leases:
    """The leases this process holds, renewed by one daemon thread while their calls run."""

    def __init__(self, store: SharedStore, seconds: float = LEASE_SECONDS) -> None:
        self._store = store
        self.seconds = seconds
        self._held: dict[str, str] = {}
        self._lock = threading.Lock()
        self._keeper: threading.Thread | None = None
        self._owner = uuid.uuid4().hex
        renew_in_child(self)

    def _renew_after_fork(self) -> None:
        """A child holds none of its parent's leases, and has no keeper thread."""
        self._held, self._lock, self._keeper, self._owner = {}, threading.Lock(), None, uuid.uuid4().hex

    def take(self, name: str, answer: str) -> tuple[str | None, bytes | None]:
        """(a token if this caller now holds lease `name`, else None; the answer if one is stored).

        One script: an answer stored meanwhile (by a worker whose lease just ended) is returned
        instead of a lease, so nobody pays for it twice. When the store cannot say, the caller
        holds a lease of its own and waits for nobody."""
        token = f"{self._owner}:{threading.get_ident()}:{time.monotonic_ns()}"
        script, ms = self._store.script(_TAKE), int(self.seconds * 1000)
        nobody: list[Any] = [None, 1]
        found = self._store.run(
            "take a lease", lambda c: script(keys=[answer, name], args=[token, ms], client=c), nobody
        )
        raw: bytes | None = found[0]
        taken = bool(found[1])
        if raw is not None:
            return None, raw
        if not taken:
            return None, None
        with self._lock:
            self._held[name] = token
            if self._keeper is None:
                self._keeper = threading.Thread(target=self._keep, name="openai_utils-leases", daemon=True)
                self._keeper.start()
        return token, None

    def release(self, name: str, token: str) -> None:
        with self._lock:
            self._held.pop(name, None)
        script = self._store.script(_RELEASE)
        self._store.run("release a lease", lambda c: script(keys=[name], args=[token]), 0)

    def _keep(self) -> None:
        while True:
            time.sleep(self.seconds / 3)
            with self._lock:
                held = list(self._held.items())
            if not held:
                continue
            script, ms = self._store.script(_RENEW), int(self.seconds * 1000)
            for name, token in held:
                self._store.run("renew a lease", functools.partial(_run_script, script, name, [token, ms]), 0)


class StoreCache:
    """The `ResponseCache` interface (get, put, get_or_compute, aget_or_compute) over a store."""

    def __init__(self, store: SharedStore, namespace: str, ttl: int = 0, local_entries: int = LOCAL_ENTRIES) -> None:
        self.store = store
        self.namespace = namespace
        self.ttl = ttl
        self._local: dict[str, tuple[bytes, float]] = {}
        self._local_entries = local_entries
        self._calls = Coalescer(self)
        self.leases = Leases(store)

    def __repr__(self) -> str:
        return f"StoreCache({self.store.label!r}, namespace={self.namespace!r})"

    def answer_key(self, key: str) -> str:
        return f"{self.namespace}:answer:{key}"

    def request_key(self, key: str) -> str:
        return f"{self.namespace}:request:{key}"

    def lease_key(self, key: str) -> str:
        return f"{self.namespace}:lease:{key}"

    # -- reading ---------------------------------------------------------------------------

    def get(self, key: str) -> Any:
        """The cached value for `key` (a fresh copy), or MISSING: from this process's tier, else the store."""
        found = self._local.get(key)
        if found is not None and (found[1] == 0.0 or found[1] > time.monotonic()):
            return json.loads(found[0])
        raw = self.store.run("read an answer", lambda c: c.get(self.answer_key(key)), None)
        return MISSING if raw is None else self._decoded(key, raw)

    def holds(self, key: str) -> bool:
        """Whether `key` is in this process's tier, without asking the store."""
        return key in self._local

    def _remember(self, key: str, raw: bytes) -> None:
        if not self._local_entries:
            return
        if len(self._local) >= self._local_entries:
            # The oldest goes; another thread changing the dict meanwhile only means one more or
            # one fewer entry for a moment, never a failed call.
            with contextlib.suppress(RuntimeError, StopIteration):
                self._local.pop(next(iter(self._local)), None)
        self._local[key] = (raw, time.monotonic() + self.ttl if self.ttl else 0.0)

    # -- writing ---------------------------------------------------------------------------

    def put(self, key: str, value: Any, request: Mapping[str, Any] | None = None) -> None:
        """Store `value` under `key` (the first answer for a key stays), with its request beside it."""
        if key in self._local:
            return
        check_plain(value)
        raw = _encode(value)
        self.store.run("store an answer", lambda client: self.write(client, key, value, request, raw), False)
        self._remember(key, raw)

    def put_many(self, entries: Iterable[tuple[str, Any, Mapping[str, Any] | None]]) -> None:
        """`put` for many (key, value, request): a batch job's answers (`ResponseCache.put_many`)."""
        for key, value, request in entries:
            self.put(key, value, request)

    def write(
        self, client: Any, key: str, value: Any, request: Mapping[str, Any] | None, raw: bytes | None = None
    ) -> bool:
        """Store one entry with `client` in one round trip, unless the key holds one: whether it was
        stored. Store errors are raised (`put` and `cache copy` each decide what they mean)."""
        check_plain(value)
        raw = _encode(value) if raw is None else raw
        kept = None if request is None else {k: v for k, v in request.items() if k not in TRANSPORT_ONLY}
        try:
            request_raw = None if kept is None else _encode(kept)
        except (TypeError, ValueError):  # a request that is not plain data is not kept; the answer is
            request_raw = None
        ttl = self.ttl or None
        pipe = client.pipeline(transaction=False)
        pipe.set(self.answer_key(key), raw, nx=True, ex=ttl)
        if request_raw is not None:
            pipe.set(self.request_key(key), request_raw, nx=True, ex=ttl)
        return bool(pipe.execute()[0])

    # -- a miss: one computation in this process, one lease across processes -----------------

    def get_or_compute(
        self, key: str, compute: Callable[[], T], request: Mapping[str, Any] | None = None
    ) -> tuple[Any, bool]:
        """Return (value, was_cached); across every worker of the store, one computes a missing value."""
        value = self.get(key)
        if value is not MISSING:
            return value, True

        def perform(step: Step) -> Any:
            return time.sleep(step.seconds) if isinstance(step, Sleep) else compute()

        return self._calls.compute_once(key, lambda: drive(self._leased(key, request), perform), request)

    async def aget_or_compute(
        self, key: str, compute: Callable[[], Awaitable[T]], request: Mapping[str, Any] | None = None
    ) -> tuple[Any, bool]:
        """The async form of `get_or_compute`: waits for another worker's answer without blocking the loop
        (each store operation itself is short, bounded by STORE_TIMEOUT)."""
        value = self.get(key)
        if value is not MISSING:
            return value, True
        import asyncio

        async def perform(step: Step) -> Any:
            return await asyncio.sleep(step.seconds) if isinstance(step, Sleep) else await compute()

        return await self._calls.acompute_once(key, lambda: adrive(self._leased(key, request), perform), request)

    def _leased(self, key: str, request: Mapping[str, Any] | None) -> Flow[Any]:
        """Compute under the key's lease and store the answer before letting go of the lease; or,
        while another worker holds it, wait for its answer (`Found`, a hit)."""
        name, wait = self.lease_key(key), POLL_FIRST
        while True:
            token, raw = self.leases.take(name, self.answer_key(key))
            if raw is not None:
                value = self._decoded(key, raw)
                if value is not MISSING:
                    return Found(value)
            if token is not None:
                try:
                    value = yield _COMPUTE
                    self.put(key, value, request)
                    return value
                finally:
                    self.leases.release(name, token)
            while True:
                yield Sleep(wait)
                wait = min(wait * 2, POLL_MAX)
                value, leased = self._poll(key, name)
                if value is not MISSING:
                    return Found(value)
                if not leased:
                    break

    def _poll(self, key: str, lease: str) -> tuple[Any, bool]:
        """(the answer or MISSING, whether the lease is still held), in one round trip."""

        def read(client: Any) -> tuple[Any, bool]:
            pipe = client.pipeline(transaction=False)
            pipe.get(self.answer_key(key))
            pipe.exists(lease)
            raw, leased = pipe.execute()
            return raw, bool(leased)

        raw, leased = self.store.run("read an answer", read, (None, False))
        return (MISSING if raw is None else self._decoded(key, raw)), leased

    def _decoded(self, key: str, raw: bytes) -> Any:
        """A stored answer as data, remembered in this process's tier; MISSING if it is not JSON."""
        try:
            value = decode(raw)
        except ValueError:  # not written by us: never an answer
            return MISSING
        self._remember(key, raw)
        return value

    # -- what `cache stats`, `export`, `show`, `search` and `copy` read ----------------------

    def keys(self) -> Iterator[str]:
        """Every cache key in the namespace (SCAN, so the store keeps serving meanwhile)."""
        prefix = self.answer_key("")
        for name in self.store.client.scan_iter(match=_glob_escape(prefix) + "*", count=1000):
            text = name.decode("utf-8") if isinstance(name, bytes) else name
            yield text[len(prefix) :]

    def entries(self) -> Iterator[tuple[str, Any, dict[str, Any] | None]]:
        """(key, value, request or None) of every entry, read straight from the store (errors raise)."""
        client = self.store.client
        batch: list[str] = []
        for key in self.keys():
            batch.append(key)
            if len(batch) == 500:
                yield from self._read_batch(client, batch)
                batch = []
        yield from self._read_batch(client, batch)

    def _read_batch(self, client: Any, keys: list[str]) -> Iterator[tuple[str, Any, dict[str, Any] | None]]:
        if not keys:
            return
        values = client.mget([self.answer_key(k) for k in keys])
        requests = client.mget([self.request_key(k) for k in keys])
        for key, raw, request_raw in zip(keys, values, requests, strict=True):
            if raw is None:
                continue  # expired or deleted since the scan
            try:
                value = decode(raw)
                request = decode(request_raw) if request_raw is not None else None
            except ValueError:
                continue
            yield key, value, request if isinstance(request, dict) else None


def _run_script(script: Any, key: str, args: list[Any], client: Any) -> Any:
    """Run a registered script on one key (for `SharedStore.run`, which passes its client last)."""
    return script(keys=[key], args=args, client=client)


def _glob_escape(text: str) -> str:
    """`text` as a literal in a SCAN pattern."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


_caches: dict[tuple[str, str, int, float], StoreCache] = {}
_caches_lock = threading.Lock()


def store_cache(url: str) -> StoreCache:
    """The shared cache at `url` with this process's CACHE_NAMESPACE and CACHE_TTL: one object per
    store and namespace in the process, so its in-process tier serves every client.

    Raises ConfigError for a URL that cannot be used (a password in it, redis-py missing)."""
    memo = default.memo("store_cache")
    found: StoreCache | None = memo.get(url)
    if found is not None:
        return found
    store = shared_store(url)
    assert store is not None
    key = (url, default["cache_namespace"], int(default["cache_ttl"]), store.timeout)
    with _caches_lock:
        found = _caches.get(key)
        if found is None:
            found = _caches[key] = StoreCache(store, key[1], key[2])
    memo[url] = found
    return found


def forget_store_caches() -> None:
    """Forget every shared cache object and close every store (tests start each case afresh)."""
    from .store import close_stores

    with _caches_lock:
        _caches.clear()
    default.memo("store_cache").clear()
    close_stores()
