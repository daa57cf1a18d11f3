"""The backend seam: a client over `MockBackend(handler)` runs the whole shared path (retries,
the cache, usage, streams, async) with a plain function in place of a server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from openai_utils import OpenAIClient, default
from openai_utils.backend import Backend, MockBackend
from openai_utils.exceptions import ServerError
from openai_utils.request import CHAT, EMBEDDING

HI = [{"role": "user", "content": "hi"}]
USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def answer(text: str) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": USAGE,
    }


def chunks(*texts: str) -> Iterator[dict[str, Any]]:
    for text in texts:
        yield {"model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    yield {"model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    yield {"model": "gpt-4o-mini", "choices": [], "usage": USAGE}


class Script:
    """A handler that fails `failures` times with a 503, then answers; it records what it got."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, kind: str, body: Mapping[str, Any]) -> Any:
        self.seen.append((kind, dict(body)))
        if self.failures:
            self.failures -= 1
            raise ServerError("busy", status_code=503)
        if kind == EMBEDDING:
            return {"model": body["model"], "data": [{"index": 0, "embedding": [0.5, 0.25]}], "usage": USAGE}
        if body.get("stream"):
            return chunks("Hel", "lo")
        return answer("hello")


def test_a_mock_backend_answers_through_the_shared_path_with_retries() -> None:
    script = Script(failures=2)
    sleeps: list[float] = []
    client = OpenAIClient(backend=MockBackend(script), sleep=sleeps.append, random_value=lambda: 0.5)
    assert client.send_message(HI, max_attempts=3) == {"role": "assistant", "content": "hello"}
    assert len(script.seen) == 3 and len(sleeps) == 2
    assert script.seen[0][0] == CHAT and script.seen[0][1]["messages"] == HI
    assert client.get_cost_stats()["total_tokens"] == 5


def test_a_mock_backend_streams_embeds_and_answers_async() -> None:
    client = OpenAIClient(backend=MockBackend(Script()))
    assert "".join(client.send_message(HI, stream=True)) == "Hello"
    assert client.get_embedding("x") == [0.5, 0.25]

    async def main() -> tuple[Any, str]:
        reply = await client.asend_message(HI)
        stream = await client.asend_message(HI, stream=True)
        return reply, "".join([text async for text in stream])

    assert asyncio.run(main()) == ({"role": "assistant", "content": "hello"}, "Hello")


def test_the_backend_endpoint_keys_the_cache() -> None:
    default.force("cache_file_name", "calls.sqlite")
    first, second = Script(), Script()
    OpenAIClient(cache_api_calls=True, backend=MockBackend(first, endpoint="one")).send_message(HI)
    again = OpenAIClient(cache_api_calls=True, backend=MockBackend(first, endpoint="one"))
    again.send_message(HI)
    OpenAIClient(cache_api_calls=True, backend=MockBackend(second, endpoint="two")).send_message(HI)
    assert (len(first.seen), len(second.seen), again.cache_hits) == (1, 1, 1)


def test_a_backend_that_only_posts_says_it_cannot_stream() -> None:
    class PostOnly(Backend):
        def post(self, kind: str, body: Mapping[str, Any], timeout: float) -> dict[str, Any]:
            return answer("fine")

    client = OpenAIClient(backend=PostOnly())
    assert client.send_message(HI) == {"role": "assistant", "content": "fine"}
    with pytest.raises(NotImplementedError, match="does not stream chat"):
        client.send_message(HI, stream=True)
