"""Tests for openai_utils.request: message validation, request bodies, the cache key, token estimates."""

from __future__ import annotations

from typing import Any

import pytest

from openai_utils import InvalidRequestError
from openai_utils.request import (
    build_chat_request,
    build_embedding_request,
    build_embedding_requests,
    check_sendable,
    estimate_tokens,
    validate_arguments,
    validate_messages,
)

USER = {"role": "user", "content": "Hi"}


# --- validate_messages --------------------------------------------------------------------------


def test_valid_conversations_pass() -> None:
    validate_messages([USER])
    validate_messages(({"role": "system", "content": "Be brief"}, USER))
    # an assistant message that only calls tools needs no content
    validate_messages([USER, {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function"}]}])


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        ({"role": "user", "content": "Hi"}, "not dict"),
        ("Hi", "not str"),
        (b"Hi", "not bytes"),
        (None, "not NoneType"),
        ((m for m in [USER]), "not generator"),
    ],
)
def test_not_a_list_is_rejected(messages: Any, fragment: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        validate_messages(messages)
    assert "messages must be a list" in str(info.value)
    assert fragment in str(info.value)


def test_empty_list_is_rejected() -> None:
    with pytest.raises(InvalidRequestError, match="messages is empty"):
        validate_messages([])


def test_non_dict_item_names_its_index_and_type() -> None:
    with pytest.raises(InvalidRequestError) as info:
        validate_messages([USER, "hello"])
    assert "messages[1]" in str(info.value)
    assert "must be a dict" in str(info.value)
    assert "str" in str(info.value)


@pytest.mark.parametrize("bad", [{"content": "x"}, {"role": "", "content": "x"}, {"role": None, "content": "x"}])
def test_missing_role_names_its_index(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError) as info:
        validate_messages([USER, USER, bad])
    assert "messages[2]" in str(info.value)
    assert "no 'role'" in str(info.value)


def test_missing_content_names_index_and_role() -> None:
    with pytest.raises(InvalidRequestError) as info:
        validate_messages([{"role": "assistant"}])
    assert "messages[0]" in str(info.value)
    assert "'assistant'" in str(info.value)
    assert "no 'content'" in str(info.value)


def test_empty_tool_calls_do_not_excuse_missing_content() -> None:
    with pytest.raises(InvalidRequestError, match=r"messages\[0\].*no 'content'"):
        validate_messages([{"role": "assistant", "tool_calls": []}])


def test_invalid_request_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        validate_messages([])


@pytest.mark.parametrize("content", [{"text": "x"}, {"a"}, 5, b"bytes"])
def test_content_that_is_not_text_parts_or_none_is_rejected(content: Any) -> None:
    with pytest.raises(InvalidRequestError) as info:
        validate_messages([USER, {"role": "user", "content": content}])
    assert "messages[1]['content']" in str(info.value)
    assert type(content).__name__ in str(info.value)


# --- validate_arguments -------------------------------------------------------------------------


def test_arguments_left_as_none_or_within_range_pass() -> None:
    validate_arguments({"model": None, "temperature": None, "timeout": None, "max_attempts": None})
    validate_arguments({"model": "m", "temperature": 0, "timeout": 0.5, "max_attempts": 3, "n": 2, "stream": True})


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("temperature", float("nan"), "a number from 0 to 2"),
        ("temperature", True, "a number from 0 to 2"),
        ("max_tokens", 10.0, "a whole number from 1 to"),
        ("max_attempts", "3", "a whole number from 1 to 1000"),
        ("waiting_time", -0.5, "a number from 0 to 86400"),
        ("n", 129, "a whole number from 1 to 128"),
        ("echo", 1, "True or False"),
        ("model", ["gpt"], "the model's name as a str"),
    ],
)
def test_an_argument_outside_its_rule_names_itself_and_the_rule(name: str, value: Any, allowed: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        validate_arguments({"model": "m", name: value})
    assert f"{name}={value!r}" in str(info.value)
    assert allowed in str(info.value)


# --- check_sendable -----------------------------------------------------------------------------


def test_sendable_bodies_pass() -> None:
    check_sendable({"messages": [USER], "seed": 1, "logit_bias": {"50256": -100}, "stop": ("a", "b"), "x": None})


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (
            {"messages": [USER, {"role": "user", "content": [{"type": "text", "text": "\udfff"}]}]},
            "messages[1]['content'][0]['text']",
        ),
        ({"tools": [{"function": {"parameters": {"x": float("inf")}}}]}, "tools[0]['function']['parameters']['x']"),
        ({"metadata": {("a", "b"): 1}}, "metadata has a key of type tuple"),
        ({"seed": 10**5000}, "seed"),
        ({"seed": object()}, "seed is a object"),
    ],
)
def test_an_unsendable_body_names_the_place(body: dict[str, Any], where: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        check_sendable(body)
    assert where in str(info.value)


def test_a_body_nested_too_deep_to_walk_is_still_an_invalid_request() -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(InvalidRequestError, match="cannot be sent as JSON"):
        check_sendable({"metadata": deep})


# --- build_chat_request -------------------------------------------------------------------------


def test_none_params_are_dropped_others_kept() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    request = build_chat_request(
        [USER],
        {
            "model": "m",
            "temperature": 0,
            "top_p": None,
            "stop": None,
            "max_tokens": None,
            "presence_penalty": 0.0,
            "seed": 7,
            "tools": tools,
        },
    )
    assert request == {
        "messages": [USER],
        "model": "m",
        "temperature": 0,
        "presence_penalty": 0.0,
        "seed": 7,
        "tools": tools,
    }
    assert "top_p" not in request and "stop" not in request and "max_tokens" not in request


def test_messages_are_copied() -> None:
    message = {"role": "user", "content": "original"}
    messages = [message]
    request = build_chat_request(messages, {"model": "m"})
    message["content"] = "edited"
    messages.append({"role": "user", "content": "more"})
    assert request["messages"] == [{"role": "user", "content": "original"}]
    assert request["messages"][0] is not message


def test_build_chat_request_validates() -> None:
    with pytest.raises(InvalidRequestError, match=r"messages\[0\]"):
        build_chat_request([{"content": "no role"}], {"model": "m"})


# --- build_embedding_request --------------------------------------------------------------------


def test_embedding_request_for_one_string() -> None:
    assert build_embedding_request("hello", "emb") == {"model": "emb", "input": "hello"}


def test_embedding_request_for_a_list() -> None:
    texts = ["a", "b"]
    request = build_embedding_request(texts, "emb")
    assert request == {"model": "emb", "input": ["a", "b"]}
    texts.append("c")
    assert request["input"] == ["a", "b"]  # copied
    assert build_embedding_request(("x", "y"), "emb")["input"] == ["x", "y"]


@pytest.mark.parametrize("text", ["", [], ["a", ""], ["a", 3]])
def test_embedding_request_rejects_empty_input(text: Any) -> None:
    with pytest.raises(InvalidRequestError, match="get_embedding"):
        build_embedding_request(text, "emb")


def test_embedding_requests_split_long_lists_in_order() -> None:
    texts = [f"t{i}" for i in range(5)]
    requests = build_embedding_requests(texts, "emb", per_request=2)
    assert [r["input"] for r in requests] == [["t0", "t1"], ["t2", "t3"], ["t4"]]
    assert all(r["model"] == "emb" for r in requests)
    assert build_embedding_requests("one", "emb") == [{"model": "emb", "input": "one"}]
    assert build_embedding_requests(texts, "emb") == [{"model": "emb", "input": texts}]


def test_embedding_requests_check_every_text_before_splitting() -> None:
    texts = ["ok"] * 4 + [""]
    with pytest.raises(InvalidRequestError, match=r"text\[4\]"):
        build_embedding_requests(texts, "emb", per_request=2)


def test_embedding_request_takes_any_iterable_but_a_set() -> None:
    # a generator is more than the annotation promises, and taken all the same
    assert build_embedding_request((t for t in ["a", "b"]), "emb")["input"] == ["a", "b"]  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="set"):
        build_embedding_request({"a", "b"}, "emb")  # type: ignore[arg-type]  # a set on purpose: it is refused


# --- estimate_tokens ------------------------------------------------------------------------------


def test_estimate_counts_the_prompt_and_the_completion_budget() -> None:
    messages = [{"role": "user", "content": "Hello there"}]
    bare = estimate_tokens({"model": "gpt-4o-mini", "messages": messages})
    assert 5 < bare < 20
    assert estimate_tokens({"model": "gpt-4o-mini", "messages": messages, "max_tokens": 100}) == bare + 100
    assert estimate_tokens({"model": "gpt-4o-mini", "messages": messages, "max_tokens": 100, "n": 3}) == bare + 300


def test_estimate_counts_embedding_inputs() -> None:
    one = estimate_tokens({"model": "text-embedding-3-small", "input": "Hello there"}, "embedding")
    assert one >= 2
    assert estimate_tokens({"model": "text-embedding-3-small", "input": ["Hello there"] * 3}, "embedding") == 3 * one


def test_estimate_falls_back_to_characters_without_an_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    from openai_utils import tokens

    monkeypatch.setattr(tokens, "count_tokens", lambda *a, **k: None)
    assert estimate_tokens({"model": "m", "messages": [{"role": "user", "content": "x" * 400}]}) >= 100
