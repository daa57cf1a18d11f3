"""The response cache: an append-only file of pickle records, shared by threads and processes.

File layout: see cache_file.py and docs/cache.md. Why this shape: a new entry costs one append
(the old module re-pickled the whole dict on every call); a crash mid-append leaves at most one
torn record at the end, which the next load cuts off; values are plain data read back with an
unpickler that refuses every global, so a crafted file cannot run code. Several processes append
under an exclusive lock on a side file (`<cache>.lock`) and pick up each other's records before
answering a miss.

A cache must never cost an answer that was paid for, nor anything that is not ours: a full disk,
a read-only place, a damaged file or a path that is not a cache file each log one WARNING and the
call is answered (from the file when it can be read, else from the server). Nothing reached
through a symbolic link, and nothing that is not a regular file, is renamed, replaced or cut.

This module is the cache as callers use it (get, put, compact, stats, one object per file); the
rest is split by job: keeping the entries in step with the file (cache_sync.py), every change
on disk (cache_disk.py), the format and the checks that a path is ours (cache_file.py), and the
sharing of identical calls in flight (coalesce.py).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .cache_disk import NEW_FILE_MODE, READ_ONLY_ERRNOS, NoLock, ReadOnly, file_lock, identity, rewrite, write_all
from .cache_file import (
    HEADER,
    PICKLE_PROTOCOL,
    check_plain,
    check_usable,
    encode_record,
    open_regular,
    request_bytes,
)
from .cache_sync import FileMirror
from .coalesce import MISSING, Coalescer
from .config import default
from .exceptions import CacheError

if TYPE_CHECKING:
    from .cache_store import StoreCache

__all__ = ["ResponseCache", "open_cache", "cache_for_calls", "MISSING", "HEADER"]

logger = logging.getLogger("openai_utils")

COMPACT_MIN_SUPERSEDED = 64
"""Below this many superseded records a rewrite saves too little to be worth doing."""

T = TypeVar("T")


class ResponseCache(FileMirror):
    """One cache file's entries in memory, kept in step with the file.

    Get one with `open_cache(path)`, which hands every caller in a process the same object for
    the same file, so two clients pointed at one file can never overwrite each other.
    """

    def __init__(self, path: Path, fsync: bool = False) -> None:
        import pickle  # here, not at import (~4 ms): only a cache in use needs it

        self._loads, self._dumps = pickle.loads, pickle.dumps
        super().__init__(path, fsync)
        self._calls = Coalescer(self)
        self.bytes_written = 0
        """Bytes this object appended, so the cost of a write can be measured (benchmarks/bench_cache.py)."""

    # -- reading -------------------------------------------------------------------------

    def get(self, key: str) -> Any:
        """The cached value for `key` (a fresh copy), or MISSING."""
        value_bytes = self._entries.get(key)
        if value_bytes is None:
            with self._lock:
                self._sync()
                value_bytes = self._entries.get(key)
            if value_bytes is None:
                return MISSING
        # Already checked by the safe unpickler when it was read or written; a fresh copy each
        # time means a caller editing its answer cannot change what the next hit returns.
        return self._loads(value_bytes)

    def __len__(self) -> int:
        with self._lock:
            self._sync()
            return len(self._entries)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            self._sync()
            return key in self._entries

    def items(self) -> Iterator[tuple[str, Any]]:
        """Every entry, as (key, value)."""
        with self._lock:
            self._sync()
            snapshot = list(self._entries.items())
        for key, value_bytes in snapshot:
            yield key, self._loads(value_bytes)

    # -- writing -------------------------------------------------------------------------

    def put(self, key: str, value: Any, request: Mapping[str, Any] | None = None) -> None:
        """Store `value` under `key` with one append, with the request that produced it beside it.

        A key another process already wrote is kept. When the answer cannot be stored (a full
        disk, a read-only place) this logs a WARNING and returns: the caller has its answer.
        """
        self.put_many(((key, value, request),))

    def put_many(self, entries: Iterable[tuple[str, Any, Mapping[str, Any] | None]]) -> None:
        """`put` for many (key, value, request) at once, under one hold of the lock: a batch job
        stores tens of thousands of answers, and taking the lock for each made that about three
        times slower (10,000 answers: 0.76-0.92 s one by one, 0.25-0.36 s at once, same run)."""
        encoded = []
        for key, value, request in entries:
            check_plain(value)
            value_bytes = self._dumps(value, protocol=PICKLE_PROTOCOL)
            encoded.append((key, value_bytes, encode_record(key, value_bytes, request_bytes(request))))
        with self._lock:
            if self._read_only is not None or self._unusable is not None:
                return
            try:
                with file_lock(self.path):
                    self._sync(locked=True)
                    for key, value_bytes, record in encoded:
                        if self._read_only is not None or self._unusable is not None:
                            return
                        if key not in self._entries:
                            self._append(key, value_bytes, record)
                            if key not in self._entries:  # not stored, and said so once: stop here
                                return
            except ReadOnly as exc:
                self._become_read_only(str(exc))
            except CacheError as exc:
                self._become_unusable(str(exc))
            except NoLock as exc:
                self._not_stored(exc)

    def holds(self, key: str) -> bool:
        """Whether `key` is in memory, without looking at the file."""
        return key in self._entries

    def get_or_compute(
        self, key: str, compute: Callable[[], T], request: Mapping[str, Any] | None = None
    ) -> tuple[Any, bool]:
        """Return (value, was_cached); compute and store a missing value exactly once.

        Identical requests in flight at once in this process (in threads or in tasks, see
        `aget_or_compute`) wait for the first one instead of each paying for the same answer.
        If the first fails, the next waiter tries in its place.
        """
        value = self.get(key)
        if value is not MISSING:
            return value, True
        return self._calls.compute_once(key, compute, request)

    async def aget_or_compute(
        self, key: str, compute: Callable[[], Awaitable[T]], request: Mapping[str, Any] | None = None
    ) -> tuple[Any, bool]:
        """The async form of `get_or_compute`, sharing its calls in flight: a task waits for an
        identical call of another task or thread without blocking its loop or any thread."""
        value = self.get(key)
        if value is not MISSING:
            return value, True
        return await self._calls.acompute_once(key, compute, request)

    def compact(self) -> int:
        """Rewrite the file with one record per key, atomically; return the bytes saved.

        Raises CacheError where the file must not or cannot be rewritten (a link, a read-only
        place, a file that is not a cache).
        """
        with self._lock:
            self._sync()  # finds a link or a read-only place before any lock file is made
            problem = self._unusable or self._read_only
            if problem is None:
                try:
                    with file_lock(self.path):
                        self._sync(locked=True)
                        problem = self._unusable or self._read_only
                        if problem is None:
                            return self._rewrite() if self.path.exists() else 0
                except ReadOnly as exc:
                    problem = str(exc)
                except NoLock as exc:
                    problem = exc.strerror
            raise CacheError(f"cache {self.path} cannot be compacted: {problem}")

    def stats(self) -> dict[str, Any]:
        """Entries, file size, superseded records and models, as `cache stats` shows them."""
        from .cache_inspect import Snapshot, read_cache

        with self._lock:
            self._sync()
        try:
            return read_cache(self.path).stats()
        except FileNotFoundError:
            return Snapshot(self.path, 0).stats()

    def _append(self, key: str, value_bytes: bytes, record: bytes) -> None:
        """Append one record (after the header, for a new file); undo a write that fails partway."""
        try:
            fd = open_regular(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, follow_link=False, mode=NEW_FILE_MODE)
        except OSError as exc:
            if exc.errno in READ_ONLY_ERRNOS:
                raise ReadOnly(f"it cannot be written ({exc.strerror})") from None
            self._not_stored(exc)
            return
        try:
            end = os.fstat(fd).st_size
            data = record if end else HEADER + record
            try:
                write_all(fd, data)
                if self.fsync:
                    os.fsync(fd)
            except OSError as exc:
                self._roll_back(fd, end, exc)
                return
            self._identity = identity(os.fstat(fd))
        finally:
            os.close(fd)
        self.bytes_written += len(data)
        self._offset = end + len(data)
        self._entries[key] = value_bytes
        if self._superseded >= COMPACT_MIN_SUPERSEDED and self._superseded > len(self._entries):
            try:
                self._rewrite()
            except OSError as exc:  # the old file is whole and still in place: only space is lost
                self._report(f"cache {self.path} could not be compacted ({exc.strerror or exc}); it keeps growing")

    def _roll_back(self, fd: int, end: int, error: OSError) -> None:
        """Cut a failed append back to the last whole record, so the next record starts clean."""
        try:
            os.ftruncate(fd, end)
        except OSError as undo:
            logger.warning(
                "cache %s: the answer was not stored (%s), and cutting the partial record failed (%s): "
                "the next load cuts it off; the call is answered",
                self.path,
                error.strerror,
                undo.strerror,
            )
            return
        self._not_stored(error)

    def _not_stored(self, error: OSError) -> None:
        logger.warning(
            "cache %s: the answer was not stored (%s); the file keeps its %d whole entries and the call is answered",
            self.path,
            error.strerror or error,
            len(self._entries),
        )

    def _rewrite(self) -> int:
        """Compact the file (see cache_disk.rewrite); the caller holds both locks."""
        before, after = rewrite(self.path)
        self._offset = after.st_size
        self._identity = identity(after)
        self._superseded = 0
        return before - after.st_size


_open_caches: dict[Path, ResponseCache] = {}
_by_name: dict[tuple[str, str | None], ResponseCache] = {}
_open_lock = threading.Lock()
_reported_paths: set[str] = set()


def open_cache(file_name: str | os.PathLike[str], fsync: bool = False) -> ResponseCache:
    """The one cache object for this file in this process (created on first use, file untouched).

    Raises CacheError for a path no cache may use (see `check_usable`). Every call on the hit
    path comes through here, and resolving a path costs a stat per folder, so the answer is
    remembered by the name as given (with the working directory, for a relative name, since the
    same name means another file after a chdir). The folders are resolved, the file itself is
    not: a link stays a link, so it is never replaced.
    """
    name = os.fspath(file_name)
    memo = (name, None) if os.path.isabs(name) else (name, os.getcwd())
    cache = _by_name.get(memo)
    if cache is not None and cache.fsync == fsync:
        return cache
    given = Path(name).expanduser()
    path = given.parent.resolve() / given.name
    check_usable(path)
    with _open_lock:
        cache = _open_caches.get(path)
        if cache is None:
            cache = _open_caches[path] = ResponseCache(path, fsync=fsync)
        cache.fsync = fsync
        _by_name[memo] = cache
        return cache


def cache_for_calls(file_name: str | None, fsync: bool = False) -> ResponseCache | StoreCache | None:
    """The cache a call uses, or None: /dev/null turns the cache off, and a path no cache may use
    is logged (one WARNING per path and problem) and the call is answered without the cache.

    `file_name` None means the configured one: CACHE_BACKEND when it names a store, else
    CACHE_FILE_NAME. A store URL (redis://, rediss://) gives the shared cache (cache_store.py)."""
    if file_name is None:
        from .store import backend_url

        file_name = default["cache_file_name"] if default["cache_backend"] == "file" else backend_url()
        file_name = file_name or default["cache_file_name"]
    if file_name == os.devnull:
        return None
    if "://" in file_name:
        from .cache_store import store_cache

        return store_cache(file_name)
    try:
        return open_cache(file_name, fsync=fsync)
    except CacheError as exc:
        message = str(exc)
        if message not in _reported_paths:
            _reported_paths.add(message)
            logger.warning("%s; calls are answered without the cache", message)
        return None
