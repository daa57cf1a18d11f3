"""generate_response: the coroutine generator-style asyncio code calls."""

from __future__ import annotations

import asyncio
from typing import Any

from openai_utils import OpenAIClient, aprocess_streaming_response, generate_response
from tests.fake_server import FakeOpenAIServer, Fault

HI = [{"role": "user", "content": "Hi there"}]
LONG = [{"role": "user", "content": "Hi there, how are you"}]


def test_text_when_not_streaming(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    text = asyncio.run(generate_response(HI, model="m", max_tokens=20, temperature=0.5, stream=False))
    assert text == "echo: Hi there"
    assert server.requests[0].body == {"messages": HI, "model": "m", "max_tokens": 20, "temperature": 0.5}


def test_chunks_when_streaming(oai: OpenAIClient) -> None:
    async def main() -> tuple[list[str], str]:
        chunks = [c async for c in await generate_response(HI)]  # type: ignore[union-attr]
        joined = await aprocess_streaming_response(await generate_response(HI))  # type: ignore[arg-type]
        return chunks, joined

    chunks, joined = asyncio.run(main())
    assert chunks == ["echo: ", "Hi ", "there"] and joined == "echo: Hi there"


def test_none_when_every_attempt_failed(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    server.fail_always(Fault.status(500))
    assert asyncio.run(generate_response(HI, stream=False, max_attempts=2)) is None


def test_a_stream_tells_how_it_ended(oai: OpenAIClient) -> None:
    async def main() -> tuple[str, Any]:
        stream = await generate_response(LONG, max_tokens=2)
        return await aprocess_streaming_response(stream), stream  # type: ignore[arg-type]

    text, stream = asyncio.run(main())
    assert text == "echo: Hi"
    assert stream.truncated and stream.finish_reason == "length" and stream.usage["completion_tokens"] == 2
