"""One call's control flow, written once, driven twice.

Admission (rate limits, 429 pauses, a concurrency slot), one attempt, retrying, opening a
stream up to its first text and reading the rest of it are generators that yield small step objects (`Sleep`, `HoldSlot`,
`Send`, ...) and get each step's result back, in the manner of httpx's auth flows. `drive` runs
a flow performing each step at once; `adrive` awaits each one; `emitted` and `aemitted` do the
same for a flow that hands out text (`Emit`), as a sync or async iterator of it. The steps say what to wait for;
only the drivers (drivers.py) know how, so the sync and async paths cannot drift apart.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import Any, TypeVar

from .exceptions import APIError, MalformedResponseError, NonTerminalError, StreamInterruptedError
from .ratelimit import rate_gate
from .request import estimate_tokens
from .streaming import StreamAssembler

__all__ = [
    "Step",
    "Flow",
    "drive",
    "adrive",
    "emitted",
    "aemitted",
    "attempt",
    "retrying",
    "open_stream",
    "stream_rest",
    "interrupted",
    "OpenStream",
    "END",
]

T = TypeVar("T")


class Step:
    """Something a flow waits for; the driver performs it and sends back its result.

    Steps are plain slotted classes, not dataclasses: one is made for every step of every call,
    and dataclasses would cost the import (and dataclasses itself) for nothing. Two steps are
    equal when they are of one type with equal fields, as tests compare them.
    """

    __slots__ = ()

    def _fields(self) -> tuple[Any, ...]:
        names = [name for cls in reversed(type(self).__mro__) for name in getattr(cls, "__slots__", ())]
        return tuple((name, getattr(self, name)) for name in names)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and isinstance(other, Step) and other._fields() == self._fields()

    def __hash__(self) -> int:
        return hash((type(self), self._fields()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{name}={value!r}' for name, value in self._fields())})"


class Sleep(Step):
    """Wait `seconds` before the next attempt."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class _Gated(Step):
    """A step of the rate gate for `key`; `tokens` estimates the request's tokens when asked."""

    __slots__ = (
        "key",
        "tokens",
    )

    def __init__(self, key: str, tokens: Callable[[], int]) -> None:
        self.key = key
        self.tokens = tokens


class BeforeRequest(_Gated):
    """Wait out any 429 pause of `key` and for a place in its rate limits."""

    __slots__ = ()


class HoldSlot(Step):
    """Take a concurrency slot; the result is the slot, given back by `ReleaseSlot`."""

    __slots__ = ()


class ReleaseSlot(Step):
    __slots__ = ("slot",)

    def __init__(self, slot: Any) -> None:
        self.slot = slot


class Connect(Step):
    """Get the backend ready to send (`what`: "model", "embedding" or "stream")."""

    __slots__ = (
        "kind",
        "what",
    )

    def __init__(self, kind: str, what: str) -> None:
        self.kind = kind
        self.what = what


class BeforeSend(_Gated):
    """Take the rate-limit token of `key`, the very last step before the send."""

    __slots__ = ()


class Send(Step):
    """Send one attempt of `what` ("model", "embedding" or "stream"); the result is the server's
    JSON, or for a stream its chunks."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what


class NextChunk(Step):
    """The next chunk of an open stream, or END."""

    __slots__ = ("chunks",)

    def __init__(self, chunks: Any) -> None:
        self.chunks = chunks


class Emit(Step):
    """Hand `text` to whoever reads the stream; the flow goes on when the next text is asked for."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


END: Any = object()
"""What NextChunk gives back when the stream has ended."""

Flow = Generator[Step, Any, T]


class OpenStream:
    """A stream whose first text has arrived: from here on a failure is no longer retried; the
    slot is held until it ends."""

    __slots__ = ("assembler", "chunks", "first", "slot")

    def __init__(self, chunks: Any, assembler: StreamAssembler, first: str | None, slot: Any) -> None:
        self.chunks = chunks
        self.assembler = assembler
        self.first = first
        self.slot = slot


def admission(call: Any, key: str, what: str) -> Flow[Any]:
    """Admit one attempt: wait out any 429 pause of `key` and for a place in its rate limits,
    hold a concurrency slot, get the backend ready, then take the rate-limit token as the very
    last step; the held slot.

    Waiting for a pause or a place holds no slot, so a limited model never holds slots that
    other models could use. The token comes last so that nothing slow (a busy slot, the first
    SDK build, starting the local server) lies between it and the send: requests whose turn came
    while they were held up still leave at the rate. A pause that began meanwhile sends the
    request back to the start.
    """
    tokens = functools.cache(lambda: estimate_tokens(call.request, call.kind))
    while True:
        yield BeforeRequest(key, tokens)
        slot = yield HoldSlot()
        try:
            if not rate_gate.paused(key):
                yield Connect(call.kind, what)
                yield BeforeSend(key, tokens)
                if not rate_gate.paused(key):
                    return slot
        except BaseException:
            yield ReleaseSlot(slot)
            raise
        yield ReleaseSlot(slot)


def failed(error: APIError, key: str, refine: Callable[[APIError], APIError]) -> APIError:
    """A failed attempt's error, reworded for its server; a rate-limit answer pauses everyone
    else bound to `key`."""
    refined = refine(error)
    rate_gate.after_error(key, refined)
    return refined


def attempt(call: Any, key: str, what: str, refine: Callable[[APIError], APIError]) -> Flow[Any]:
    """One admitted attempt; the server's JSON."""
    slot = yield from admission(call, key, what)
    try:
        return (yield Send(what))
    except APIError as error:
        refined = failed(error, key, refine)
        if refined is not error:
            raise refined from error
        raise
    finally:
        yield ReleaseSlot(slot)


def open_stream(call: Any, key: str, refine: Callable[[APIError], APIError]) -> Flow[OpenStream]:
    """Open a stream and read up to its first text; the slot stays held (OpenStream.slot)."""
    slot = yield from admission(call, key, "stream")
    try:
        chunks = yield Send("stream")
        assembler = StreamAssembler()
        first = None
        while first is None:
            chunk = yield NextChunk(chunks)
            if chunk is END:
                break
            first = assembler.feed(chunk) or None
        if first is None and assembler.unfinished():
            raise MalformedResponseError(str(assembler.unfinished()))
    except APIError as error:
        refined = failed(error, key, refine)
        yield ReleaseSlot(slot)
        if refined is not error:
            raise refined from error
        raise
    except BaseException:
        yield ReleaseSlot(slot)
        raise
    return OpenStream(chunks, assembler, first, slot)


def stream_rest(opened: OpenStream) -> Flow[None]:
    """The text of an open stream from its first on, as `Emit` steps. A failure from here on is
    not retried (text went out already): it is a StreamInterruptedError keeping what arrived.

    The slot stays held: the reader releases it when it stops, at the end or early (closing
    this flow then yields nothing more, so its release cannot wait on a step).
    """
    try:
        if opened.first is not None:
            yield Emit(opened.first)
        while (chunk := (yield NextChunk(opened.chunks))) is not END:
            text = opened.assembler.feed(chunk)
            if text:
                yield Emit(text)
    except APIError as error:
        raise interrupted(opened, error) from error


def interrupted(opened: OpenStream, error: APIError) -> StreamInterruptedError:
    """A stream that failed after its first text: what arrived is kept in the error."""
    return StreamInterruptedError(opened.assembler.text, opened.assembler.chunks, error)


def retrying(call: Any, random: Callable[[], float], one: Callable[[], Flow[T]]) -> Flow[T]:
    """`one()` attempt after another until one succeeds, waiting as the call's policy says; a
    NonTerminalError is retried, RetriesExhaustedError ends it (retry.Attempts)."""
    attempts = call.policy.start(random)
    while True:
        try:
            return (yield from one())
        except NonTerminalError as error:
            yield Sleep(attempts.failed(error))


def drive(flow: Flow[T], perform: Callable[[Step], Any]) -> T:
    """Run `flow`, performing each step at once."""
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.send(result) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            result, error = perform(step), None
        except BaseException as exc:
            result, error = None, exc


async def adrive(flow: Flow[T], perform: Callable[[Step], Awaitable[Any]]) -> T:
    """Run `flow`, awaiting each step."""
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.send(result) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            result, error = await perform(step), None
        except BaseException as exc:
            result, error = None, exc


def emitted(flow: Flow[None], perform: Callable[[Step], Any]) -> Generator[str, Any, None]:
    """Run a flow that emits text, as `drive` does, handing out the text of each `Emit` step."""
    step = _resume(flow, None, None)
    while step is not END:
        if not isinstance(step, Emit):
            try:
                result, error = perform(step), None
            except BaseException as exc:
                result, error = None, exc
        else:
            result, error = (yield step.text), None
        step = _resume(flow, result, error)


async def aemitted(flow: Flow[None], perform: Callable[[Step], Awaitable[Any]]) -> AsyncGenerator[str, Any]:
    """The async form of `emitted`: each step awaited."""
    step = _resume(flow, None, None)
    while step is not END:
        if not isinstance(step, Emit):
            try:
                result, error = await perform(step), None
            except BaseException as exc:
                result, error = None, exc
        else:
            result, error = (yield step.text), None
        step = _resume(flow, result, error)


def _resume(flow: Flow[None], result: Any, error: BaseException | None) -> Any:
    """The flow's next step, given the last one's result (or its error, thrown into the flow);
    END once the flow has ended."""
    try:
        return flow.send(result) if error is None else flow.throw(error)
    except StopIteration:
        return END


def next_chunk(chunks: Iterator[Any]) -> Any:
    return next(chunks, END)


async def anext_chunk(chunks: AsyncIterator[Any]) -> Any:
    try:
        return await chunks.__anext__()
    except StopAsyncIteration:
        return END
