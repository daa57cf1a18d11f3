"""Tests for openai_utils.key_encoding: the checking encoding gives cache_key's digest and check_sendable's errors."""

from __future__ import annotations

from typing import Any

import pytest

from openai_utils.exceptions import InvalidRequestError
from openai_utils.key_encoding import key_from_body, sendable_key_body
from openai_utils.request import cache_key, check_sendable


def base_request(**changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0.2}
    request.update(changes)
    return request


def key(request: dict[str, Any]) -> str:
    return cache_key("openai", "https://api", "chat", request)


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
