"""Tests for openai_utils.key_encoding: the checking encoding gives cache_key's digest and check_sendable's errors."""

from __future__ import annotations

from typing import Any

import pytest

from openai_utils.exceptions import InvalidRequestError
from openai_utils.key_encoding import cache_key, key_from_body, sendable_key_body
from openai_utils.request import check_sendable


def base_request(**changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0.2}
    request.update(changes)
    return request


def key(request: dict[str, Any], api_type: str = "openai", endpoint: str = "https://api", kind: str = "chat") -> str:
    return cache_key(api_type, endpoint, kind, request)


@pytest.mark.parametrize(
    "request_",
    [
        base_request(),
        base_request(stream=True, stream_options={"include_usage": True}),
        base_request(messages=[{"role": "user", "content": 'héllo ✓ \u2028 "q"'}], stop=["\n"], seed=3),
    ],
)
def test_the_key_of_the_checking_encoding_is_the_cache_key(request_: dict[str, Any]) -> None:
    body = sendable_key_body(request_)
    assert body is not None
    assert key_from_body("openai", "https://api", "chat", body) == key(request_)


@pytest.mark.parametrize(
    "request_",
    [
        base_request(temperature=float("nan")),
        base_request(messages=[{"role": "user", "content": "\ud800"}]),
        base_request(seed=object()),
        base_request(stream_options={"x": float("inf")}),
    ],
)
def test_the_checking_encoding_raises_what_check_sendable_raises(request_: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError) as expected:
        check_sendable(request_)
    with pytest.raises(InvalidRequestError) as got:
        sendable_key_body(request_)
    assert str(got.value) == str(expected.value)


def test_a_sendable_body_with_no_canonical_encoding_is_keyed_by_cache_key() -> None:
    request = base_request(logit_bias={1: 2, "a": 3})  # keys of mixed types cannot be sorted
    assert sendable_key_body(request) is None
    with pytest.raises(InvalidRequestError, match="JSON"):
        key(request)


# --- cache_key ----------------------------------------------------------------------------------


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
