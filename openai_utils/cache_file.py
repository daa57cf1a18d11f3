"""The cache file on disk: its layout, the refusing unpickler, and opening a path only if it is ours.

Layout (see docs/cache.md)::

    HEADER     b"openai_utils-cache v1\\n"
    record*    >II (payload length, CRC-32 of payload) + payload
    payload    >H key length + key (ASCII) + pickle of the value [+ pickle of the request]

The request was added to version 1 without a new version number: unpickling stops at the end of
the first pickle, so a reader that knows nothing of requests reads the value alone, and a record
written before requests were kept is a record whose request is unknown. Both readers (the live
cache in cache_sync.py and the read-only inspection in cache_inspect.py) parse files through here.

Every open refuses what is not a regular file (a directory, FIFO, device or socket) with a
`CacheError` naming it, and opens non-blocking so a FIFO can never hang a call; `check_usable`
examines a path the same way before a cache object is made for it.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import stat
import struct
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from .exceptions import CacheError

if TYPE_CHECKING:
    import pickle

__all__ = [
    "HEADER",
    "Record",
    "Parsed",
    "safe_loads",
    "check_plain",
    "encode_record",
    "request_bytes",
    "decode_records",
    "read_records",
    "CHUNK",
    "classify_header",
    "looks_like_plain_pickle",
    "open_regular",
    "not_a_file",
    "check_usable",
]

HEADER = b"openai_utils-cache v1\n"
HEADER_PREFIX = b"openai_utils-cache v"
RECORD = struct.Struct(">II")
KEYLEN = struct.Struct(">H")
PICKLE_PROTOCOL = 4
CHUNK = 1 << 18
"""How much of a file is read at a time while loading it."""

TRANSPORT_ONLY = frozenset({"extra_headers", "extra_query", "timeout"})
"""Request fields that are options of the HTTP layer, never kept: headers and query strings are
where gateways put keys."""


@functools.cache
def _refusing_unpickler() -> tuple[type[pickle.Unpickler], type[Exception]]:
    """An unpickler that reads plain data only (any class or function reference in the stream is
    refused), and the error it raises. Made on first use, so that `import openai_utils` does not
    load pickle (~4 ms)."""
    import pickle

    class RefuseGlobals(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: cache values are plain data")

    return RefuseGlobals, pickle.UnpicklingError


def safe_loads(data: bytes) -> Any:
    return _refusing_unpickler()[0](io.BytesIO(data)).load()


_PLAIN_SCALARS = (str, int, float, bool, type(None))


def check_plain(value: Any, where: str = "value") -> None:
    """Refuse anything but plain data, so no SDK object (or secret-bearing client) is ever pickled."""
    if isinstance(value, _PLAIN_SCALARS):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise TypeError(f"cache {where} has a non-string key {k!r}")
            check_plain(item, f"{where}[{k!r}]")
        return
    raise TypeError(
        f"cache {where} is a {type(value).__name__}; only plain data (dict, list, str, numbers, None) is cached"
    )


def request_bytes(request: Mapping[str, Any] | None) -> bytes:
    """The request to keep beside an answer, pickled; empty when there is none worth keeping.

    Transport options are dropped; a request that is not plain data is not kept rather than
    failing the store (the answer matters more than its label).
    """
    if request is None:
        return b""
    kept = {name: value for name, value in request.items() if name not in TRANSPORT_ONLY}
    try:
        check_plain(kept, "request")
    except TypeError:
        return b""
    import pickle

    return pickle.dumps(kept, protocol=PICKLE_PROTOCOL)


def encode_record(key: str, value_bytes: bytes, request: bytes = b"") -> bytes:
    key_bytes = key.encode("ascii")
    payload = KEYLEN.pack(len(key_bytes)) + key_bytes + value_bytes + request
    return RECORD.pack(len(payload), zlib.crc32(payload)) + payload


class Record(NamedTuple):
    """One whole record: its key, the pickled value, the pickled request (b"" if not kept)."""

    key: str
    value: bytes
    request: bytes


class Parsed:
    """What `decode_records` found: whole records, where they end, and what follows them.

    `torn`: the rest is an incomplete record (a write that was interrupted). `damage`: the record
    at `stop` is complete but unreadable, so it and everything after it cannot be trusted. `end`:
    where the data read ended.
    """

    __slots__ = ("damage", "end", "records", "stop", "torn")

    def __init__(self, stop: int = 0, end: int = 0) -> None:
        self.records: list[Record] = []
        self.stop = stop
        self.end = end
        self.torn = False
        self.damage: str | None = None


class _Corrupt(Exception):
    """A record that is complete but unreadable: bad checksum, bad key or a refused pickle."""


def decode_records(data: bytes, start: int) -> Parsed:
    """Parse records from `start` until the data ends, a record is incomplete or one is damaged."""
    parsed = Parsed(stop=start, end=len(data))
    parsed.stop, damage = _scan(data, start, parsed.records.append)
    if damage is not None:
        parsed.damage = f"the record at byte {parsed.stop} {damage}"
    parsed.torn = damage is None and parsed.stop < len(data)
    return parsed


def read_records(handle: BinaryIO, first: bytes, start: int, absorb: Callable[[Record], None]) -> Parsed:
    """Parse records as `decode_records` does, from `first` (what was read so far) and then from
    `handle` a chunk at a time, handing each record to `absorb` instead of keeping it.

    Positions are counted from the start of `first`. Loading holds one chunk (or one record,
    if longer) beside what `absorb` keeps, never the whole file and a copy of it.
    """
    parsed = Parsed(stop=start)
    buffer, base, pos = first, 0, start
    while True:
        pos, damage = _scan(buffer, pos, absorb)
        parsed.stop = base + pos
        if damage is not None:
            parsed.damage = f"the record at byte {parsed.stop} {damage}"
            break
        needed = _still_needed(buffer, pos)
        if needed > CHUNK:  # never more than the file holds: a torn length may claim gigabytes
            needed = min(needed, os.fstat(handle.fileno()).st_size - handle.tell())
        more = handle.read(max(CHUNK, needed))
        if not more:
            parsed.torn = pos < len(buffer)
            break
        buffer, base, pos = buffer[pos:] + more, base + pos, 0
    parsed.end = base + len(buffer)
    return parsed


def _still_needed(buffer: bytes, pos: int) -> int:
    """How many bytes past the end of `buffer` the record at `pos` still needs (0 if unknown yet)."""
    if len(buffer) - pos < RECORD.size:
        return 0
    length: int = RECORD.unpack_from(buffer, pos)[0]
    return pos + RECORD.size + length - len(buffer)


def _scan(data: bytes, pos: int, absorb: Callable[[Record], None]) -> tuple[int, str | None]:
    """Hand every whole record from `pos` on to `absorb`; where the whole records end, and what is
    wrong with the record there if it is complete but unreadable."""
    view = memoryview(data)
    end = len(data)
    while end - pos >= RECORD.size:
        length, crc = RECORD.unpack_from(data, pos)
        body_start = pos + RECORD.size
        if end - body_start < length:
            break
        try:
            record = _decode_payload(view[body_start : body_start + length], crc)
        except _Corrupt as exc:
            return pos, str(exc)
        absorb(record)
        pos = body_start + length
    return pos, None


def _decode_payload(payload: memoryview, crc: int) -> Record:
    """One record's parts, each copied once out of the buffer it was read into."""
    unpickler, unpickling_error = _refusing_unpickler()
    if zlib.crc32(payload) != crc or len(payload) < KEYLEN.size:
        raise _Corrupt("fails its checksum")
    (key_len,) = KEYLEN.unpack_from(payload, 0)
    body = bytes(payload[KEYLEN.size + key_len :])
    try:
        key = bytes(payload[KEYLEN.size : KEYLEN.size + key_len]).decode("ascii")
        stream = io.BytesIO(body)  # shares `body` while it is only read
        unpickler(stream).load()
        split = stream.tell()
        if split == len(body):
            return Record(key, body, b"")
        request = body[split:]
        stream = io.BytesIO(request)
        if not isinstance(unpickler(stream).load(), dict) or stream.tell() != len(request):
            raise ValueError("what follows the value is not one request")
    except (UnicodeDecodeError, unpickling_error, EOFError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise _Corrupt(f"is unreadable: {exc}") from None
    return Record(key, body[:split], request)


def classify_header(data: bytes) -> tuple[str, str]:
    """What the start of a file says it is: ("cache", ""), ("torn", "") for a header cut short
    (an empty file included), ("newer", version) or ("foreign", why)."""
    if data.startswith(HEADER):
        return "cache", ""
    if HEADER.startswith(data):
        return "torn", ""
    if data.startswith(HEADER_PREFIX):
        line = data[len(HEADER_PREFIX) : len(HEADER_PREFIX) + 16].split(b"\n", 1)
        version = line[0].decode("ascii", "replace")
        if len(line) == 2 and version.isdigit():
            return "newer", version
    if looks_like_plain_pickle(data):
        return "foreign", "it is a plain pickle, not a cache file"
    return "foreign", "it does not start with the cache header"


def looks_like_plain_pickle(data: bytes) -> bool:
    """A whole pickle of protocol 2 or later, as the module this library replaces wrote its cache."""
    return data[:1] == b"\x80" and data.rstrip(b"\r\n")[-1:] == b"."


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link"),
)


def not_a_file(path: Path | str, mode: int, through: str = "") -> CacheError:
    """The error for a cache path that is not a regular file; it says the path was left alone."""
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return CacheError(
        f"cache file {path} {through}is {kind}, not a regular file; it is left untouched. Point "
        f"CACHE_FILE_NAME at a regular file (or set it to {os.devnull} to turn the cache off)"
    )


def open_regular(path: Path | str, flags: int, follow_link: bool, mode: int = 0o600) -> int:
    """os.open for a regular file only: never blocks on a FIFO, never follows a final symbolic link
    unless asked. Raises `CacheError` for anything but a regular file, OSError as os.open does."""
    extra = (
        getattr(os, "O_NONBLOCK", 0)
        | getattr(os, "O_CLOEXEC", 0)
        | (0 if follow_link else getattr(os, "O_NOFOLLOW", 0))
    )
    try:
        fd = os.open(path, flags | extra, mode)
    except OSError as exc:
        # A FIFO or socket opened for writing, a directory, or a link we do not follow: say what it is.
        if exc.errno not in (errno.ENXIO, errno.EISDIR, errno.ELOOP, errno.ENODEV):
            raise
        try:
            st_mode = os.lstat(path).st_mode
        except OSError:
            raise exc from None
        if stat.S_ISREG(st_mode):
            raise
        raise not_a_file(path, st_mode) from None
    try:
        st_mode = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(st_mode):
        os.close(fd)
        raise not_a_file(path, st_mode)
    return fd


def check_usable(path: Path) -> None:
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
