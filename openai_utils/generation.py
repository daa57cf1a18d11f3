"""A compatibility shim: `generate_response`, the asyncio entry point generator-style code expects.

Code built around an `OpenAIGenerator` on `AsyncOpenAI` calls one coroutine with the messages
and a few sampling parameters and gets the text, or an async iterator of chunks. This gives it
that shape, backed by this library's config, retries, concurrency limit and cache.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .registry import client
from .streaming import AsyncTextStream

__all__ = ["generate_response"]


async def generate_response(
    messages: Sequence[Mapping[str, Any]],
    model: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    stream: bool = True,
    **params: Any,
) -> str | AsyncTextStream | None:
    """The reply's text (stream=False) or an async iterator of its chunks (stream=True).

    None when every attempt failed, as with send_message; join a stream with
    `aprocess_streaming_response`. A stream read to its end tells how it ended, as a plain
    reply does: `.finish_reason`, `.truncated`, `.usage`, `.reply`.
    """
    reply = await client().asend_message(
        messages, model=model, max_tokens=max_tokens, temperature=temperature, stream=stream, **params
    )
    if stream or reply is None:
        return reply  # type: ignore[no-any-return]
    return reply.get("content")  # type: ignore[no-any-return]
