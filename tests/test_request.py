"""Tests for openai_utils.request: message validation, request bodies, the cache key."""

from __future__ import annotations

from typing import Any

import pytest

from openai_utils import InvalidRequestError
from openai_utils.request import build_chat_request, build_embedding_request, cache_key, validate_messages

USER = {"role": "user", "content": "Hi"}


# --- validate_messages --------------------------------------------------------------------------


def test_valid_conversations_pass() -> None:
    validate_messages([USER])
    validate_messages(({"role": "system", "content": "Be brief"}, USER))
    # an assistant message that only calls tools needs no content
    validate_messages(
        [USER, {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function"}]}]
    )


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


# --- cache_key ----------------------------------------------------------------------------------


def base_request(**changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0.2}
    request.update(changes)
    return request


def key(request: dict[str, Any], api_type: str = "openai", endpoint: str = "https://api", kind: str = "chat") -> str:
    return cache_key(api_type, endpoint, kind, request)


def test_cache_key_is_a_sha256_hex_digest_and_deterministic() -> None:
    first = key(base_request())
    assert len(first) == 64 and all(c in "0123456789abcdef" for c in first)
    assert key(base_request()) == first


def test_cache_key_ignores_dict_ordering() -> None:
    a = {"model": "m", "temperature": 0.2, "messages": [{"role": "user", "content": "Hi"}]}
    b = {"messages": [{"content": "Hi", "role": "user"}], "temperature": 0.2, "model": "m"}
    assert key(a) == key(b)


@pytest.mark.parametrize(
    "changed",
    [
        lambda: key(base_request(model="other")),
        lambda: key(base_request(messages=[{"role": "user", "content": "Hello"}])),
        lambda: key(base_request(messages=[{"role": "system", "content": "Hi"}])),
        lambda: key(base_request(temperature=0.3)),
        lambda: key(base_request(seed=1)),
        lambda: key(base_request(), api_type="azure"),
        lambda: key(base_request(), endpoint="https://other"),
        lambda: key(base_request(), kind="embedding"),
    ],
    ids=["model", "content", "role", "temperature", "extra-param", "api_type", "endpoint", "kind"],
)
def test_cache_key_differs_by_what_decides_the_answer(changed: Any) -> None:
    assert changed() != key(base_request())


def test_cache_key_ignores_stream_options() -> None:
    plain = key(base_request())
    assert key(base_request(stream=True)) == plain
    assert key(base_request(stream=True, stream_options={"include_usage": True})) == plain


def test_cache_key_does_not_mutate_request() -> None:
    request = base_request(stream=True)
    key(request)
    assert request["stream"] is True


def test_cache_key_of_non_json_param_is_invalid_request() -> None:
    with pytest.raises(InvalidRequestError, match="JSON"):
        key(base_request(seed=object()))
    with pytest.raises(InvalidRequestError):
        key(base_request(stop={"a", "b"}))
