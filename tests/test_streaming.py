"""Streamed answers: chunk order, retries before the first chunk, drops after it, the cache, tool calls."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from openai_utils import (
    InvalidRequestError,
    OpenAIClient,
    StreamInterruptedError,
    aprocess_streaming_response,
    force_api_cache,
    process_streaming_response,
)
from openai_utils.cache import open_cache
from openai_utils.streaming import StreamAssembler
from tests.fake_server import FakeOpenAIServer, Fault

LONG = [{"role": "user", "content": "tell me a story about seven small brave birds"}]
EXPECTED = "echo: tell me a story about seven small brave birds"


def test_chunks_arrive_in_order_and_join_to_the_plain_answer(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    chunks = list(oai.send_message(LONG, stream=True))
    assert len(chunks) == 10 and chunks[0] == "echo: "
    assert "".join(chunks) == EXPECTED == oai.send_message(LONG)["content"]
    body = server.requests[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_process_streaming_response_joins_a_stream(oai: OpenAIClient) -> None:
    assert process_streaming_response(oai.send_message(LONG, stream=True)) == EXPECTED


def test_a_429_before_the_first_chunk_is_retried(oai: OpenAIClient, server: FakeOpenAIServer, sleeps: list[float]) -> None:
    server.script(Fault.status(429, headers={"Retry-After": "2"}), Fault.reset())
    assert process_streaming_response(oai.send_message(LONG, stream=True)) == EXPECTED
    assert len(server.requests) == 3 and sleeps == [2.0, 2.0]


def test_a_drop_before_any_text_is_retried(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    server.script(Fault.stream_drop(0))
    assert process_streaming_response(oai.send_message(LONG, stream=True)) == EXPECTED
    assert len(server.requests) == 2


def test_a_drop_after_two_chunks_raises_and_caches_nothing(oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path) -> None:
    force_api_cache(True, str(tmp_path / "c.pickle"))
    server.script(Fault.stream_drop(2))
    got: list[str] = []
    with pytest.raises(StreamInterruptedError) as caught:
        for chunk in oai.send_message(LONG, stream=True):
            got.append(chunk)
    assert got == ["echo: ", "tell "]
    assert caught.value.received == "echo: tell " and caught.value.chunks == 2
    assert "2 chunks" in str(caught.value)
    assert len(server.requests) == 1  # never retried behind the caller's back
    assert len(open_cache(tmp_path / "c.pickle")) == 0
    assert process_streaming_response(oai.send_message(LONG, stream=True)) == EXPECTED


def test_streamed_then_plain_is_one_request_and_the_same_text(oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path) -> None:
    force_api_cache(True, str(tmp_path / "c.pickle"))
    streamed = process_streaming_response(oai.send_message(LONG, stream=True))
    plain = oai.send_message(LONG)
    assert plain == {"role": "assistant", "content": streamed}
    assert len(server.requests) == 1
    assert (oai.cache_hits, oai.cache_misses) == (1, 1)


def test_plain_then_streamed_replays_the_cached_answer_as_a_stream(oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path) -> None:
    force_api_cache(True, str(tmp_path / "c.pickle"))
    plain = oai.send_message(LONG)
    replayed = oai.send_message(LONG, stream=True)
    assert list(replayed) == [plain["content"]]
    assert len(server.requests) == 1


def test_the_stored_stream_keeps_its_usage_and_finish_reason(oai: OpenAIClient, tmp_path: Path) -> None:
    force_api_cache(True, str(tmp_path / "c.pickle"))
    list(oai.send_message(LONG, stream=True))
    [(_, stored)] = list(open_cache(tmp_path / "c.pickle").items())
    assert stored["usage"]["completion_tokens"] > 0
    assert stored["choices"][0]["finish_reason"] == "stop"


def test_streamed_tool_calls_are_assembled_like_plain_ones(oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path) -> None:
    force_api_cache(True, str(tmp_path / "c.pickle"))
    tool = [{"role": "user", "content": "__tool__"}]
    assert list(oai.send_message(tool, stream=True)) == []
    streamed = oai.send_message(tool)  # served from the assembled stream
    force_api_cache(False)
    plain = oai.send_message(tool)
    assert streamed == plain
    assert plain["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert len(server.requests) == 2


def test_stream_with_n_or_echo_is_refused(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    with pytest.raises(InvalidRequestError, match="n > 1"):
        oai.send_message(LONG, stream=True, n=2)
    with pytest.raises(InvalidRequestError, match="echo"):
        oai.send_message(LONG, stream=True, echo=True)
    assert server.requests == []


def test_a_stream_that_never_opens_returns_none(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    server.fail_always(Fault.status(503))
    assert oai.send_message(LONG, stream=True, max_attempts=3) is None
    assert len(server.requests) == 3


def test_a_stream_holds_a_concurrency_slot_until_it_ends(oai: OpenAIClient) -> None:
    from openai_utils.limits import call_slots

    stream = oai.send_message(LONG, stream=True)
    assert call_slots.in_use == 1
    next(stream)
    assert call_slots.in_use == 1
    list(stream)
    assert call_slots.in_use == 0


def test_async_streams_behave_the_same(oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path) -> None:
    force_api_cache(True, str(tmp_path / "c.pickle"))
    server.script(Fault.status(429))

    async def main() -> tuple[list[str], Any, str]:
        chunks = [c async for c in await oai.asend_message(LONG, stream=True)]
        replayed = await aprocess_streaming_response(await oai.asend_message(LONG, stream=True))
        plain = await oai.asend_message(LONG)
        return chunks, plain, replayed

    chunks, plain, replayed = asyncio.run(main())
    assert "".join(chunks) == EXPECTED == plain["content"] == replayed
    assert len(chunks) == 10
    assert len(server.requests) == 2  # the 429, then one stream; the rest were hits


def test_an_async_drop_after_two_chunks_raises(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    server.script(Fault.stream_drop(2))

    async def main() -> list[str]:
        got = []
        async for chunk in await oai.asend_message(LONG, stream=True):
            got.append(chunk)
        return got

    with pytest.raises(StreamInterruptedError) as caught:
        asyncio.run(main())
    assert caught.value.received == "echo: tell "


def test_assembler_merges_tool_call_deltas_by_index() -> None:
    assembler = StreamAssembler()
    deltas = [
        {"tool_calls": [{"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": ""}}]},
        {"tool_calls": [{"index": 1, "id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"x": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]},
    ]
    for delta in deltas:
        assert assembler.feed({"model": "m", "choices": [{"index": 0, "delta": delta}]}) is None
    assembler.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    assembler.feed({"choices": [], "usage": {"total_tokens": 5}})
    record = assembler.record()
    assert record["model"] == "m" and record["usage"] == {"total_tokens": 5}
    assert record["choices"][0]["finish_reason"] == "tool_calls"
    message = record["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]


def test_assembler_keeps_refusals() -> None:
    assembler = StreamAssembler()
    assembler.feed({"choices": [{"delta": {"refusal": "I can't "}}]})
    assembler.feed({"choices": [{"delta": {"refusal": "help with that."}}]})
    assert assembler.record()["choices"][0]["message"]["refusal"] == "I can't help with that."


def test_a_json_answer_to_a_stream_request_is_retried_not_returned_empty(oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path) -> None:
    force_api_cache(True, str(tmp_path / "c.pickle"))
    plain_json = {
        "id": "c", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "not a stream"}, "finish_reason": "stop"}],
    }
    server.script(Fault.status(200, body=plain_json))
    assert process_streaming_response(oai.send_message(LONG, stream=True)) == EXPECTED
    assert len(server.requests) == 2
    assert oai.send_message(LONG)["content"] == EXPECTED  # the empty non-answer was never cached


def test_a_stream_that_ends_without_a_finish_reason_is_interrupted(oai: OpenAIClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    force_api_cache(True, str(tmp_path / "c.pickle"))
    real = oai._raw_stream_call

    def without_finish(request: Any, timeout: float) -> Any:
        for chunk in real(request, timeout):
            if not any(choice.get("finish_reason") for choice in chunk.get("choices") or ()):
                yield chunk

    monkeypatch.setattr(oai, "_raw_stream_call", without_finish)
    got: list[str] = []
    with pytest.raises(StreamInterruptedError, match="without a finish_reason"):
        for chunk in oai.send_message(LONG, stream=True):
            got.append(chunk)
    assert "".join(got) == EXPECTED
    assert len(open_cache(tmp_path / "c.pickle")) == 0
