"""Streamed answers: chunk order, retries before the first chunk, drops after it, the cache, tool calls."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from openai_utils import (
    InvalidRequestError,
    OpenAIClient,
    StreamInterruptedError,
    StreamNotFinishedError,
    aprocess_streaming_response,
    force_api_cache,
    process_streaming_response,
)
from openai_utils.cache import open_cache
from openai_utils.concurrency import call_slots
from openai_utils.response import Reply
from openai_utils.streaming import AsyncTextStream, StreamAssembler, TextStream
from tests.fake_server import FakeOpenAIServer, Fault

LONG = [{"role": "user", "content": "tell me a story about seven small brave birds"}]
EXPECTED = "echo: tell me a story about seven small brave birds"
CUT = "echo: tell me"  # the answer with max_tokens=3: the fake server counts words
REPLY_ATTRIBUTES = sorted(name for name in dir(Reply) if not name.startswith("_") and not hasattr(dict, name))
MESSAGE_FIELDS = ("content", "tool_calls", "refusal")


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "openai_utils" and r.levelno == logging.WARNING]


def test_chunks_arrive_in_order_and_join_to_the_plain_answer(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    chunks = list(oai.send_message(LONG, stream=True))
    assert len(chunks) == 10 and chunks[0] == "echo: "
    assert "".join(chunks) == EXPECTED == oai.send_message(LONG)["content"]
    body = server.requests[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_process_streaming_response_joins_a_stream(oai: OpenAIClient) -> None:
    assert process_streaming_response(oai.send_message(LONG, stream=True)) == EXPECTED


def test_a_429_before_the_first_chunk_is_retried(
    oai: OpenAIClient, server: FakeOpenAIServer, sleeps: list[float]
) -> None:
    server.script(Fault.status(429, headers={"Retry-After": "2"}), Fault.reset())
    assert process_streaming_response(oai.send_message(LONG, stream=True)) == EXPECTED
    assert len(server.requests) == 3 and sleeps == [2.0, 2.0]


def test_a_drop_before_any_text_is_retried(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    server.script(Fault.stream_drop(0))
    assert process_streaming_response(oai.send_message(LONG, stream=True)) == EXPECTED
    assert len(server.requests) == 2


def test_a_drop_after_two_chunks_raises_and_caches_nothing(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path
) -> None:
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


def test_streamed_then_plain_is_one_request_and_the_same_text(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    force_api_cache(True, str(tmp_path / "c.pickle"))
    streamed = process_streaming_response(oai.send_message(LONG, stream=True))
    plain = oai.send_message(LONG)
    assert plain == {"role": "assistant", "content": streamed}
    assert len(server.requests) == 1
    assert (oai.cache_hits, oai.cache_misses) == (1, 1)


def test_plain_then_streamed_replays_the_cached_answer_as_a_stream(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path
) -> None:
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


def test_streamed_tool_calls_are_assembled_like_plain_ones(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path
) -> None:
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
    from openai_utils.concurrency import call_slots

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


def test_a_json_answer_to_a_stream_request_is_retried_not_returned_empty(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    force_api_cache(True, str(tmp_path / "c.pickle"))
    plain_json = {
        "id": "c",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "not a stream"}, "finish_reason": "stop"}],
    }
    server.script(Fault.status(200, body=plain_json))
    assert process_streaming_response(oai.send_message(LONG, stream=True)) == EXPECTED
    assert len(server.requests) == 2
    assert oai.send_message(LONG)["content"] == EXPECTED  # the empty non-answer was never cached


def test_a_stream_that_ends_without_a_finish_reason_is_interrupted(
    oai: OpenAIClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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


# -- what a stream tells once it has been read ---------------------------------------------------


def test_reply_attributes_cover_the_reply_class() -> None:
    """The stream exposes each attribute `Reply` has; a new one there shows up here."""
    assert REPLY_ATTRIBUTES == ["cached", "finish_reason", "model", "parsed", "truncated", "usage"]


def test_a_finished_stream_exposes_what_the_plain_reply_does(oai: OpenAIClient) -> None:
    stream = oai.send_message(LONG, stream=True)
    assert isinstance(stream, TextStream)
    chunks = [chunk for chunk in stream]
    plain = oai.send_message(LONG)
    assert "".join(chunks) == EXPECTED and stream.done
    assert isinstance(stream.reply, Reply) and stream.reply == plain
    for name in REPLY_ATTRIBUTES:
        assert getattr(stream, name) == getattr(plain, name), name
    for field in MESSAGE_FIELDS:
        assert getattr(stream, field) == plain.get(field), field
    assert (stream.finish_reason, stream.truncated, stream.cached, stream.model) == (
        "stop",
        False,
        False,
        "gpt-4o-mini",
    )
    assert stream.usage["completion_tokens"] == 10
    assert "finish_reason='stop'" in repr(stream)


def test_a_stream_cut_by_max_tokens_is_truncated_and_warns_as_a_plain_call_does(
    oai: OpenAIClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="openai_utils")
    stream = oai.send_message(LONG, stream=True, max_tokens=3)
    assert process_streaming_response(stream) == CUT
    streamed = warnings(caplog)
    caplog.clear()
    plain = oai.send_message(LONG, max_tokens=3)
    assert stream.truncated is True and stream.finish_reason == "length"
    assert stream.usage == plain.usage and stream.usage["completion_tokens"] == 3
    assert stream.reply == plain and plain.truncated
    assert len(streamed) == 1 and "cut off at the token limit" in streamed[0]
    assert streamed == warnings(caplog)


def test_reading_the_reply_before_the_end_is_a_clear_error(oai: OpenAIClient) -> None:
    stream = oai.send_message(LONG, stream=True)
    with pytest.raises(StreamNotFinishedError, match="not been read to its end"):
        _ = stream.truncated
    assert next(stream) == "echo: "
    with pytest.raises(StreamNotFinishedError, match="process_streaming_response"):
        _ = stream.reply
    assert not stream.done and "not read to its end" in repr(stream)
    assert "".join(stream) == EXPECTED[len("echo: ") :]
    assert stream.truncated is False
    assert list(stream) == []  # exhausted: stays exhausted, finished once
    assert oai.usage.snapshot()["model_calls"] == 1


def test_a_stream_closed_early_has_no_reply_and_frees_its_slot(oai: OpenAIClient, tmp_path: Path) -> None:
    force_api_cache(True, str(tmp_path / "c.pickle"))
    with oai.send_message(LONG, stream=True) as stream:
        assert next(stream) == "echo: "
        assert call_slots.in_use == 1
    assert call_slots.in_use == 0
    assert list(stream) == []
    with pytest.raises(StreamNotFinishedError, match="closed before its end"):
        _ = stream.finish_reason
    assert len(open_cache(tmp_path / "c.pickle")) == 0


def test_a_broken_stream_has_no_reply_and_says_why(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    server.script(Fault.stream_drop(2))
    stream = oai.send_message(LONG, stream=True)
    with pytest.raises(StreamInterruptedError):
        list(stream)
    with pytest.raises(StreamNotFinishedError, match="ended with StreamInterruptedError"):
        _ = stream.usage
    assert "StreamInterruptedError" in repr(stream)


def test_a_tool_call_stream_exposes_its_tool_calls(oai: OpenAIClient) -> None:
    tool = [{"role": "user", "content": "__tool__"}]
    stream = oai.send_message(tool, stream=True)
    assert list(stream) == []
    plain = oai.send_message(tool)
    assert stream.tool_calls == plain["tool_calls"] and stream.tool_calls[0]["function"]["name"] == "get_weather"
    assert stream.content is None and stream.finish_reason == "tool_calls"


def test_a_stream_with_a_response_format_exposes_the_parsed_answer(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    server.reply = lambda body: json.dumps({"city": "Paris", "is_capital": True})
    stream = oai.send_message(LONG, stream=True, response_format={"type": "json_object"})
    assert len(list(stream)) > 1
    assert stream.parsed == {"city": "Paris", "is_capital": True}
    assert stream.refusal is None


def test_a_cached_answer_replayed_as_a_stream_exposes_the_same_reply(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    force_api_cache(True, str(tmp_path / "c.pickle"))
    caplog.set_level(logging.WARNING, logger="openai_utils")
    plain = oai.send_message(LONG, max_tokens=3)
    replayed = oai.send_message(LONG, stream=True, max_tokens=3)
    with pytest.raises(StreamNotFinishedError):
        _ = replayed.cached
    assert list(replayed) == [CUT]
    assert replayed.cached is True and replayed.truncated is True and replayed.finish_reason == "length"
    assert replayed.usage == plain.usage and replayed.reply == plain
    assert len(server.requests) == 1
    assert len(warnings(caplog)) == 2 and warnings(caplog)[0] == warnings(caplog)[1]


def test_async_streams_expose_the_reply_live_and_replayed(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    force_api_cache(True, str(tmp_path / "c.pickle"))
    caplog.set_level(logging.WARNING, logger="openai_utils")

    async def main() -> tuple[Any, str, Any, list[str]]:
        live = await oai.asend_message(LONG, stream=True, max_tokens=3)
        with pytest.raises(StreamNotFinishedError):
            _ = live.usage
        text = await aprocess_streaming_response(live)
        replayed = await oai.asend_message(LONG, stream=True, max_tokens=3)
        chunks = [chunk async for chunk in replayed]
        return live, text, replayed, chunks

    live, text, replayed, chunks = asyncio.run(main())
    assert isinstance(live, AsyncTextStream) and isinstance(replayed, AsyncTextStream)
    assert text == CUT and chunks == [CUT]
    assert live.truncated and live.finish_reason == "length" and live.cached is False
    assert replayed.truncated and replayed.cached is True
    assert live.usage == replayed.usage and live.usage["completion_tokens"] == 3
    assert live.reply == replayed.reply
    assert len(server.requests) == 1
    assert len(warnings(caplog)) == 2 and "cut off at the token limit" in warnings(caplog)[0]


def test_an_async_stream_closed_early_has_no_reply_and_frees_its_slot(oai: OpenAIClient) -> None:
    async def main() -> Any:
        async with await oai.asend_message(LONG, stream=True) as stream:
            assert await stream.__anext__() == "echo: "
            assert call_slots.in_use == 1
        assert call_slots.in_use == 0
        assert [chunk async for chunk in stream] == []
        return stream

    stream = asyncio.run(main())
    with pytest.raises(StreamNotFinishedError, match="closed before its end"):
        _ = stream.reply


def test_a_stream_closed_early_closes_its_connection_in_its_own_task(
    oai: OpenAIClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Stopping after the first chunk (break, or aclose) must end the SDK's stream in the task
    that read it: left to the loop's shutdown, its generators cannot be closed and asyncio logs
    an error for each."""

    async def main() -> None:
        stream = await oai.asend_message(LONG, stream=True)
        async for _ in stream:
            break
        await stream.aclose()
        async for _ in await oai.asend_message(LONG, stream=True):
            break

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(main())
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
