"""Which API answers a chat call (api_mode.py), against the fake server's /chat/completions and
/responses: the modes, the refusal learned on auto, and everything around a call (streams, async,
the cache, retries, LLMCall, the parallel maps) working unchanged through /responses."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openai_utils import (
    AzureClient,
    ConfigError,
    InvalidRequestError,
    LLMCall,
    OpenAIClient,
    StreamInterruptedError,
    api_mode,
    default,
    force_api_cache,
    force_default_value,
)
from tests.fake_responses import REFUSAL_TEXT
from tests.fake_server import TOOL_ARGUMENTS, FakeOpenAIServer, Fault

PRO = "gpt-9-pro"
"""A model RESPONSES_MODELS does not name: only a refusal can send it to /responses."""
LONG = [{"role": "user", "content": "tell me a story about seven small brave birds"}]
EXPECTED = "echo: tell me a story about seven small brave birds"


@pytest.fixture(autouse=True)
def nothing_learned() -> Iterator[None]:
    api_mode.forget()
    yield
    api_mode.forget()


def paths(server: FakeOpenAIServer) -> list[str]:
    return [r.path for r in server.requests]


@pytest.mark.parametrize("form", ["404", "400", "azure"])
def test_a_refused_model_is_answered_through_responses_with_one_extra_request_the_first_time(
    oai: OpenAIClient, server: FakeOpenAIServer, sleeps: list[float], form: str, caplog: pytest.LogCaptureFixture
) -> None:
    server.responses_only[PRO] = form
    caplog.set_level(logging.INFO, "openai_utils")
    first = oai.send_message(LONG, model=PRO)
    assert first["content"] == EXPECTED and first.finish_reason == "stop"
    assert paths(server) == ["/v1/chat/completions", "/v1/responses"]
    assert sleeps == []  # no attempt spent, no backoff
    assert any("answers only through the Responses API" in r.getMessage() for r in caplog.records)
    server.reset()
    assert oai.send_message([{"role": "user", "content": "again"}], model=PRO)["content"] == "echo: again"
    assert paths(server) == ["/v1/responses"]


def test_other_models_and_other_servers_are_not_moved(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    server.responses_only[PRO] = "404"
    oai.send_message(LONG, model=PRO)
    server.reset()
    oai.send_message(LONG)
    assert paths(server) == ["/v1/chat/completions"]
    with FakeOpenAIServer() as other:
        default.force("base_url", other.base_url)
        other.responses_only[PRO] = "404"
        oai.send_message(LONG, model=PRO)
        assert paths(other) == ["/v1/chat/completions", "/v1/responses"]


def test_a_model_responses_models_names_goes_straight_to_responses(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    force_default_value("responses_models", "gpt-9")
    assert oai.send_message(LONG, model=PRO)["content"] == EXPECTED
    assert paths(server) == ["/v1/responses"]


def test_api_mode_chat_keeps_the_refusal_an_error(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    force_default_value("api_mode", "chat")
    force_default_value("responses_models", "gpt-9")
    server.responses_only[PRO] = "404"
    with pytest.raises(InvalidRequestError, match="only supported in v1/responses") as caught:
        oai.send_message(LONG, model=PRO)
    assert caught.value.status_code == 404
    assert paths(server) == ["/v1/chat/completions"]


def test_api_mode_responses_sends_every_model_there(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    force_default_value("api_mode", "responses")
    assert oai.send_message(LONG)["content"] == EXPECTED
    assert paths(server) == ["/v1/responses"]
    body = server.requests[0].body
    assert body["input"] == [{"type": "message", "role": "user", "content": LONG[0]["content"]}]
    assert body["store"] is False and "messages" not in body


def test_a_bad_api_mode_is_a_config_error(oai: OpenAIClient) -> None:
    force_default_value("api_mode", "sometimes")
    with pytest.raises(ConfigError, match="API_MODE is 'sometimes': use one of chat, responses, auto"):
        oai.send_message(LONG)


def test_a_404_of_another_kind_is_not_taken_for_a_refusal(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    server.script(Fault.status(404))
    with pytest.raises(InvalidRequestError):
        oai.send_message(LONG, model=PRO)
    assert paths(server) == ["/v1/chat/completions"]


@pytest.mark.parametrize("form", ["404", "400"])
def test_a_refused_stream_is_opened_on_responses_and_yields_text_the_same_way(
    oai: OpenAIClient, server: FakeOpenAIServer, form: str
) -> None:
    server.responses_only[PRO] = form
    chat_chunks = list(oai.send_message(LONG, stream=True))
    server.reset()
    stream = oai.send_message(LONG, model=PRO, stream=True)
    assert list(stream) == chat_chunks
    assert paths(server) == ["/v1/chat/completions", "/v1/responses"]
    assert server.requests[1].body["stream"] is True and "stream_options" not in server.requests[1].body
    assert stream.reply == {"role": "assistant", "content": EXPECTED} and stream.finish_reason == "stop"
    assert stream.usage["prompt_tokens"] == 9 and stream.usage["completion_tokens"] == 10


def test_a_cut_responses_stream_keeps_what_arrived(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    force_default_value("api_mode", "responses")
    server.script(Fault.stream_drop(3))
    stream = oai.send_message(LONG, stream=True)
    with pytest.raises(StreamInterruptedError) as caught:
        list(stream)
    assert caught.value.received == "echo: tell me "


def test_max_output_tokens_cuts_the_answer_as_max_tokens_does(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    force_default_value("api_mode", "responses")
    reply = oai.send_message(LONG, max_tokens=3)
    assert reply["content"] == "echo: tell me" and reply.truncated
    assert server.requests[0].body["max_output_tokens"] == 3
    stream = oai.send_message(LONG, max_tokens=3, stream=True)
    assert "".join(stream) == "echo: tell me" and stream.truncated


def test_tool_calls_and_refusals_come_back_in_the_chat_shape(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    force_default_value("api_mode", "responses")
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    for stream in (False, True):
        called = oai.send_message([{"role": "user", "content": "__tool__"}], tools=[tool], stream=stream)
        if stream:
            assert list(called) == []
        reply = called.reply if stream else called
        assert reply.finish_reason == "tool_calls" and reply["content"] is None
        assert reply["tool_calls"] == [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": TOOL_ARGUMENTS}}
        ]
        refused = oai.send_message([{"role": "user", "content": "__refuse__"}], stream=stream)
        if stream:
            assert list(refused) == []
            refused = refused.reply
        # content as a chat answer has it: None in a plain one, "" in an assembled stream
        assert refused == {"role": "assistant", "content": "" if stream else None, "refusal": REFUSAL_TEXT}
    sent = server.requests[0].body["tools"]
    assert sent == [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": False}]


def test_structured_output_is_parsed_from_a_responses_answer(server: FakeOpenAIServer, oai: OpenAIClient) -> None:
    force_default_value("api_mode", "responses")
    server.reply = lambda body: json.dumps({"answer": "yes"})
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    reply = oai.send_message(LONG, response_format=schema)
    assert reply.parsed == {"answer": "yes"}
    text = server.requests[0].body["text"]["format"]
    assert text["type"] == "json_schema" and text["strict"] is True and text["schema"]["additionalProperties"] is False


def test_one_cache_entry_whichever_api_answered(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    force_api_cache(True)
    force_default_value("api_mode", "responses")
    first = oai.send_message(LONG)
    force_default_value("api_mode", "chat")
    again = oai.send_message(LONG)
    assert again == first and again.cached and paths(server) == ["/v1/responses"]
    streamed = oai.send_message(LONG, stream=True)
    assert "".join(streamed) == EXPECTED and streamed.cached


def test_a_responses_call_is_retried_and_counted_as_any_other(
    oai: OpenAIClient, server: FakeOpenAIServer, sleeps: list[float]
) -> None:
    server.responses_only[PRO] = "404"
    server.script(Fault.status(500), path="/responses")
    reply = oai.send_message(LONG, model=PRO)
    assert reply["content"] == EXPECTED
    assert paths(server) == ["/v1/chat/completions", "/v1/responses", "/v1/responses"] and len(sleeps) == 1
    stats = oai.get_cost_stats()
    assert stats["model_calls"] == 1 and stats["input_tokens"] == 9 and stats["output_tokens"] == 10


def test_async_calls_and_streams_learn_the_refusal_too(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    server.responses_only[PRO] = "400"

    async def calls() -> tuple[Any, str]:
        reply = await oai.asend_message(LONG, model=PRO)
        stream = await oai.asend_message([{"role": "user", "content": "again"}], model=PRO, stream=True)
        return reply, "".join([text async for text in stream])

    reply, text = asyncio.run(calls())
    assert reply["content"] == EXPECTED and text == "echo: again"
    assert paths(server) == ["/v1/chat/completions", "/v1/responses", "/v1/responses"]


def test_llm_call_and_the_parallel_map_run_unchanged(
    oai: OpenAIClient, server: FakeOpenAIServer, prompts: Path
) -> None:
    server.responses_only[PRO] = "404"
    force_default_value("model", PRO)
    replies = oai.send_messages([[{"role": "user", "content": f"n{i}"}] for i in range(4)], progress=False)
    assert [r["content"] for r in replies] == [f"echo: n{i}" for i in range(4)]
    assert len(server.requests_to("/responses")) == 4
    assert (
        1 <= len(server.requests_to("/chat/completions")) <= 4
    )  # calls in flight before the first refusal each learn it
    server.reset()
    call = LLMCall("greet.system", "greet.user")
    assert call.call(who="Ann", lang="French") == "echo: Say hello to Ann in French."
    assert paths(server) == ["/v1/responses"]
    assert server.requests[0].body["instructions"] == "You greet Ann."


def test_azure_sends_responses_to_its_published_layout_with_the_responses_api_version(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chat goes to /openai/deployments/{deployment}/chat/completions?api-version=AZURE_API_VERSION;
    Responses to /openai/responses?api-version=AZURE_RESPONSES_API_VERSION, the deployment as `model`."""
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.url)
    monkeypatch.setenv("AZURE_OPENAI_KEY", "azure-secret")
    azure = AzureClient()
    server.responses_only["my-codex"] = "azure"
    for stream in (False, True):
        reply = azure.send_message(LONG, model="my-codex", stream=stream)
        assert (reply["content"] if not stream else "".join(reply)) == EXPECTED
    chat, first, second = server.requests
    assert chat.path == "/openai/deployments/my-codex/chat/completions" and chat.query == {"api-version": "2024-10-21"}
    for sent in (first, second):
        assert sent.path == "/openai/responses" and sent.query == {"api-version": "2025-04-01-preview"}
        assert sent.body["model"] == "my-codex" and sent.headers["api-key"] == "azure-secret"


def test_cached_and_reasoning_tokens_of_a_responses_answer_are_priced_from_the_table(
    oai: OpenAIClient, server: FakeOpenAIServer
) -> None:
    force_default_value("api_mode", "responses")
    server.usage_details = {
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 7},
    }
    reply = oai.send_message(LONG)  # 9 input words, 10 output words + 7 reasoning tokens
    assert reply.usage == {
        "prompt_tokens": 9,
        "completion_tokens": 17,
        "total_tokens": 26,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 7},
    }
    stats = oai.get_cost_stats()
    assert stats["input_tokens"] == 9 and stats["cached_input_tokens"] == 4
    assert stats["output_tokens"] == 17 and stats["reasoning_tokens"] == 7
    # gpt-4o-mini: 0.15 input, 0.075 cached input, 0.60 output, per million tokens
    assert stats["cost_usd"] == pytest.approx((5 * 0.15 + 4 * 0.075 + 17 * 0.60) / 1_000_000, rel=1e-12)


def test_a_responses_stream_left_unread_closes_quietly_sync_and_async(
    oai: OpenAIClient, server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Read one chunk, then close early or leave the stream to the event loop's end: no error is
    logged (two async generators closed at once by the loop's shutdown once collided), and the
    client goes on answering."""
    force_default_value("api_mode", "responses")

    async def main(close: bool) -> str:
        stream = await oai.asend_message(LONG, stream=True)
        async for _ in stream:
            break
        if close:
            await stream.aclose()
        return "".join([text async for text in await oai.asend_message(LONG, stream=True)])

    with caplog.at_level(logging.ERROR):
        assert asyncio.run(main(close=True)) == EXPECTED
        assert asyncio.run(main(close=False)) == EXPECTED
        stream = oai.send_message(LONG, stream=True)
        assert next(stream) == "echo: "
        stream.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert oai.send_message(LONG)["content"] == EXPECTED


@pytest.mark.parametrize(
    ("model", "listed"),
    [
        ("gpt-5-codex", True),
        ("gpt-5.1-codex-mini", True),
        ("gpt-5.3-codex", True),
        ("gpt-5-pro-2025-10-06", True),
        ("GPT-5.2-Pro", True),
        ("o3-pro", True),
        ("openrouter/o1-pro", True),
        ("o4-mini-deep-research", True),
        ("codex-mini-latest", True),
        ("gpt-5", False),
        ("gpt-5-mini", False),
        ("o3", False),
        ("gpt-4o-mini", False),
        ("my-gpt-5-codex", False),
    ],
)
def test_the_default_responses_models_name_the_pro_and_codex_families(model: str, listed: bool) -> None:
    name = model.lower().rsplit("/", 1)[-1]
    assert bool(api_mode.listed_pattern(str(default["responses_models"])).match(name)) is listed


def test_an_empty_responses_models_names_no_model(oai: OpenAIClient, server: FakeOpenAIServer) -> None:
    force_default_value("responses_models", "")
    oai.send_message(LONG, model="o3-pro")
    assert paths(server) == ["/v1/chat/completions"]


def test_a_server_without_responses_gets_a_404_that_says_how_to_go_back_to_chat(
    oai: OpenAIClient, server: FakeOpenAIServer
) -> None:
    force_default_value("api_mode", "responses")
    server.script(Fault.status(404), Fault.status(404), path="/responses")
    for stream in (False, True):
        with pytest.raises(InvalidRequestError, match="set API_MODE = chat") as caught:
            oai.send_message(LONG, stream=stream)
        assert caught.value.status_code == 404 and "The requested resource was not found" in str(caught.value)
    server.script(Fault.status(400), path="/responses")
    with pytest.raises(InvalidRequestError) as other:
        oai.send_message(LONG)
    assert "API_MODE" not in str(other.value)


def test_with_api_mode_responses_the_responses_client_is_made_before_the_send(
    oai: OpenAIClient, server: FakeOpenAIServer
) -> None:
    """Admission gets the backend ready (the SDK client, the local server) before the rate-limit
    token is taken; with every chat call going to /responses, it is the one for /responses."""
    force_default_value("api_mode", "responses")
    ready: list[str] = []
    real_connect = oai.backend.connect

    def connect(kind: str) -> Any:
        ready.append(kind)
        return real_connect(kind)

    oai.backend.connect = connect  # type: ignore[method-assign]
    oai.send_message(LONG)
    assert ready == ["responses", "responses"]  # at admission, then at the send (built once)
