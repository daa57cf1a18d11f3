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
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import pickle
import stat
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from .cache_file import (
    HEADER,
    PICKLE_PROTOCOL,
    check_plain,
    classify_header,
    decode_records,
    encode_record,
    looks_like_plain_pickle,
    not_a_file,
    open_regular,
    request_bytes,
)
from .exceptions import CacheError

try:
    import fcntl
except ImportError:  # Windows: threads in one process still share safely; processes do not.
    fcntl = None  # type: ignore[assignment]

__all__ = ["ResponseCache", "open_cache", "cache_for_calls", "MISSING", "HEADER"]

logger = logging.getLogger("openai_utils")

_PICKLE_PROTOCOL = PICKLE_PROTOCOL  # kept for benchmarks/bench_cache.py
_encode_record = encode_record
COMPACT_MIN_SUPERSEDED = 64
"""Below this many superseded records a rewrite saves too little to be worth doing."""

_READ_ONLY_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_NEW_FILE_MODE = 0o600
"""The cache holds every prompt and answer: new files are readable by their owner only."""

MISSING: Any = object()
"""Returned by `get` for a key that is not cached (None is a valid cached value)."""

T = TypeVar("T")


class _ReadOnly(Exception):
    """The file (or its folder, or its lock) cannot be written here; the reason is the message."""


class _NoLock(OSError):
    """The lock file could not be made for another reason (a full disk): read without it, store nothing."""


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


class ResponseCache:
    """One cache file's entries in memory, kept in step with the file.

    Get one with `open_cache(path)`, which hands every caller in a process the same object for
    the same file, so two clients pointed at one file can never overwrite each other.
    """

    def __init__(self, path: Path, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self._lock = threading.RLock()
        self._entries: dict[str, bytes] = {}
        self._superseded = 0
        self._offset = 0
        self._identity: tuple[int, int] | None = None
        self._inflight: dict[str, InFlight] = {}
        self._loaded = False
        self._via_link = False
        self._read_only: str | None = None
        """Why new answers cannot be stored here, once that is known; hits are still served."""
        self._unusable: str | None = None
        """Why the file cannot be used at all, once that is known; calls go to the server."""
        self._reported: set[str] = set()
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
        return pickle.loads(value_bytes)  # noqa: S301 - checked by the safe unpickler when read

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
            yield key, pickle.loads(value_bytes)  # noqa: S301 - checked by the safe unpickler when read

    # -- writing -------------------------------------------------------------------------

    def put(self, key: str, value: Any, request: Mapping[str, Any] | None = None) -> None:
        """Store `value` under `key` with one append, with the request that produced it beside it.

        A key another process already wrote is kept. When the answer cannot be stored (a full
        disk, a read-only place) this logs a WARNING and returns: the caller has its answer.
        """
        check_plain(value)
        value_bytes = pickle.dumps(value, protocol=PICKLE_PROTOCOL)
        record = encode_record(key, value_bytes, request_bytes(request))
        with self._lock:
            if self._read_only is not None or self._unusable is not None:
                return
            try:
                with self._file_lock():
                    self._sync(locked=True)
                    if key in self._entries or self._read_only is not None or self._unusable is not None:
                        return
                    self._append(key, value_bytes, record)
            except _ReadOnly as exc:
                self._become_read_only(str(exc))
            except CacheError as exc:
                self._become_unusable(str(exc))
            except _NoLock as exc:
                self._not_stored(exc)

    def get_or_compute(
        self, key: str, compute: Callable[[], T], request: Mapping[str, Any] | None = None
    ) -> tuple[Any, bool]:
        """Return (value, was_cached); compute and store a missing value exactly once.

        Identical requests in flight at once in this process (in threads or in tasks, see
        `aget_or_compute`) wait for the first one instead of each paying for the same answer.
        If the first fails, the next waiter tries in its place.
        """
        while True:
            value = self.get(key)
            if value is not MISSING:
                return value, True
            flight, owner = self._claim(key)
            if not owner:
                flight.event.wait()
                continue
            try:
                if key in self._entries:  # finished by another caller between get and claim
                    continue
                computed = compute()
                self.put(key, computed, request)
                return computed, False
            finally:
                self._release(key, flight)

    async def aget_or_compute(
        self, key: str, compute: Callable[[], Awaitable[T]], request: Mapping[str, Any] | None = None
    ) -> tuple[Any, bool]:
        """The async form of `get_or_compute`, sharing its calls in flight: a task waits for an
        identical call of another task or thread without blocking its loop or any thread."""
        while True:
            value = self.get(key)
            if value is not MISSING:
                return value, True
            flight, owner = self._claim(key)
            if not owner:
                await flight.wait_async()
                continue
            try:
                if key in self._entries:
                    continue
                computed = await compute()
                self.put(key, computed, request)
                return computed, False
            finally:
                self._release(key, flight)

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
                    with self._file_lock():
                        self._sync(locked=True)
                        problem = self._unusable or self._read_only
                        if problem is None:
                            return self._rewrite() if self.path.exists() else 0
                except _ReadOnly as exc:
                    problem = str(exc)
                except _NoLock as exc:
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
            fd = open_regular(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, follow_link=False, mode=_NEW_FILE_MODE)
        except OSError as exc:
            if exc.errno in _READ_ONLY_ERRNOS:
                raise _ReadOnly(f"it cannot be written ({exc.strerror})") from None
            self._not_stored(exc)
            return
        try:
            end = os.fstat(fd).st_size
            data = record if end else HEADER + record
            try:
                _write_all(fd, data)
                if self.fsync:
                    os.fsync(fd)
            except OSError as exc:
                self._roll_back(fd, end, exc)
                return
            self._identity = _identity(os.fstat(fd))
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
        """Replace the file by one with a record per live key; the caller holds both locks.

        Reads the file again rather than writing from memory, because memory holds values only
        and each record's request must survive. The new file gets the old one's mode.
        """
        fd = open_regular(self.path, os.O_RDONLY, follow_link=False)
        with os.fdopen(fd, "rb") as handle:
            before = os.fstat(handle.fileno())
            data = handle.read()
        latest = {record.key: record for record in decode_records(data, len(HEADER)).records}
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.compact-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                if hasattr(os, "fchmod"):  # POSIX; elsewhere the new file keeps the folder's default
                    os.fchmod(out.fileno(), stat.S_IMODE(before.st_mode))
                out.write(HEADER)
                for record in latest.values():
                    out.write(encode_record(record.key, record.value, record.request))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise
        after = os.stat(self.path)
        self._offset = after.st_size
        self._identity = _identity(after)
        self._superseded = 0
        logger.info("compacted cache %s from %d to %d bytes", self.path, before.st_size, after.st_size)
        return before.st_size - after.st_size

    # -- keeping in step with the file ---------------------------------------------------

    def _sync(self, locked: bool = False) -> None:
        """Read whatever the file gained since we last looked (all of it, the first time).

        Trouble with the file is logged once and the cache carries on in a lesser mode (read
        only, or not at all); only _ReadOnly from a caller holding the lock passes through.
        """
        if self._unusable is not None:
            return
        try:
            current = self._current_stat()
            if current is None:
                if self._identity is not None:  # deleted under us: start empty, as the file is
                    self._reset_memory()
                self._loaded = True
                return
            if self._loaded and _identity(current) == self._identity and current.st_size == self._offset:
                return
            if locked or self._read_only is not None:
                self._read_file(repair=self._read_only is None)
                return
            try:
                with self._file_lock():
                    self._read_file(repair=True)
            except _ReadOnly as exc:
                self._become_read_only(str(exc))
                self._read_file(repair=False)
            except _NoLock:
                self._read_file(repair=False)
        except _ReadOnly:
            if locked:
                raise
        except CacheError as exc:
            self._become_unusable(str(exc))
        except OSError as exc:
            self._become_unusable(f"cache file {self.path} cannot be read ({exc.strerror or exc})")

    def _current_stat(self) -> os.stat_result | None:
        """The file's stat, or None when absent; a link is followed (and makes the cache read-only)."""
        try:
            found = os.lstat(self.path)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(found.st_mode):
            target = os.path.realpath(self.path)
            if not self._via_link:
                self._via_link = True
                self._become_read_only(
                    f"it is a symbolic link to {target}: answers are read through it but never written, so "
                    f"the file it points to is never changed; set CACHE_FILE_NAME to {target} to add to it"
                )
            try:
                found = os.stat(self.path)
            except FileNotFoundError:
                raise CacheError(
                    f"cache file {self.path} is a symbolic link to {target}, which does not exist"
                ) from None
            if not stat.S_ISREG(found.st_mode):
                raise not_a_file(self.path, found.st_mode, through=f"a symbolic link to {target}, which ")
        elif not stat.S_ISREG(found.st_mode):
            raise not_a_file(self.path, found.st_mode)
        return found

    def _reset_memory(self) -> None:
        self._entries.clear()
        self._superseded = 0
        self._offset = 0
        self._identity = None

    def _read_file(self, repair: bool) -> None:
        """Absorb the file's new records; with `repair`, cut or set aside what cannot be read."""
        fd = open_regular(self.path, os.O_RDONLY, follow_link=self._via_link)
        with os.fdopen(fd, "rb") as handle:
            found = os.fstat(handle.fileno())
            if _identity(found) != self._identity or found.st_size < self._offset:
                self._reset_memory()
            start = self._offset
            handle.seek(start)
            data = handle.read()
        self._loaded = True
        self._identity = _identity(found)
        begin = 0
        if start == 0:
            kind, detail = classify_header(data)
            if kind == "torn":
                if data and repair:
                    self._cut(0, f"it ended inside its header (the first write was cut short); cut {len(data)} bytes")
                return
            if kind == "newer":
                raise CacheError(
                    f"cache file {self.path} is format version {detail}, newer than this library reads (v1); it is "
                    f"left untouched. Upgrade openai_utils or set CACHE_FILE_NAME to another file"
                )
            if kind == "foreign":
                if not repair or self._via_link:
                    raise CacheError(f"cache file {self.path} is not a cache ({detail}); it is left untouched")
                self._set_aside(data, detail)
                return
            begin = len(HEADER)
        parsed = decode_records(data, begin)
        for record in parsed.records:
            if record.key in self._entries:
                self._superseded += 1
            self._entries[record.key] = record.value
        self._offset = start + parsed.stop
        if parsed.damage is not None:
            if repair:
                self._set_aside_tail(data[parsed.stop :], start + parsed.stop, parsed.damage)
            else:
                self._report(
                    f"cache {self.path}: {parsed.damage}; the {len(self._entries)} entries before it are "
                    f"served, nothing after it is read"
                )
        elif parsed.torn and repair:
            self._cut(
                self._offset,
                f"it ended in an incomplete record (a write was interrupted); cut {len(data) - parsed.stop} bytes, "
                f"kept {len(self._entries)} entries",
            )

    def _cut(self, keep: int, what: str) -> None:
        """Truncate our own file to its last whole record, as a crashed writer would have left it."""
        try:
            fd = open_regular(self.path, os.O_WRONLY, follow_link=False)
        except OSError as exc:
            if exc.errno in _READ_ONLY_ERRNOS:
                raise _ReadOnly(f"it cannot be written ({exc.strerror})") from None
            raise
        try:
            os.ftruncate(fd, keep)
        finally:
            os.close(fd)
        logger.warning("cache %s: %s", self.path, what)

    def _set_aside(self, data: bytes, reason: str) -> None:
        """Move a file that is not a cache out of the way, never deleting it, and start a fresh one."""
        aside = _free_name(self.path, "unreadable")
        try:
            os.rename(self.path, aside)
        except OSError as exc:
            if exc.errno in _READ_ONLY_ERRNOS:
                raise _ReadOnly(f"it is not a cache ({reason}) and cannot be moved aside ({exc.strerror})") from None
            raise
        self._reset_memory()
        hint = ""
        if looks_like_plain_pickle(data):
            hint = (
                f". It looks like a cache of the module this library replaces; to read its answers run: python -m "
                f"openai_utils cache import-legacy {aside} --into {self.path} --trust (only if you trust the file: "
                f"loading a plain pickle runs code)"
            )
        logger.warning(
            "cache %s could not be read (%s); it was moved to %s and a new cache started%s",
            self.path,
            reason,
            aside,
            hint,
        )

    def _set_aside_tail(self, tail: bytes, at: int, damage: str) -> None:
        """Copy a damaged tail to a file of its own, then cut it: every whole record before it stays."""
        aside = _free_name(self.path, "damaged")
        try:
            fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), _NEW_FILE_MODE)
            try:
                _write_all(fd, tail)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            if os.path.lexists(aside):
                os.unlink(aside)
            raise _ReadOnly(
                f"{damage}, and it cannot be set aside ({exc.strerror}); nothing is written after it"
            ) from None
        self._cut(
            at,
            f"{damage}; kept the {len(self._entries)} entries before it and moved the {len(tail)} bytes from there on to {aside}",
        )

    def _report(self, message: str) -> None:
        """Log a problem with the file once per cache object, not once per call."""
        if message not in self._reported:
            self._reported.add(message)
            logger.warning("%s", message)

    def _become_read_only(self, reason: str) -> None:
        if self._read_only is None:
            self._read_only = reason
            self._report(f"cache {self.path} is read-only here ({reason}): hits are served, new answers are not stored")

    def _become_unusable(self, reason: str) -> None:
        if self._unusable is None:
            self._unusable = reason
            self._report(f"{reason}; calls are answered without the cache")

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Serialise access to the file across processes (POSIX); a no-op where fcntl is missing.

        Always exclusive: reads happen only on misses and first loads, and whoever holds the lock
        may need to cut a torn tail or set a bad file aside. Raises _ReadOnly where the lock file
        cannot be created, since without it nothing may be written.
        """
        if fcntl is None:
            yield
            return
        lock = f"{self.path}.lock"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = open_regular(lock, os.O_RDWR | os.O_CREAT, follow_link=False, mode=_NEW_FILE_MODE)
        except CacheError as exc:
            raise CacheError(f"the lock file of {self.path}: {exc}") from None
        except OSError as exc:
            if exc.errno in _READ_ONLY_ERRNOS:
                raise _ReadOnly(f"its lock file {lock} cannot be created ({exc.strerror})") from None
            raise _NoLock(exc.errno, f"its lock file {lock} cannot be created ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte or raise: a short write (a disk filling up) is not a success."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def _free_name(path: Path, what: str) -> Path:
    """A name beside `path` that nothing has yet, so setting a file aside never overwrites one."""
    stem = f"{path.name}.{what}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    candidate = path.with_name(stem)
    number = 1
    while os.path.lexists(candidate):
        number += 1
        candidate = path.with_name(f"{stem}-{number}")
    return candidate


def _identity(found: os.stat_result) -> tuple[int, int]:
    return (found.st_dev, found.st_ino)


def _check_usable(path: Path) -> None:
    """Raise CacheError for a path no cache may use: not a regular file, a link to anything but a
    cache, a newer format, an unusable lock. Reads at most the first bytes; changes nothing."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        found = None
    except OSError as exc:
        raise CacheError(f"cache file {path} cannot be examined ({exc.strerror})") from None
    if found is not None:
        through = ""
        if stat.S_ISLNK(found.st_mode):
            target = os.path.realpath(path)
            through = f"a symbolic link to {target}, which "
            try:
                found = os.stat(path)
            except OSError:
                raise CacheError(
                    f"cache file {path} is a symbolic link to {target}, which does not exist; a cache is never "
                    f"created through a link, and the link is left as it is"
                ) from None
        if not stat.S_ISREG(found.st_mode):
            raise not_a_file(path, found.st_mode, through)
        try:
            fd = open_regular(path, os.O_RDONLY, follow_link=True)
        except OSError as exc:
            raise CacheError(f"cache file {path} cannot be read ({exc.strerror})") from None
        with os.fdopen(fd, "rb") as handle:
            kind, detail = classify_header(handle.read(64))
        if kind == "newer":
            raise CacheError(
                f"cache file {path} is format version {detail}, newer than this library reads (v1); it is left "
                f"untouched. Upgrade openai_utils or set CACHE_FILE_NAME to another file"
            )
        if kind == "foreign" and through:
            raise CacheError(f"cache file {path} is {through}is not a cache ({detail}); both are left untouched")
    lock = Path(f"{path}.lock")
    try:
        lock_mode = os.lstat(lock).st_mode
    except OSError:
        return
    if not stat.S_ISREG(lock_mode):
        raise CacheError(f"the lock file of cache {path}: {not_a_file(lock, lock_mode)}")


_open_caches: dict[Path, ResponseCache] = {}
_by_name: dict[tuple[str, str | None], ResponseCache] = {}
_open_lock = threading.Lock()
_reported_paths: set[str] = set()


def open_cache(file_name: str | os.PathLike[str], fsync: bool = False) -> ResponseCache:
    """The one cache object for this file in this process (created on first use, file untouched).

    Raises CacheError for a path no cache may use (see `_check_usable`). Every call on the hit
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
    _check_usable(path)
    with _open_lock:
        cache = _open_caches.get(path)
        if cache is None:
            cache = _open_caches[path] = ResponseCache(path, fsync=fsync)
        cache.fsync = fsync
        _by_name[memo] = cache
        return cache


def cache_for_calls(file_name: str, fsync: bool = False) -> ResponseCache | None:
    """The cache a call uses, or None: /dev/null turns the cache off, and a path no cache may use
    is logged (one WARNING per path and problem) and the call is answered without the cache."""
    if file_name == os.devnull:
        return None
    try:
        return open_cache(file_name, fsync=fsync)
    except CacheError as exc:
        message = str(exc)
        if message not in _reported_paths:
            _reported_paths.add(message)
            logger.warning("%s; calls are answered without the cache", message)
        return None
