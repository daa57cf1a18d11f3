"""The response cache: an append-only file of pickle records, shared by threads and processes.

File layout (see docs/cache.md)::

    HEADER                       b"openai_utils-cache v1\\n"
    record*                      >II (payload length, CRC-32 of payload) + payload
    payload                      >H key length + key (ASCII) + pickle of the value

Why this shape: a new entry costs one append (the old module re-pickled the whole dict on every
call); a crash mid-append leaves at most one torn record at the end, which the next load cuts
off; values are plain data read back with an unpickler that refuses every global, so a crafted
file cannot run code. Several processes append under an exclusive lock on a side file
(`<cache>.lock`) and pick up each other's records before answering a miss.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

from .exceptions import CacheError

try:
    import fcntl
except ImportError:  # Windows: threads in one process still share safely; processes do not.
    fcntl = None  # type: ignore[assignment]

__all__ = ["ResponseCache", "open_cache", "MISSING", "HEADER"]

logger = logging.getLogger("openai_utils")

HEADER = b"openai_utils-cache v1\n"
_HEADER_PREFIX = b"openai_utils-cache v"
_RECORD = struct.Struct(">II")
_KEYLEN = struct.Struct(">H")
_PICKLE_PROTOCOL = 4
COMPACT_MIN_SUPERSEDED = 64
"""Below this many superseded records a rewrite saves too little to be worth doing."""

MISSING: Any = object()
"""Returned by `get` for a key that is not cached (None is a valid cached value)."""

T = TypeVar("T")


class _RefuseGlobals(pickle.Unpickler):
    """Reads plain data only: any class or function reference in the stream is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: cache values are plain data")


def _safe_loads(data: bytes) -> Any:
    return _RefuseGlobals(io.BytesIO(data)).load()


_PLAIN_SCALARS = (str, int, float, bool, type(None))


def _check_plain(value: Any, where: str = "value") -> None:
    """Refuse anything but plain data, so no SDK object (or secret-bearing client) is ever pickled."""
    if isinstance(value, _PLAIN_SCALARS):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise TypeError(f"cache {where} has a non-string key {k!r}")
            _check_plain(item, f"{where}[{k!r}]")
        return
    raise TypeError(f"cache {where} is a {type(value).__name__}; only plain data (dict, list, str, numbers, None) is cached")


def _encode_record(key: str, value_bytes: bytes) -> bytes:
    key_bytes = key.encode("ascii")
    payload = _KEYLEN.pack(len(key_bytes)) + key_bytes + value_bytes
    return _RECORD.pack(len(payload), zlib.crc32(payload)) + payload


class _Corrupt(Exception):
    """A record that is complete but unreadable: bad checksum, bad key or a refused pickle."""


def _decode_records(data: bytes, start: int) -> tuple[list[tuple[str, bytes]], int, bool]:
    """Parse records from `start`; return them, where parsing stopped, and whether the rest is torn.

    Stops at the first incomplete record (torn: the writer died mid-append). Raises _Corrupt at a
    complete record that does not check out, since that is damage, not an interrupted write.
    """
    records: list[tuple[str, bytes]] = []
    pos = start
    end = len(data)
    while pos < end:
        if end - pos < _RECORD.size:
            return records, pos, True
        length, crc = _RECORD.unpack_from(data, pos)
        body_start = pos + _RECORD.size
        if end - body_start < length:
            return records, pos, True
        payload = data[body_start : body_start + length]
        if zlib.crc32(payload) != crc or length < _KEYLEN.size:
            raise _Corrupt(f"record at byte {pos} fails its checksum")
        (key_len,) = _KEYLEN.unpack_from(payload, 0)
        try:
            key = payload[_KEYLEN.size : _KEYLEN.size + key_len].decode("ascii")
            value_bytes = payload[_KEYLEN.size + key_len :]
            _safe_loads(value_bytes)
        except (UnicodeDecodeError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
            raise _Corrupt(f"record at byte {pos} is unreadable: {exc}") from None
        records.append((key, value_bytes))
        pos = body_start + length
    return records, pos, False


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
        self._inflight: dict[str, threading.Event] = {}
        self._loaded = False
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
        return pickle.loads(value_bytes)

    def __len__(self) -> int:
        with self._lock:
            self._sync()
            return len(self._entries)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            self._sync()
            return key in self._entries

    def items(self) -> Iterator[tuple[str, Any]]:
        """Every entry, as (key, value), for inspection and export."""
        with self._lock:
            self._sync()
            snapshot = list(self._entries.items())
        for key, value_bytes in snapshot:
            yield key, pickle.loads(value_bytes)

    # -- writing -------------------------------------------------------------------------

    def put(self, key: str, value: Any) -> None:
        """Store `value` under `key` with one append; a key another process already wrote is kept."""
        _check_plain(value)
        value_bytes = pickle.dumps(value, protocol=_PICKLE_PROTOCOL)
        record = _encode_record(key, value_bytes)
        with self._lock, self._file_lock():
            self._sync(locked=True)
            if key in self._entries:
                return
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if os.fstat(fd).st_size == 0:
                    os.write(fd, HEADER)
                    self.bytes_written += len(HEADER)
                    self._offset = len(HEADER)
                os.write(fd, record)
                if self.fsync:
                    os.fsync(fd)
                self._identity = _identity(os.fstat(fd))
            finally:
                os.close(fd)
            self.bytes_written += len(record)
            self._offset += len(record)
            self._entries[key] = value_bytes
            if self._superseded >= COMPACT_MIN_SUPERSEDED and self._superseded > len(self._entries):
                self._rewrite()

    def get_or_compute(self, key: str, compute: Callable[[], T]) -> tuple[Any, bool]:
        """Return (value, was_cached); compute and store a missing value exactly once.

        Identical requests in flight at once in this process wait for the first one instead of
        each paying for the same answer. If the first fails, the next waiter tries in its place.
        """
        while True:
            value = self.get(key)
            if value is not MISSING:
                return value, True
            with self._lock:
                event = self._inflight.get(key)
                owner = event is None
                if owner:
                    event = self._inflight[key] = threading.Event()
            if not owner:
                assert event is not None
                event.wait()
                continue
            try:
                if key in self._entries:  # finished by another thread between get and claim
                    continue
                computed = compute()
                self.put(key, computed)
                return computed, False
            finally:
                with self._lock:
                    del self._inflight[key]
                assert event is not None
                event.set()

    def compact(self) -> int:
        """Rewrite the file with one record per key, atomically; return the bytes saved."""
        with self._lock, self._file_lock():
            self._sync(locked=True)
            if not self.path.exists():
                return 0
            return self._rewrite()

    def _rewrite(self) -> int:
        """Replace the file by one with a record per live key; the caller holds both locks."""
        before = self.path.stat().st_size
        tmp = self.path.with_name(f"{self.path.name}.compact-{os.getpid()}.tmp")
        with open(tmp, "wb") as out:
            out.write(HEADER)
            for key, value_bytes in self._entries.items():
                out.write(_encode_record(key, value_bytes))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        stat = self.path.stat()
        self._offset = stat.st_size
        self._identity = _identity(stat)
        self._superseded = 0
        logger.info("compacted cache %s from %d to %d bytes", self.path, before, stat.st_size)
        return before - stat.st_size

    def stats(self) -> dict[str, Any]:
        """Entries, file size, superseded records and models, for `python -m openai_utils cache stats`."""
        models: Counter[str] = Counter()
        for _, value in self.items():
            model = value.get("model") if isinstance(value, dict) else None
            models[str(model)] += 1
        with self._lock:
            size = self.path.stat().st_size if self.path.exists() else 0
            return {
                "file": str(self.path),
                "entries": len(self._entries),
                "bytes": size,
                "superseded_records": self._superseded,
                "models": dict(models.most_common()),
            }

    def export_jsonl(self, out: IO[str]) -> int:
        """Write every entry as one JSON line {"key": ..., "value": ...}; return the count."""
        count = 0
        for key, value in self.items():
            out.write(json.dumps({"key": key, "value": value}, ensure_ascii=False) + "\n")
            count += 1
        return count

    # -- keeping in step with the file ---------------------------------------------------

    def _sync(self, locked: bool = False) -> None:
        """Read whatever the file gained since we last looked (all of it, the first time)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            if self._identity is not None:  # deleted under us: start empty, as the file is
                self._reset_memory()
            self._loaded = True
            return
        if self._loaded and _identity(stat) == self._identity and stat.st_size == self._offset:
            return
        if locked:
            self._read_file()
        else:
            with self._file_lock():
                self._read_file()

    def _reset_memory(self) -> None:
        self._entries.clear()
        self._superseded = 0
        self._offset = 0
        self._identity = None

    def _read_file(self) -> None:
        try:
            with open(self.path, "rb") as handle:
                identity = _identity(os.fstat(handle.fileno()))
                if identity != self._identity:
                    self._reset_memory()
                start = self._offset or 0
                handle.seek(start)
                data = handle.read()
        except FileNotFoundError:
            self._reset_memory()
            self._loaded = True
            return
        self._loaded = True
        if start == 0:
            if not data.startswith(HEADER):
                self._reject_or_refuse(data)
                return
            start_in_data = len(HEADER)
        else:
            start_in_data = 0
        try:
            records, stop, torn = _decode_records(data, start_in_data)
        except _Corrupt as exc:
            self._set_aside(str(exc))
            return
        self._absorb(records)
        self._identity = identity
        self._offset = start + stop
        if torn:
            self._cut_torn_tail(start + stop, start + len(data))

    def _absorb(self, records: list[tuple[str, bytes]]) -> None:
        for key, value_bytes in records:
            if key in self._entries:
                self._superseded += 1
            self._entries[key] = value_bytes

    def _reject_or_refuse(self, data: bytes) -> None:
        if data.startswith(_HEADER_PREFIX):
            version = data[len(_HEADER_PREFIX) : data.find(b"\n")].decode("ascii", "replace")
            raise CacheError(
                f"cache file {self.path} is format version {version}, newer than this library reads "
                f"(v1); it is left untouched. Upgrade openai_utils or set CACHE_FILE_NAME to another file."
            )
        self._set_aside("it does not start with the cache header" if data else "it is empty")

    def _cut_torn_tail(self, keep: int, size: int) -> None:
        """Drop an incomplete last record left by a writer that died mid-append."""
        with open(self.path, "r+b") as handle:
            handle.truncate(keep)
        logger.warning(
            "cache %s ended in an incomplete record (a write was interrupted); cut %d bytes, kept %d entries",
            self.path, size - keep, len(self._entries),
        )

    def _set_aside(self, reason: str) -> None:
        """Move an unreadable file out of the way, never deleting it, and start a fresh one."""
        aside = self.path.with_name(f"{self.path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        os.replace(self.path, aside)
        self._reset_memory()
        logger.warning("cache %s could not be read (%s); it was moved to %s and a new cache started", self.path, reason, aside)

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Serialise access to the file across processes (POSIX); a no-op where fcntl is missing.

        Always exclusive: reads happen only on misses and first loads, and whoever holds the lock
        may need to cut a torn tail or set a bad file aside.
        """
        if fcntl is None:
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return (stat.st_dev, stat.st_ino)


_open_caches: dict[Path, ResponseCache] = {}
_by_name: dict[tuple[str, str | None], ResponseCache] = {}
_open_lock = threading.Lock()


def open_cache(file_name: str | os.PathLike[str], fsync: bool = False) -> ResponseCache:
    """The one cache object for this file in this process (created on first use, file untouched).

    Every call on the hit path comes through here, and resolving a path costs a stat per folder,
    so the answer is remembered by the name as given (with the working directory, for a relative
    name, since the same name means another file after a chdir).
    """
    name = os.fspath(file_name)
    memo = (name, None) if os.path.isabs(name) else (name, os.getcwd())
    cache = _by_name.get(memo)
    if cache is not None and cache.fsync == fsync:
        return cache
    path = Path(name).expanduser().resolve()
    with _open_lock:
        cache = _open_caches.get(path)
        if cache is None:
            cache = _open_caches[path] = ResponseCache(path, fsync=fsync)
        cache.fsync = fsync
        _by_name[memo] = cache
        return cache
