"""A chat request as a Responses one, and a Responses answer (plain or streamed) as a chat one."""

from __future__ import annotations

from typing import Any

import pytest

from openai_utils import InvalidRequestError, MalformedResponseError, ServerError, responses_wire
from openai_utils.request import adapt_for_reasoning
from openai_utils.responses_wire import ChunkTranslator, chat_usage, from_responses, to_responses
from openai_utils.streaming import StreamAssembler

CONVERSATION = [
    {"role": "system", "content": "You answer briefly."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "https://example.org/cat.png", "detail": "low"}},
            {"type": "file", "file": {"file_id": "file-1"}},
        ],
    },
    {
        "role": "assistant",
        "content": "Let me look.",
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "look", "arguments": '{"x": 1}'}}],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "a cat"}]},
    {"role": "system", "content": "Be kind."},
]


def test_messages_become_instructions_and_input_items_in_order() -> None:
    body = to_responses({"model": "m", "messages": CONVERSATION})
    assert body["instructions"] == "You answer briefly."
    assert body["input"] == [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "image_url": "https://example.org/cat.png", "detail": "low"},
                {"type": "input_file", "file_id": "file-1"},
            ],
        },
        {"type": "message", "role": "assistant", "content": "Let me look."},
        {"type": "function_call", "call_id": "call_1", "name": "look", "arguments": '{"x": 1}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "a cat"},
        {"type": "message", "role": "system", "content": "Be kind."},
    ]
    assert body["store"] is False


def test_an_assistant_turn_in_parts_is_sent_as_its_text() -> None:
    turn = {"role": "assistant", "content": [{"type": "text", "text": "Yes, "}, {"type": "text", "text": "a cat."}]}
    body = to_responses({"model": "m", "messages": [turn]})
    assert body["input"] == [{"type": "message", "role": "assistant", "content": "Yes, a cat."}]


def test_parameters_move_to_their_responses_places() -> None:
    params = adapt_for_reasoning({"model": "o3-pro", "max_tokens": 99, "temperature": 0.5}, "high")
    tool = {
        "type": "function",
        "function": {"name": "f", "description": "d", "strict": True, "parameters": {"type": "object"}},
    }
    schema = {"name": "answer", "schema": {"type": "object"}, "strict": True}
    body = to_responses(
        {
            **params,
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [tool, {"type": "web_search"}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "response_format": {"type": "json_schema", "json_schema": schema},
            "stream": True,
            "stream_options": {"include_usage": True},
            "store": True,
            "include": ["reasoning.encrypted_content"],
            "verbosity": "low",
        }
    )
    assert body == {
        "model": "o3-pro",
        "input": [{"type": "message", "role": "user", "content": "hi"}],
        "max_output_tokens": 99,
        "reasoning": {"effort": "high"},
        "text": {"format": {"type": "json_schema", **schema}, "verbosity": "low"},
        "tools": [
            {"type": "function", "name": "f", "description": "d", "strict": True, "parameters": {"type": "object"}},
            {"type": "web_search"},
        ],
        "tool_choice": {"type": "function", "name": "f"},
        "stream": True,
        "store": True,
        "include": ["reasoning.encrypted_content"],
    }


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        ({"stop": ["\n"]}, "stop cannot be sent to m"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"seed": 1}, "seed"),
        ({"seed": 0}, "seed"),
        ({"logprobs": True}, "message.output_text.logprobs"),
        ({"n": 2}, "n=2"),
    ],
)
def test_a_chat_parameter_with_no_responses_counterpart_is_refused_by_name(extra: dict[str, Any], said: str) -> None:
    with pytest.raises(InvalidRequestError, match=said):
        to_responses({"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra})


def test_a_part_or_role_the_responses_api_lacks_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="type 'input_audio'"):
        to_responses({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]})
    with pytest.raises(InvalidRequestError, match="role 'function'"):
        to_responses({"model": "m", "messages": [{"role": "function", "content": "x"}]})


USAGE = {
    "input_tokens": 100,
    "input_tokens_details": {"cached_tokens": 60},
    "output_tokens": 30,
    "output_tokens_details": {"reasoning_tokens": 20},
    "total_tokens": 130,
}
CHAT_USAGE = {
    "prompt_tokens": 100,
    "completion_tokens": 30,
    "total_tokens": 130,
    "prompt_tokens_details": {"cached_tokens": 60},
    "completion_tokens_details": {"reasoning_tokens": 20},
}


def test_usage_is_given_in_the_chat_shape_with_cached_and_reasoning_tokens() -> None:
    assert chat_usage(USAGE) == CHAT_USAGE
    assert chat_usage(None) is None


def test_an_answer_becomes_one_chat_choice() -> None:
    data = {
        "id": "resp_1",
        "model": "o3-pro",
        "status": "completed",
        "output": [
            {"type": "reasoning", "summary": []},
            {
                "type": "message",
                "content": [{"type": "output_text", "text": "Hi "}, {"type": "output_text", "text": "there"}],
            },
        ],
        "usage": USAGE,
    }
    completion = from_responses(data)
    assert completion["model"] == "o3-pro" and completion["usage"] == CHAT_USAGE
    assert completion["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "Hi there"}, "finish_reason": "stop"}
    ]
    cut = from_responses({**data, "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}})
    assert cut["choices"][0]["finish_reason"] == "length"
    filtered = from_responses({**data, "status": "incomplete", "incomplete_details": {"reason": "content_filter"}})
    assert filtered["choices"][0]["finish_reason"] == "content_filter"


def test_url_citations_come_back_as_chat_annotations() -> None:
    cited = {"type": "url_citation", "url": "https://example.org", "title": "E", "start_index": 0, "end_index": 2}
    data = {
        "status": "completed",
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "Hi", "annotations": [cited]}]}],
    }
    message = from_responses(data)["choices"][0]["message"]
    assert message["annotations"] == [
        {
            "type": "url_citation",
            "url_citation": {"url": "https://example.org", "title": "E", "start_index": 0, "end_index": 2},
        }
    ]


def test_an_unfinished_response_is_no_answer() -> None:
    with pytest.raises(MalformedResponseError, match="the response is in_progress, not finished"):
        from_responses({"status": "in_progress", "output": []})
    with pytest.raises(InvalidRequestError, match="background cannot be sent"):
        to_responses({"model": "m", "messages": [{"role": "user", "content": "hi"}], "background": True})


def test_a_failed_response_is_a_server_error_retried_as_a_5xx() -> None:
    with pytest.raises(ServerError, match="the response failed: overloaded"):
        from_responses({"status": "failed", "error": {"code": "server_error", "message": "overloaded"}})


def test_events_assemble_into_the_record_a_plain_answer_gives() -> None:
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {"model": "o3-pro", "status": "in_progress"}},
        {"type": "response.output_item.added", "output_index": 0, "item": {"type": "reasoning"}},
        {"type": "response.output_text.delta", "delta": "Hi "},
        {"type": "response.output_text.delta", "delta": "there"},
        {
            "type": "response.output_item.added",
            "output_index": 2,
            "item": {"type": "function_call", "call_id": "c", "name": "f"},
        },
        {"type": "response.function_call_arguments.delta", "output_index": 2, "delta": '{"a":'},
        {"type": "response.function_call_arguments.delta", "output_index": 2, "delta": " 1}"},
        {"type": "response.completed", "response": {"model": "o3-pro", "status": "completed", "usage": USAGE}},
    ]
    translator, assembler = ChunkTranslator(), StreamAssembler()
    texts = [assembler.feed(chunk) for event in events if (chunk := translator.chunk(event)) is not None]
    assert [t for t in texts if t] == ["Hi ", "there"]
    assert assembler.record() == {
        "model": "o3-pro",
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": "Hi there",
                    "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": CHAT_USAGE,
    }


def test_an_error_event_fails_the_stream() -> None:
    with pytest.raises(ServerError, match="the response stream failed: boom"):
        ChunkTranslator().chunk({"type": "error", "code": "server_error", "message": "boom"})
    with pytest.raises(ServerError, match="the response failed"):
        ChunkTranslator().chunk({"type": "response.failed", "response": {"status": "failed", "error": None}})


def test_a_message_name_is_left_out_with_one_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(responses_wire, "_said_names", False)
    message = {"role": "user", "name": "Ada", "content": "hi"}
    with caplog.at_level("WARNING", logger="openai_utils"):
        first = to_responses({"model": "m", "messages": [message]})
        to_responses({"model": "m", "messages": [message]})
    assert first["input"] == [{"type": "message", "role": "user", "content": "hi"}]
    said = [r.getMessage() for r in caplog.records if "`name`" in r.getMessage()]
    assert len(said) == 1 and "API_MODE = chat" in said[0]
