"""Changing a cache file on disk without losing a whole record, whatever fails.

The lock that serialises processes on one file, writing every byte or none, rewriting a file
compacted, cutting a torn tail and setting aside what cannot be read: each works on a path and
leaves the file whole (or as a crashed writer would have left it) when the disk is full, the
place is read-only or the process dies. Separate from the cache's memory (cache_sync.py,
cache.py) because these are the only places that write, rename or cut, and each must keep the
promise of the module docstring of cache.py: nothing reached through a symbolic link, and
nothing that is not a regular file, is renamed, replaced or cut.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .cache_file import CHUNK, HEADER, Record, encode_record, looks_like_plain_pickle, open_regular, read_records
from .exceptions import CacheError

try:
    import fcntl
except ImportError:  # Windows: threads in one process still share safely; processes do not.
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "ReadOnly",
    "NoLock",
    "READ_ONLY_ERRNOS",
    "NEW_FILE_MODE",
    "file_lock",
    "write_all",
    "identity",
    "rewrite",
    "cut",
    "set_aside",
    "set_aside_tail",
]

logger = logging.getLogger("openai_utils")

READ_ONLY_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
NEW_FILE_MODE = 0o600
"""The cache holds every prompt and answer: new files are readable by their owner only."""


class ReadOnly(Exception):
    """The file (or its folder, or its lock) cannot be written here; the reason is the message."""


class NoLock(OSError):
    """The lock file could not be made for another reason (a full disk): read without it, store nothing."""


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialise access to the file at `path` across processes (POSIX); a no-op where fcntl is missing.

    Always exclusive: reads happen only on misses and first loads, and whoever holds the lock
    may need to cut a torn tail or set a bad file aside. Raises ReadOnly where the lock file
    cannot be created, since without it nothing may be written.
    """
    if fcntl is None:
        yield
        return
    lock = f"{path}.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = open_regular(lock, os.O_RDWR | os.O_CREAT, follow_link=False, mode=NEW_FILE_MODE)
    except CacheError as exc:
        raise CacheError(f"the lock file of {path}: {exc}") from None
    except OSError as exc:
        if exc.errno in READ_ONLY_ERRNOS:
            raise ReadOnly(f"its lock file {lock} cannot be created ({exc.strerror})") from None
        raise NoLock(exc.errno, f"its lock file {lock} cannot be created ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte or raise: a short write (a disk filling up) is not a success."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def free_name(path: Path, what: str) -> Path:
    """A name beside `path` that nothing has yet, so setting a file aside never overwrites one."""
    stem = f"{path.name}.{what}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    candidate = path.with_name(stem)
    number = 1
    while os.path.lexists(candidate):
        number += 1
        candidate = path.with_name(f"{stem}-{number}")
    return candidate


def identity(found: os.stat_result) -> tuple[int, int]:
    return (found.st_dev, found.st_ino)


def rewrite(path: Path) -> tuple[int, os.stat_result]:
    """Replace the file by one with a record per live key, atomically; the caller holds both
    locks. The old size and the new file's stat.

    Reads the file again rather than writing from memory, because memory holds values only
    and each record's request must survive. The new file gets the old one's mode.
    """
    fd = open_regular(path, os.O_RDONLY, follow_link=False)
    latest: dict[str, Record] = {}
    with os.fdopen(fd, "rb") as handle:
        before = os.fstat(handle.fileno())
        read_records(handle, handle.read(CHUNK), len(HEADER), lambda record: latest.__setitem__(record.key, record))
    import tempfile  # with shutil, bz2 and lzma: only a compaction needs it, so not at import

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.compact-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            if hasattr(os, "fchmod"):  # POSIX; elsewhere the new file keeps the folder's default
                os.fchmod(out.fileno(), stat.S_IMODE(before.st_mode))
            out.write(HEADER)
            for record in latest.values():
                out.write(encode_record(record.key, record.value, record.request))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    after = os.stat(path)
    logger.info("compacted cache %s from %d to %d bytes", path, before.st_size, after.st_size)
    return before.st_size, after


def cut(path: Path, keep: int, what: str) -> None:
    """Truncate our own file to its last whole record, as a crashed writer would have left it."""
    try:
        fd = open_regular(path, os.O_WRONLY, follow_link=False)
    except OSError as exc:
        if exc.errno in READ_ONLY_ERRNOS:
            raise ReadOnly(f"it cannot be written ({exc.strerror})") from None
        raise
    try:
        os.ftruncate(fd, keep)
    finally:
        os.close(fd)
    logger.warning("cache %s: %s", path, what)


def set_aside(path: Path, data: bytes, reason: str) -> None:
    """Move a file that is not a cache out of the way, never deleting it, so a fresh one starts."""
    aside = free_name(path, "unreadable")
    try:
        os.rename(path, aside)
    except OSError as exc:
        if exc.errno in READ_ONLY_ERRNOS:
            raise ReadOnly(f"it is not a cache ({reason}) and cannot be moved aside ({exc.strerror})") from None
        raise
    hint = ""
    if looks_like_plain_pickle(data):
        hint = (
            f". It looks like a cache of the module this library replaces; to read its answers run: python -m "
            f"openai_utils cache import-legacy {aside} --into {path} --trust (only if you trust the file: "
            f"loading a plain pickle runs code)"
        )
    logger.warning(
        "cache %s could not be read (%s); it was moved to %s and a new cache started%s",
        path,
        reason,
        aside,
        hint,
    )


def set_aside_tail(path: Path, tail: bytes, at: int, damage: str, kept: int) -> None:
    """Copy a damaged tail to a file of its own, then cut it: every whole record before it (`kept`
    entries) stays."""
    aside = free_name(path, "damaged")
    try:
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), NEW_FILE_MODE)
        try:
            write_all(fd, tail)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        if os.path.lexists(aside):
            os.unlink(aside)
        raise ReadOnly(f"{damage}, and it cannot be set aside ({exc.strerror}); nothing is written after it") from None
    cut(
        path,
        at,
        f"{damage}; kept the {kept} entries before it and moved the {len(tail)} bytes from there on to {aside}",
    )
