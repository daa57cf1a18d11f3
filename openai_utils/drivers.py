"""Running a prepared call: the sync and the async driver of the flows, and the streams they open.

flow.py says, once, what a call waits for (admission, attempts, retrying, opening a stream); this
module performs those steps, at once (`run`, `stream`) or awaiting each (`arun`, `astream`),
through the client's hooks: its raw calls (`_raw_model_call`, ... and their async twins), its
sleeps and its accounting. It is apart from the client so that the public class reads as what it
offers, and from flow.py so that the flows stay free of any way of waiting.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from . import flow
from .cache import MISSING
from .call import Call, input_count
from .concurrency import call_slots
from .config import default
from .exceptions import (
    MalformedResponseError,
    RetriesExhaustedError,
)
from .ratelimit import rate_gate
from .response import chat_record, check_record, embedding_record
from .streaming import AsyncTextStream, TextStream, areplay, replay

if TYPE_CHECKING:
    from .openai_client import OpenAIClient

__all__ = ["run", "arun", "stream", "astream"]

logger = logging.getLogger("openai_utils")

T = TypeVar("T")


# -- plain calls -------------------------------------------------------------------------------


def run(client: OpenAIClient, call: Call, what: str) -> tuple[dict[str, Any], bool] | None:
    """Run `call` of `what` ("model" or "embedding") through the cache: (record, whether it came
    from the cache), or None when the attempts ran out."""
    try:
        if call.cache is None:
            value, hit = _drive(client, call, _attempts(client, call, what)), False
        else:
            compute = lambda: _drive(client, call, _attempts(client, call, what))  # noqa: E731
            value, hit = call.cache.get_or_compute(call.key, compute, call.request)  # type: ignore[arg-type]
    except RetriesExhaustedError as exc:
        _give_up(call, exc)
        return None
    client._account(call, value, hit)
    return value, hit


async def arun(client: OpenAIClient, call: Call, what: str) -> tuple[dict[str, Any], bool] | None:
    """The async form of `run`."""
    try:
        if call.cache is None:
            value, hit = await _adrive(client, call, _attempts(client, call, what)), False
        else:
            compute = lambda: _adrive(client, call, _attempts(client, call, what))  # noqa: E731
            value, hit = await call.cache.aget_or_compute(call.key, compute, call.request)  # type: ignore[arg-type]
    except RetriesExhaustedError as exc:
        _give_up(call, exc)
        return None
    client._account(call, value, hit)
    return value, hit


def _give_up(call: Call, exc: RetriesExhaustedError) -> None:
    """Attempts ran out: log it once, then return None or raise, as RAISE_ON_FAILURE says."""
    logger.error("%s call to %s failed: %s", call.kind, call.request.get("model"), exc)
    if default["raise_on_failure"]:
        raise exc


def _gate_key(client: OpenAIClient, call: Call) -> str:
    """Rate limits and 429 pauses apply per model (Azure: deployment) per server."""
    return f"{client._endpoint()} {call.request.get('model')}"


def _attempts(client: OpenAIClient, call: Call, what: str) -> flow.Flow[dict[str, Any]]:
    """Attempts of `what` until one succeeds; the server's JSON, checked and shaped into a record."""
    key = _gate_key(client, call)

    def one() -> flow.Flow[dict[str, Any]]:
        data = yield from flow.attempt(call, key, what, functools.partial(client._refine_error, kind=call.kind))
        if what == "embedding":
            return embedding_record(data, input_count(call))
        return check_record(chat_record(data), call.parse)

    return flow.retrying(call, client._random, one)


# -- the two drivers: they only perform the steps of a flow ------------------------------------


def _drive(client: OpenAIClient, call: Call, steps: flow.Flow[T]) -> T:
    return flow.drive(steps, functools.partial(_perform, client, call))


async def _adrive(client: OpenAIClient, call: Call, steps: flow.Flow[T]) -> T:
    return await flow.adrive(steps, functools.partial(_aperform, client, call))


def _perform(client: OpenAIClient, call: Call, step: flow.Step) -> Any:
    """Do one step of a flow now."""
    if isinstance(step, flow.Send):
        return getattr(client, f"_raw_{step.what}_call")(call.request, call.timeout)
    if isinstance(step, flow.NextChunk):
        return flow.next_chunk(step.chunks)
    if isinstance(step, flow.Sleep):
        return client._sleep(step.seconds)
    if isinstance(step, flow.BeforeRequest):
        return rate_gate.before_request(step.key, step.tokens)
    if isinstance(step, flow.HoldSlot):
        slot = call_slots.hold()
        slot.__enter__()
        return slot
    if isinstance(step, flow.ReleaseSlot):
        return step.slot.__exit__(None, None, None)
    if isinstance(step, flow.Connect):
        return client._connect(step.kind, step.what)
    if isinstance(step, flow.BeforeSend):
        return rate_gate.before_send(step.key, step.tokens)
    raise TypeError(f"unknown step {step!r}")


async def _aperform(client: OpenAIClient, call: Call, step: flow.Step) -> Any:
    """Await one step of a flow."""
    if isinstance(step, flow.Send):
        return await getattr(client, f"_araw_{step.what}_call")(call.request, call.timeout)
    if isinstance(step, flow.NextChunk):
        return await flow.anext_chunk(step.chunks)
    if isinstance(step, flow.Sleep):
        return await _asleep(client, step.seconds)
    if isinstance(step, flow.BeforeRequest):
        return await rate_gate.abefore_request(step.key, step.tokens)
    if isinstance(step, flow.HoldSlot):
        slot = call_slots.ahold()
        await slot.__aenter__()
        return slot
    if isinstance(step, flow.ReleaseSlot):
        return await step.slot.__aexit__(None, None, None)
    if isinstance(step, flow.Connect):
        return await client._aconnect(step.kind, step.what)
    if isinstance(step, flow.BeforeSend):
        return await rate_gate.abefore_send(step.key, step.tokens)
    raise TypeError(f"unknown step {step!r}")


async def _asleep(client: OpenAIClient, seconds: float) -> None:
    if client._async_sleep is not None:
        await client._async_sleep(seconds)
    else:
        import asyncio

        await asyncio.sleep(seconds)


# -- streams -----------------------------------------------------------------------------------


def stream(client: OpenAIClient, call: Call) -> TextStream | None:
    """A streamed chat call: the cached answer replayed, or a stream opened (retried until its
    first text); None when the attempts ran out."""
    cached = _cached(client, call)
    if cached is not MISSING:
        return TextStream(replay(cached), lambda: cached, call.parse, cached=True)
    try:
        opened = _drive(client, call, _stream_opening(client, call))
    except RetriesExhaustedError as exc:
        _give_up(call, exc)
        return None
    return TextStream(_stream_rest(client, call, opened), lambda: _finish_stream(client, call, opened), call.parse)


async def astream(client: OpenAIClient, call: Call) -> AsyncTextStream | None:
    """The async form of `stream`."""
    cached = _cached(client, call)
    if cached is not MISSING:
        return AsyncTextStream(areplay(cached), lambda: cached, call.parse, cached=True)
    try:
        opened = await _adrive(client, call, _stream_opening(client, call))
    except RetriesExhaustedError as exc:
        _give_up(call, exc)
        return None
    return AsyncTextStream(
        _astream_rest(client, call, opened), lambda: _finish_stream(client, call, opened), call.parse
    )


def _cached(client: OpenAIClient, call: Call) -> Any:
    """The cached answer for `call`, counted as a hit, or MISSING."""
    if call.cache is None:
        return MISSING
    value = call.cache.get(call.key)  # type: ignore[arg-type]
    if value is not MISSING:
        client._account(call, value, hit=True)
    return value


def _stream_opening(client: OpenAIClient, call: Call) -> flow.Flow[flow.OpenStream]:
    key = _gate_key(client, call)
    refine = functools.partial(client._refine_error, kind=call.kind)
    return flow.retrying(call, client._random, lambda: flow.open_stream(call, key, refine))


def _stream_rest(client: OpenAIClient, call: Call, opened: flow.OpenStream) -> Iterator[str]:
    """The text of an open stream (flow.stream_rest); its slot is released when reading stops."""
    try:
        yield from flow.emitted(flow.stream_rest(opened), functools.partial(_perform, client, call))
    finally:
        opened.slot.__exit__(None, None, None)


async def _astream_rest(client: OpenAIClient, call: Call, opened: flow.OpenStream) -> AsyncIterator[str]:
    """The async form of `_stream_rest`."""
    texts = flow.aemitted(flow.stream_rest(opened), functools.partial(_aperform, client, call))
    try:
        async for text in texts:
            yield text
    finally:
        await texts.aclose()  # `async for` leaves it open when the reader stops early
        await opened.slot.__aexit__(None, None, None)


def _finish_stream(client: OpenAIClient, call: Call, opened: flow.OpenStream) -> dict[str, Any]:
    """A complete stream: check it like a plain answer, count it, cache it; its record."""
    unfinished = opened.assembler.unfinished()
    if unfinished:
        raise flow.interrupted(opened, MalformedResponseError(unfinished))
    record = check_record(opened.assembler.record(), call.parse)
    client._account(call, record, hit=False)
    if call.cache is not None:
        call.cache.put(call.key, record, call.request)  # type: ignore[arg-type]
    return record
