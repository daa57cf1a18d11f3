"""One cache file's records in memory, kept in step with the file.

Before answering a miss, and on first use, the cache reads whatever the file gained since it
last looked: another process's appends, a rewrite (a new file at the same path), a deletion. On
the way it repairs what a crash or a stranger left (a torn tail is cut, a damaged tail or a file
that is not a cache is set aside, see cache_disk.py) and, where the file cannot be written or
read, puts the cache in a lesser mode (read-only, or unusable), reported once. Separate from
cache.py, which answers callers and appends, because this is the one place that decides what
the file holds and what the cache may still do with it.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path

from .cache_disk import NoLock, ReadOnly, cut, file_lock, identity, set_aside, set_aside_tail
from .cache_file import CHUNK, HEADER, Record, classify_header, not_a_file, open_regular, read_records
from .exceptions import CacheError

__all__ = ["FileMirror"]

logger = logging.getLogger("openai_utils")


class FileMirror:
    """The entries of the cache file at `path`, in memory, with what is known about the file."""

    def __init__(self, path: Path, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self._lock = threading.RLock()
        self._entries: dict[str, bytes] = {}
        self._superseded = 0
        self._offset = 0
        self._identity: tuple[int, int] | None = None
        self._loaded = False
        self._via_link = False
        self._read_only: str | None = None
        """Why new answers cannot be stored here, once that is known; hits are still served."""
        self._unusable: str | None = None
        """Why the file cannot be used at all, once that is known; calls go to the server."""
        self._reported: set[str] = set()

    def _sync(self, locked: bool = False) -> None:
        """Read whatever the file gained since we last looked (all of it, the first time).

        Trouble with the file is logged once and the cache carries on in a lesser mode (read
        only, or not at all); only ReadOnly from a caller holding the lock passes through.
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
            if self._loaded and identity(current) == self._identity and current.st_size == self._offset:
                return
            if locked or self._read_only is not None:
                self._read_file(repair=self._read_only is None)
                return
            try:
                with file_lock(self.path):
                    self._read_file(repair=True)
            except ReadOnly as exc:
                self._become_read_only(str(exc))
                self._read_file(repair=False)
            except NoLock:
                self._read_file(repair=False)
        except ReadOnly:
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
        """Absorb the file's new records; with `repair`, cut or set aside what cannot be read.

        The file is read a chunk at a time and each record's value kept as it is parsed, so
        loading never holds the whole file beside the entries.
        """
        fd = open_regular(self.path, os.O_RDONLY, follow_link=self._via_link)
        with os.fdopen(fd, "rb") as handle:
            found = os.fstat(handle.fileno())
            if identity(found) != self._identity or found.st_size < self._offset:
                self._reset_memory()
            start = self._offset
            handle.seek(start)
            data = handle.read(CHUNK)
            kind, detail = classify_header(data) if start == 0 else ("cache", "")
            if kind == "foreign":
                data += handle.read()  # all of it, to tell what it is
            elif kind == "cache":
                parsed = read_records(handle, data, len(HEADER) if start == 0 else 0, self._absorb)
                if parsed.damage is not None and repair:
                    handle.seek(start + parsed.stop)
                    tail = handle.read()
        self._loaded = True
        self._identity = identity(found)
        if kind == "torn":
            if data and repair:
                cut(self.path, 0, f"it ended inside its header (the first write was cut short); cut {len(data)} bytes")
            return
        if kind == "newer":
            raise CacheError(
                f"cache file {self.path} is format version {detail}, newer than this library reads (v1); it is "
                f"left untouched. Upgrade openai_utils or set CACHE_FILE_NAME to another file"
            )
        if kind == "foreign":
            if not repair or self._via_link:
                raise CacheError(f"cache file {self.path} is not a cache ({detail}); it is left untouched")
            set_aside(self.path, data, detail)
            self._reset_memory()
            return
        self._offset = start + parsed.stop
        if parsed.damage is not None:
            if repair:
                set_aside_tail(self.path, tail, start + parsed.stop, parsed.damage, len(self._entries))
            else:
                self._report(
                    f"cache {self.path}: {parsed.damage}; the {len(self._entries)} entries before it are "
                    f"served, nothing after it is read"
                )
        elif parsed.torn and repair:
            cut(
                self.path,
                self._offset,
                f"it ended in an incomplete record (a write was interrupted); cut {parsed.end - parsed.stop} bytes, "
                f"kept {len(self._entries)} entries",
            )

    def _absorb(self, record: Record) -> None:
        if record.key in self._entries:
            self._superseded += 1
        self._entries[record.key] = record.value

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
