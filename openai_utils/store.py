"""The shared store: one Valkey/Redis connection per URL and process, behind a circuit breaker.

CACHE_BACKEND names a store by URL (`redis://host:6379/0`, `rediss://` for TLS); the shared
cache (cache_store.py) and the shared limits and pauses (store_limits.py) all go through the
`SharedStore` this module hands out, so there is one place that decides what happens when the
store fails: nothing a caller needs. Every store operation is bounded by STORE_TIMEOUT (connect
and read alike, with no retries of redis-py's own), and the first failure opens a breaker: one
WARNING, then every operation answers its fallback at once (a miss, a local limit) without
touching the network, until RETRY_SECONDS later one operation tries the store again. So no call
waits longer than the store timeout for a store that is down or stalled, and a store that comes
back is used again without a restart.

Secrets: the password comes only from the environment variable OPENAI_UTILS_STORE_PASSWORD. A
URL with a password in it is refused with a ConfigError naming that variable (a URL in
config.ini or a notebook is read by more people than the environment), and the URL is shown in
messages only as `scheme://host:port/db`.

redis-py is an optional extra (`pip install openai_utils[redis]`), imported on first use only.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .config import default
from .exceptions import ConfigError

__all__ = [
    "PASSWORD_VARIABLE",
    "RETRY_SECONDS",
    "SharedStore",
    "close_stores",
    "is_store_url",
    "shared_store",
    "store_label",
]

logger = logging.getLogger("openai_utils")

PASSWORD_VARIABLE = "OPENAI_UTILS_STORE_PASSWORD"  # noqa: S105 -- the name of the variable, not a password
"""The one place a store's password is read from."""

RETRY_SECONDS = 5.0
"""After a failure, the store is left alone this long before one operation tries it again."""

SCHEMES = ("redis", "rediss")

T = TypeVar("T")


def is_store_url(name: str | None) -> bool:
    """Whether a CACHE_BACKEND (or a cache name given to force_api_cache) names a store."""
    return name is not None and "://" in name and name.split("://", 1)[0].lower() in SCHEMES


def store_label(url: str) -> str:
    """The URL as messages show it: scheme, host, port and database, never a user or password."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path or ''}"


def check_url(url: str) -> None:
    """Refuse a store URL this library will not use, with what to write instead."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise ConfigError(f"CACHE_BACKEND {url!r} is neither file nor a redis:// or rediss:// URL")
    if parts.password is not None:
        raise ConfigError(
            f"the store URL {store_label(url)} has a password in it: remove it from the URL and set the "
            f"environment variable {PASSWORD_VARIABLE} instead (config files and notebooks are read by more people)"
        )
    if not parts.hostname:
        raise ConfigError(f"the store URL {store_label(url)} names no host: write e.g. redis://127.0.0.1:6379/0")
    try:
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(f"the store URL {store_label(url)} has a port that is not a number") from None


class Breaker:
    """Closed (use the store) until a failure; then open for RETRY_SECONDS, then one try.

    One WARNING when it opens after working (or on the first failure), one INFO when the store
    answers again; nothing in between, however many calls find it open.
    """

    def __init__(self, label: str, clock: Callable[[], float] = time.monotonic, retry_seconds: float | None = None):
        self.label = label
        self._clock = clock
        self.retry_seconds = RETRY_SECONDS if retry_seconds is None else retry_seconds
        self._lock = threading.Lock()
        self._open_until: float | None = None
        self.failures = 0
        """Operations that failed (not those skipped while open): a test can count the store's tries."""

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def allows(self) -> bool:
        """Whether an operation may try the store now (closed, or open and due for a try)."""
        until = self._open_until
        if until is None:
            return True
        with self._lock:
            if self._open_until is not None and self._clock() >= self._open_until:
                self._open_until = self._clock() + self.retry_seconds  # this caller tries; the others keep skipping
                return True
            return False

    def succeeded(self) -> None:
        if self._open_until is not None:
            with self._lock:
                if self._open_until is not None:
                    self._open_until = None
                    logger.info("the store %s answers again: shared cache, limits and pauses are back", self.label)

    def failed(self, what: str, error: BaseException) -> None:
        with self._lock:
            self.failures += 1
            opening = self._open_until is None
            self._open_until = self._clock() + self.retry_seconds
        if opening:
            logger.warning(
                "the store %s failed to %s (%s: %s); calls are answered without it (uncached, limits of this "
                "process only) and it is tried again every %g s",
                self.label,
                what,
                type(error).__name__,
                error,
                self.retry_seconds,
            )


class SharedStore:
    """One store URL in this process: a redis-py client and its breaker.

    `run(what, operation, fallback)` is the only way in: the operation gets the client and its
    result is returned, or, when the store fails or the breaker is open, `fallback` is.
    """

    def __init__(self, url: str, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        check_url(url)
        self.url = url
        self.label = store_label(url)
        self.timeout = timeout
        self.breaker = Breaker(self.label, clock)
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SharedStore({self.label!r}, timeout={self.timeout:g})"

    @property
    def client(self) -> Any:
        """The redis-py client, made on first use (redis-py drops a parent's connections after a fork)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = _connect(self.url, self.timeout)
        return self._client

    def run(self, what: str, operation: Callable[[Any], T], fallback: T) -> T:
        """`operation(client)`, or `fallback` when the store fails or is being left alone."""
        if not self.breaker.allows():
            return fallback
        import redis

        try:
            result = operation(self.client)
        except (redis.RedisError, OSError) as exc:
            self.breaker.failed(what, exc)
            return fallback
        self.breaker.succeeded()
        return result

    def script(self, source: str) -> Any:
        """A Lua script registered once (EVALSHA, reloaded by redis-py after a store restart)."""
        found = self._scripts.get(source)
        if found is None:
            found = self._scripts[source] = self.client.register_script(source)
        return found

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


def _connect(url: str, timeout: float) -> Any:
    """A redis-py client for `url`: bounded by `timeout`, no retries, the password from the environment."""
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        raise ConfigError(
            f"CACHE_BACKEND names a store ({store_label(url)}), which needs redis-py: pip install 'openai_utils[redis]'"
        ) from None
    password = os.environ.get(PASSWORD_VARIABLE) or None
    return redis.Redis.from_url(
        url,
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


_stores: dict[tuple[str, float], SharedStore] = {}
_stores_lock = threading.Lock()


def backend_url() -> str | None:
    """The store CACHE_BACKEND names, or None for the file (in any case); ConfigError for anything else."""
    backend: str = default["cache_backend"]
    if backend.lower() == "file":
        return None
    if not is_store_url(backend):
        raise ConfigError(
            f"CACHE_BACKEND {store_label(backend) if '://' in backend else backend!r} is neither file nor a "
            f"redis:// or rediss:// URL"
        )
    return backend


def shared_store(url: str | None = None) -> SharedStore | None:
    """The store for `url` (default: CACHE_BACKEND), one per URL and timeout in this process; None
    when the backend is the file. Raises ConfigError for a URL that cannot be used."""
    if url is None:
        url = backend_url()
        if url is None:
            return None
    key = (url, float(default["store_timeout"]))
    found = _stores.get(key)
    if found is None:
        with _stores_lock:
            found = _stores.get(key)
            if found is None:
                found = _stores[key] = SharedStore(url, key[1])
    return found


def close_stores() -> None:
    """Close and forget every store this process opened (tests, and a program that is done with them)."""
    with _stores_lock:
        stores = list(_stores.values())
        _stores.clear()
    for store in stores:
        store.close()
