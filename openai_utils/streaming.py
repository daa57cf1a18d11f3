"""Streamed chat completions: assembling chunks into the answer a non-streamed call returns.

Pure data handling shared by the sync and async paths: the caller's loop sees text deltas, and
when the stream completes the assembled record is exactly the shape `chat_record` produces, so
the cache and every consumer treat streamed and non-streamed answers alike.

What `send_message(..., stream=True)` returns is a `TextStream` (`AsyncTextStream` for
`asend_message`): an iterator of text that, once read to its end, holds the same `Reply` a plain
call returns (finish_reason, truncated, usage, tool_calls, ...), and logs the same WARNING when
the answer was cut off.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

from .exceptions import StreamNotFinishedError
from .response import Reply, chat_result

__all__ = [
    "TextStream",
    "AsyncTextStream",
    "StreamAssembler",
    "process_streaming_response",
    "aprocess_streaming_response",
    "replay",
    "areplay",
]

_Chunks = TypeVar("_Chunks")


class StreamAssembler:
    """Collects the chunks of one streamed choice: text, tool-call deltas, finish reason, usage."""

    def __init__(self) -> None:
        self.model: str | None = None
        self.parts: list[str] = []
        self.refusal: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: Mapping[str, Any] | None = None
        self.chunks = 0

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def feed(self, chunk: Mapping[str, Any]) -> str | None:
        """Take one chunk; return its text delta (None when it carries no text)."""
        self.model = chunk.get("model") or self.model
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        delta_text = None
        for choice in chunk.get("choices") or ():
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            delta = choice.get("delta") or {}
            if delta.get("refusal"):
                self.refusal.append(delta["refusal"])
            for call in delta.get("tool_calls") or ():
                self._merge_tool_call(call)
            if delta.get("content"):
                delta_text = delta["content"]
                self.parts.append(delta_text)
                self.chunks += 1
        return delta_text

    def _merge_tool_call(self, delta: Mapping[str, Any]) -> None:
        slot = self.tool_calls.setdefault(
            delta.get("index", 0), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
        )
        if delta.get("id"):
            slot["id"] = delta["id"]
        if delta.get("type"):
            slot["type"] = delta["type"]
        function = delta.get("function") or {}
        slot["function"]["name"] += function.get("name") or ""
        slot["function"]["arguments"] += function.get("arguments") or ""

    def unfinished(self) -> str | None:
        """Why what arrived is not a whole answer, or None when it is.

        Every OpenAI-compatible server ends a stream with a finish_reason; a stream without one
        was cut, or came from a server that answered a stream request with plain JSON (zero
        chunks). Either way it is not an answer, and must not be returned or cached as one.
        """
        if self.finish_reason is None:
            return "the stream ended without a finish_reason: the connection was cut, or the server does not stream"
        return None

    def record(self) -> dict[str, Any]:
        """The finished answer, in the shape `response.chat_record` gives a non-streamed one."""
        message: dict[str, Any] = {
            "role": "assistant",
            "content": self.text if self.parts or not self.tool_calls else None,
        }
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        if self.refusal:
            message["refusal"] = "".join(self.refusal)
        return {
            "model": self.model,
            "choices": [{"message": message, "finish_reason": self.finish_reason}],
            "usage": dict(self.usage) if self.usage else None,
        }


class _FromReply:
    """A stream attribute that reads the same attribute (or, for message fields, key) of its reply."""

    def __init__(self, key: bool = False) -> None:
        self.key = key
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, stream: _TextStreamBase[Any] | None, owner: type | None = None) -> Any:
        if stream is None:
            return self
        reply = stream.reply
        return reply.get(self.name) if self.key else getattr(reply, self.name)


class _TextStreamBase(Generic[_Chunks]):
    """What a sync and an async stream share: everything but reading the next chunk.

    `chunks` yields the text; `finish` is called once, when the text has run out: it checks,
    counts and caches the assembled answer and returns its record. The record becomes the
    `Reply` through `chat_result`, the very function a plain call returns through, so both
    expose the same attributes and log the same WARNING for a cut-off answer.
    """

    content = _FromReply(key=True)
    tool_calls = _FromReply(key=True)
    refusal = _FromReply(key=True)
    parsed = _FromReply()
    finish_reason = _FromReply()
    truncated = _FromReply()
    usage = _FromReply()
    model = _FromReply()
    cached = _FromReply()

    def __init__(
        self,
        chunks: _Chunks,
        finish: Callable[[], Mapping[str, Any]],
        parse: Callable[[str], Any] | None = None,
        cached: bool = False,
    ) -> None:
        self._chunks = chunks
        self._finish = finish
        self._parse = parse
        self._from_cache = cached
        self._reply: Reply | None = None
        # Why the stream ended without a reply (closed early, or broke); None while it may get one.
        self._no_reply: str | None = None

    @property
    def done(self) -> bool:
        """Whether the stream was read to its end and its reply is available."""
        return self._reply is not None

    @property
    def reply(self) -> Reply:
        """The assistant message, exactly as `send_message` without stream=True returns it.

        Raises StreamNotFinishedError before the last chunk was read, or when the stream was
        closed early or broke: there is no finished answer to describe then.
        """
        if self._reply is not None:
            return self._reply
        if self._no_reply is not None:
            raise StreamNotFinishedError(f"this stream has no reply: {self._no_reply}")
        raise StreamNotFinishedError(
            "this stream has not been read to its end yet: its reply (finish_reason, truncated, usage, "
            "tool_calls, ...) exists once the last chunk has been read; read it first "
            "(`for chunk in stream: ...`, or `process_streaming_response(stream)`)"
        )

    def _over(self) -> bool:
        return self._reply is not None or self._no_reply is not None

    def _end(self) -> None:
        """The text has run out: finish the answer and keep its reply (or why there is none)."""
        try:
            record = self._finish()
            reply = chat_result(record, 1, False, (), self._parse, self._from_cache)
        except Exception as error:
            self._broke(error)
            raise
        self._reply = cast(Reply, reply)  # n == 1 without echo is always one Reply

    def _broke(self, error: BaseException) -> None:
        self._no_reply = f"it ended with {type(error).__name__}: {error}"

    def _closed(self) -> None:
        if not self._over():
            self._no_reply = "it was closed before its end"

    def __repr__(self) -> str:
        if self._reply is not None:
            state = (
                f"done, finish_reason={self._reply.finish_reason!r}, {len(self._reply.get('content') or '')} characters"
            )
        else:
            state = self._no_reply or "not read to its end yet"
        return f"<{type(self).__name__}: {state}>"


class TextStream(_TextStreamBase[Iterator[str]], Iterator[str]):
    """What `send_message(..., stream=True)` returns: the answer's text chunks as they arrive.

    Iterate it like any iterator of strings. Once it has been read to its end, `reply` is the
    `Reply` a plain call would have returned, and `content`, `tool_calls`, `refusal`, `parsed`,
    `finish_reason`, `truncated`, `usage`, `model` and `cached` read from it; before that they
    raise StreamNotFinishedError. `close()` (or leaving a `with` block) stops reading early and
    frees the connection.
    """

    def __next__(self) -> str:
        if self._over():
            raise StopIteration
        try:
            return next(self._chunks)
        except StopIteration:
            pass
        except Exception as error:
            self._broke(error)
            raise
        self._end()
        raise StopIteration

    def close(self) -> None:
        """Stop reading: the connection and its concurrency slot are released; there is no reply."""
        self._closed()
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> TextStream:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


class AsyncTextStream(_TextStreamBase[AsyncIterator[str]], AsyncIterator[str]):
    """What `asend_message(..., stream=True)` returns: `TextStream`, iterated with `async for`.

    `aclose()` (or leaving an `async with` block) stops reading early.
    """

    async def __anext__(self) -> str:
        if self._over():
            raise StopAsyncIteration
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            pass
        except Exception as error:
            self._broke(error)
            raise
        self._end()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop reading: the connection and its concurrency slot are released; there is no reply."""
        self._closed()
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            await aclose()

    async def __aenter__(self) -> AsyncTextStream:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()


def replay(record: Mapping[str, Any]) -> Iterator[str]:
    """A cached answer served to a streaming caller: the same loop works, the text comes at once."""
    content = record["choices"][0]["message"].get("content")
    if content:
        yield content


async def areplay(record: Mapping[str, Any]) -> AsyncIterator[str]:
    """The async form of `replay`."""
    for piece in replay(record):
        yield piece


def process_streaming_response(stream: Iterable[str]) -> str:
    """Join a stream of text chunks (from `send_message(..., stream=True)`) into the full text."""
    return "".join(stream)


async def aprocess_streaming_response(stream: AsyncIterable[str]) -> str:
    """Join an async stream of text chunks (from `asend_message(..., stream=True)`) into the full text."""
    return "".join([piece async for piece in stream])
