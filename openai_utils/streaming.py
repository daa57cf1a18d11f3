"""Streamed chat completions: assembling chunks into the answer a non-streamed call returns.

Pure data handling shared by the sync and async paths: the caller's loop sees text deltas, and
when the stream completes the assembled record is exactly the shape `chat_record` produces, so
the cache and every consumer treat streamed and non-streamed answers alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from typing import Any


__all__ = [
    "StreamAssembler",
    "process_streaming_response",
    "aprocess_streaming_response",
    "replay",
    "areplay",
]


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
        message: dict[str, Any] = {"role": "assistant", "content": self.text if self.parts or not self.tool_calls else None}
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        if self.refusal:
            message["refusal"] = "".join(self.refusal)
        return {
            "model": self.model,
            "choices": [{"message": message, "finish_reason": self.finish_reason}],
            "usage": dict(self.usage) if self.usage else None,
        }


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
