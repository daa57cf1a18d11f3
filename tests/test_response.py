"""Tests for openai_utils.response: what is kept of a chat answer, what is returned, embeddings."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from openai_utils import MalformedResponseError
from openai_utils.response import chat_record, chat_result, embedding_record

TOOL_CALLS = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def completion(*choices: dict[str, Any], **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-test",
        "system_fingerprint": "fp",
        "choices": list(choices),
        "usage": USAGE,
    }
    data.update(extra)
    return data


def choice(index: int, content: str | None, finish: str = "stop", **message: Any) -> dict[str, Any]:
    return {
        "index": index,
        "logprobs": None,
        "finish_reason": finish,
        "message": {"role": "assistant", "content": content, **message},
    }


# --- chat_record --------------------------------------------------------------------------------


def test_record_keeps_model_choices_finish_reason_and_usage() -> None:
    record = chat_record(completion(choice(0, "Hello", refusal=None, tool_calls=None)))
    assert record == {
        "model": "gpt-test",
        "choices": [{"message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
        "usage": USAGE,
    }


def test_record_orders_choices_by_index() -> None:
    record = chat_record(completion(choice(2, "c", "length"), choice(0, "a"), choice(1, "b")))
    assert [c["message"]["content"] for c in record["choices"]] == ["a", "b", "c"]
    assert [c["finish_reason"] for c in record["choices"]] == ["stop", "stop", "length"]


def test_record_drops_null_message_fields_and_keeps_set_ones() -> None:
    record = chat_record(
        completion(
            choice(0, None, "tool_calls", tool_calls=TOOL_CALLS, refusal=None, audio=None, annotations=[]),
            choice(1, None, "stop", refusal="I can't help with that", tool_calls=None),
        )
    )
    first, second = (c["message"] for c in record["choices"])
    assert first == {"role": "assistant", "content": None, "tool_calls": TOOL_CALLS}
    assert second == {"role": "assistant", "content": None, "refusal": "I can't help with that"}


def test_record_holds_plain_data_only() -> None:
    record = chat_record(completion(choice(0, "x")))
    assert set(record) == {"model", "choices", "usage"}
    assert set(record["choices"][0]) == {"message", "finish_reason"}


@pytest.mark.parametrize(
    "data",
    [
        {"model": "m"},
        {"model": "m", "choices": []},
        {"model": "m", "choices": None},
        {"model": "m", "choices": "nope"},
    ],
)
def test_record_without_choices_is_malformed(data: dict[str, Any]) -> None:
    with pytest.raises(MalformedResponseError, match="no choices"):
        chat_record(data)


def test_choice_without_message_is_malformed() -> None:
    with pytest.raises(MalformedResponseError, match="no message"):
        chat_record(completion({"index": 0, "finish_reason": "stop"}))


# --- chat_result --------------------------------------------------------------------------------

CONVERSATION = [{"role": "user", "content": "Hi"}]


def two_choice_record() -> dict[str, Any]:
    return chat_record(completion(choice(1, "second"), choice(0, "first")))


def test_n1_returns_the_message_dict() -> None:
    record = chat_record(completion(choice(0, "Hello")))
    assert chat_result(record, 1, False, CONVERSATION) == {"role": "assistant", "content": "Hello"}


def test_n_above_one_returns_a_list_in_order() -> None:
    result = chat_result(two_choice_record(), 2, False, CONVERSATION)
    assert result == [
        {"role": "assistant", "content": "first"},
        {"role": "assistant", "content": "second"},
    ]


def test_echo_returns_conversation_plus_reply() -> None:
    record = chat_record(completion(choice(0, "Hello")))
    result = chat_result(record, 1, True, CONVERSATION)
    assert result == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


def test_echo_with_n_above_one_appends_the_list_of_replies() -> None:
    result = chat_result(two_choice_record(), 2, True, CONVERSATION)
    assert result == [
        {"role": "user", "content": "Hi"},
        [{"role": "assistant", "content": "first"}, {"role": "assistant", "content": "second"}],
    ]


def test_result_dicts_are_fresh_copies() -> None:
    record = chat_record(completion(choice(0, "Hello")))
    saved = copy.deepcopy(record)

    result = chat_result(record, 1, False, CONVERSATION)
    assert isinstance(result, dict)
    result["content"] = "edited"
    result["extra"] = 1
    assert record == saved
    assert chat_result(record, 1, False, CONVERSATION) == {"role": "assistant", "content": "Hello"}


def test_echo_copies_the_conversation_too() -> None:
    record = chat_record(completion(choice(0, "Hello")))
    conversation = [{"role": "user", "content": "Hi"}]
    result = chat_result(record, 1, True, conversation)
    assert isinstance(result, list)
    result[0]["content"] = "edited"
    result[1]["content"] = "edited"
    assert conversation == [{"role": "user", "content": "Hi"}]
    assert record["choices"][0]["message"]["content"] == "Hello"


def test_list_result_items_are_fresh_copies() -> None:
    record = two_choice_record()
    saved = copy.deepcopy(record)
    result = chat_result(record, 2, False, CONVERSATION)
    assert isinstance(result, list)
    result[0]["content"] = "edited"
    result.append("junk")
    assert record == saved


# --- embedding_record ---------------------------------------------------------------------------


def embeddings(*items: tuple[int, list[float]]) -> dict[str, Any]:
    return {
        "object": "list",
        "model": "emb",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in items],
    }


def embedding_vectors(data: dict[str, Any], count: int) -> list[list[float]]:
    vectors: list[list[float]] = embedding_record(data, count)["vectors"]
    return vectors


def test_record_keeps_model_and_usage_for_accounting() -> None:
    data = embeddings((0, [0.5]))
    data["usage"] = {"prompt_tokens": 3, "total_tokens": 3}
    assert embedding_record(data, 1) == {
        "model": "emb",
        "vectors": [[0.5]],
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }


def test_vectors_are_ordered_by_index() -> None:
    data = embeddings((2, [0.3]), (0, [0.1, 0.1]), (1, [0.2]))
    assert embedding_vectors(data, 3) == [[0.1, 0.1], [0.2], [0.3]]


def test_vectors_are_plain_lists() -> None:
    data = {"data": [{"index": 0, "embedding": (1.0, 2.0)}]}
    vectors = embedding_vectors(data, 1)
    assert vectors == [[1.0, 2.0]]
    assert type(vectors[0]) is list


@pytest.mark.parametrize("count", [1, 3])
def test_count_mismatch_is_malformed(count: int) -> None:
    with pytest.raises(MalformedResponseError) as info:
        embedding_vectors(embeddings((0, [0.1]), (1, [0.2])), count)
    assert f"expected {count} embedding(s), got 2" in str(info.value)


def test_missing_data_is_malformed() -> None:
    with pytest.raises(MalformedResponseError, match="got none"):
        embedding_vectors({"object": "list"}, 1)


@pytest.mark.parametrize("item", [{"embedding": [0.1]}, {"index": 0}, "not a dict"])
def test_item_without_index_or_vector_is_malformed(item: Any) -> None:
    with pytest.raises(MalformedResponseError):
        embedding_vectors({"data": [item]}, 1)
