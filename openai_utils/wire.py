"""Answers read within bounds: the attempt's deadline, and MAX_RESPONSE_BYTES once decompressed.

Left to itself, httpx bounds only the gap between two reads (TIMEOUT), and decompresses whatever
arrives: a server or gateway that trickles a byte every half second holds an attempt for as
long as it likes, and a 1 MB gzip answer expands to 3 GB in memory. Every SDK client the library
builds (`transport.http_client`) carries the two event hooks below, so every answer, plain or
streamed, success or error, is read through `BoundedStream`:

Size
    Content-Encoding is undone here, one layer at a time and never more than `STEP` bytes out of
    one step, and the decoded bytes are counted: past MAX_RESPONSE_BYTES the read stops with a
    MalformedResponseError, having held at most about that much. Only gzip and deflate are asked
    for (Accept-Encoding), so only those are undone; an answer in another encoding is refused.

Time
    A `Deadline` ends each wait of an attempt: for a plain answer, TIMEOUT after the attempt
    began, up to its last byte; for a stream, TIMEOUT for the first chunk, then TIMEOUT for each
    next one (the stream restarts it). It is checked after every read, and each phase of the
    request (waiting for a pooled connection, connecting, sending, waiting for the headers,
    reading) starts with no more than the time left, so a sync attempt ends at most one read wait
    after its deadline even when bytes stop coming (httpcore reads the status line and headers
    in one step, so there a sync attempt is bounded only per read). Past the deadline, the read
    fails as httpx's ReadTimeout, which becomes APITimeoutError (retried). The async transport
    functions also cancel the whole wait at the deadline.

The transport functions name the bounds of an attempt with `bounded(...)` around the SDK call;
the hooks, which the SDK runs in the caller's thread or task, find them in a context variable.
This module imports httpx2 and openai, so it is imported only when a client is built.
"""

from __future__ import annotations

import asyncio
import math
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpx2
import openai

from .config import default
from .exceptions import MalformedResponseError

__all__ = [
    "ACCEPT_ENCODING",
    "STEP",
    "Deadline",
    "Bounds",
    "bounded",
    "attempt_bounds",
    "Decoder",
    "BoundedStream",
    "AsyncBoundedStream",
    "on_request",
    "on_response",
    "aon_request",
    "aon_response",
    "bounded_http_client",
]

ACCEPT_ENCODING = "gzip, deflate"
"""The encodings asked for: the ones undone here under the size cap."""

STEP = 64 * 1024
"""The most bytes one decompression step may produce."""

_SHORTEST_WAIT = 0.001
"""A phase that starts after the deadline still gets this long, so it fails as a timeout."""


class Deadline:
    """When the current wait of one attempt ends: `seconds` after it began or was `restart`ed."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self.at = clock() + seconds

    def __repr__(self) -> str:
        return f"Deadline({self.seconds:g} s, {self.left():.3f} s left)"

    def restart(self) -> None:
        """A new wait begins now (a stream's next chunk was asked for)."""
        self.at = self._clock() + self.seconds

    def left(self) -> float:
        """Seconds until the deadline; zero or less once it has passed."""
        return self.at - self._clock()


@dataclass(frozen=True)
class Bounds:
    """What one attempt's answer may cost: its decoded size, and when its wait ends."""

    max_bytes: int
    deadline: Deadline


_current: ContextVar[Bounds | None] = ContextVar("openai_utils_bounds", default=None)


def attempt_bounds(timeout: float) -> Bounds:
    """The bounds of an attempt starting now: MAX_RESPONSE_BYTES, and TIMEOUT from now."""
    return Bounds(int(default["max_response_bytes"]), Deadline(timeout))


@contextmanager
def bounded(bounds: Bounds) -> Iterator[Bounds]:
    """Requests sent inside this block (in this thread or task) are read within `bounds`."""
    token = _current.set(bounds)
    try:
        yield bounds
    finally:
        _current.reset(token)


# -- undoing Content-Encoding, a step at a time --------------------------------------------------


class _Inflater:
    """One gzip or deflate layer, undone at most STEP bytes per step."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._gzip = encoding in ("gzip", "x-gzip")
        self._obj = zlib.decompressobj(zlib.MAX_WBITS | 16 if self._gzip else zlib.MAX_WBITS)
        self._started = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        while True:
            try:
                out = self._obj.decompress(data, STEP)
            except zlib.error as exc:
                if not self._gzip and not self._started:
                    # "deflate" sent as a raw stream, without the zlib header, as some servers do.
                    self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
                    self._started = True
                    continue
                raise MalformedResponseError(f"the answer's {self.encoding} encoding is broken: {exc}") from None
            self._started = True
            if out:
                yield out
            data = self._obj.unconsumed_tail
            if self._obj.eof:
                data = self._obj.unused_data
                if not (self._gzip and data.startswith(b"\x1f\x8b")):
                    return  # whatever follows the end of the stream is not part of the answer
                self._obj = zlib.decompressobj(zlib.MAX_WBITS | 16)  # the next gzip member
            elif not data and len(out) < STEP:
                return  # everything given is undone; the rest needs more input

    def finish(self) -> Iterator[bytes]:
        rest = self._obj.flush()
        if rest:
            yield rest


class Decoder:
    """The layers of a Content-Encoding header, undone in reverse order of their listing."""

    def __init__(self, content_encoding: str) -> None:
        names = [name.strip().lower() for name in content_encoding.split(",")]
        names = [name for name in names if name and name != "identity"]
        refused = [name for name in names if name not in ("gzip", "x-gzip", "deflate")]
        if refused:
            raise MalformedResponseError(
                f"the server answered in Content-Encoding {', '.join(refused)}, which was not asked for "
                f"(Accept-Encoding: {ACCEPT_ENCODING})"
            )
        self._layers = [_Inflater(name) for name in reversed(names)]

    @property
    def identity(self) -> bool:
        return not self._layers

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decoded bytes of the next piece of the body, in pieces of at most STEP."""
        return self._through(0, data)

    def finish(self) -> Iterator[bytes]:
        """Whatever the layers still hold once the body has ended."""
        for index, layer in enumerate(self._layers):
            for piece in layer.finish():
                yield from self._through(index + 1, piece)

    def _through(self, index: int, data: bytes) -> Iterator[bytes]:
        if index == len(self._layers):
            yield data
            return
        for piece in self._layers[index].feed(data):
            yield from self._through(index + 1, piece)


class _Reader:
    """What the sync and async streams share: decode, count against the cap, watch the deadline."""

    def __init__(self, decoder: Decoder, bounds: Bounds, request: httpx2.Request) -> None:
        self._decoder = decoder
        self._bounds = bounds
        self._request = request
        self._size = 0

    def take(self, raw: bytes) -> Iterator[bytes]:
        deadline = self._bounds.deadline
        if deadline.left() <= 0:
            raise httpx2.ReadTimeout(
                f"the answer did not arrive within TIMEOUT ({deadline.seconds:g} s)", request=self._request
            )
        return self._counted(self._decoder.feed(raw))

    def finish(self) -> Iterator[bytes]:
        return self._counted(self._decoder.finish())

    def _counted(self, pieces: Iterator[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            self._size += len(piece)
            if self._size > self._bounds.max_bytes:
                raise MalformedResponseError(
                    f"the answer is larger than MAX_RESPONSE_BYTES ({self._bounds.max_bytes} bytes) "
                    f"once decompressed: a broken or hostile server; raise MAX_RESPONSE_BYTES if "
                    f"answers this large are expected"
                )
            yield piece


class BoundedStream(httpx2.SyncByteStream):
    """A response body read within its bounds (sync)."""

    def __init__(self, inner: Any, reader: _Reader) -> None:
        self._inner = inner
        self._reader = reader

    def __iter__(self) -> Iterator[bytes]:
        for raw in self._inner:
            yield from self._reader.take(raw)
        yield from self._reader.finish()

    def close(self) -> None:
        self._inner.close()


class AsyncBoundedStream(httpx2.AsyncByteStream):
    """A response body read within its bounds (async)."""

    def __init__(self, inner: Any, reader: _Reader) -> None:
        self._inner = inner
        self._reader = reader

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for raw in self._inner:
            for piece in self._reader.take(raw):
                yield piece
        for piece in self._reader.finish():
            yield piece

    async def aclose(self) -> None:
        await self._inner.aclose()


# -- the hooks, and the clients that carry them -------------------------------------------------


class _TimeLeft(dict):  # type: ignore[type-arg]
    """httpcore's "timeout" extension, which it reads as each phase of a request starts
    (pool, connect, write, read): each phase gets its own timeout, or the time the attempt has
    left if that is shorter."""

    def __init__(self, timeouts: Mapping[str, float | None], deadline: Deadline) -> None:
        super().__init__(timeouts)
        self._deadline = deadline

    def get(self, key: str, fallback: Any = None) -> Any:
        value = super().get(key, fallback)
        left = max(self._deadline.left(), _SHORTEST_WAIT)
        return left if value is None else min(float(value), left)

    def __getitem__(self, key: str) -> Any:
        return self.get(key)


def on_request(request: httpx2.Request) -> None:
    """Ask only for encodings undone under the cap; give each phase at most the time left."""
    request.headers["Accept-Encoding"] = ACCEPT_ENCODING
    bounds = _current.get()
    if bounds is not None:
        request.extensions["timeout"] = _TimeLeft(request.extensions.get("timeout") or {}, bounds.deadline)


def on_response(response: httpx2.Response) -> None:
    """Read the body (not read yet: the hook runs as the headers arrive) through BoundedStream."""
    response.stream = BoundedStream(response.stream, _reader(response))


async def aon_request(request: httpx2.Request) -> None:
    on_request(request)


async def aon_response(response: httpx2.Response) -> None:
    response.stream = AsyncBoundedStream(response.stream, _reader(response))


class _Client(openai.DefaultHttpxClient):
    """The SDK's default httpx client; like the SDK's own, it closes its connections when
    collected, so a client nobody closed does not leave sockets open."""

    def __del__(self) -> None:
        # No module globals here: at interpreter exit they may already be None.
        try:
            if not self.is_closed:
                self.close()
        except Exception:  # noqa: S110 - a finaliser must not raise, and may run at exit
            pass


class _AsyncClient(openai.DefaultAsyncHttpxClient):
    """The async `_Client`: it can only close from a running loop, as the SDK's own does."""

    def __del__(self) -> None:
        try:
            if not self.is_closed:
                asyncio.get_running_loop().create_task(self.aclose())
        except Exception:  # noqa: S110 - no running loop (or interpreter exit): nothing can close it here
            pass


def bounded_http_client(asynchronous: bool = False, **options: Any) -> httpx2.Client | httpx2.AsyncClient:
    """An httpx client with the SDK's defaults and the hooks above (after any in `options`)."""
    hooks = options.pop("event_hooks", {})
    if asynchronous:
        return _AsyncClient(
            event_hooks={
                "request": [*hooks.get("request", ()), aon_request],
                "response": [*hooks.get("response", ()), aon_response],
            },
            **options,
        )
    return _Client(
        event_hooks={
            "request": [*hooks.get("request", ()), on_request],
            "response": [*hooks.get("response", ()), on_response],
        },
        **options,
    )


def _reader(response: httpx2.Response) -> _Reader:
    decoder = Decoder(response.headers.get("Content-Encoding", ""))
    if not decoder.identity:
        del response.headers["Content-Encoding"]  # undone here: httpx must not undo it again
    # A request sent outside the transport functions has no deadline of ours; the cap holds.
    bounds = _current.get() or Bounds(int(default["max_response_bytes"]), Deadline(math.inf))
    return _Reader(decoder, bounds, response.request)
