"""Preparing a call: the public arguments turned, once, into what every attempt uses.

`prepare_chat` and `prepare_embedding` check the arguments, fill what is left as None from
`default` (read now, at call time), build the request body, and decide the cache key, the retry
policy and the timeout: a `Call`. Nothing here does I/O or knows sync from async, so both drivers
(drivers.py) run the same prepared call; what the client contributes (its default models, its
server for the cache key, its cache) comes in as arguments.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .cache import ResponseCache
from .config import default
from .exceptions import InvalidRequestError
from .request import (
    CHAT,
    EMBEDDING,
    adapt_for_reasoning,
    build_chat_request,
    build_embedding_requests,
    cache_key,
    is_reasoning_model,
    validate_arguments,
)
from .retry import RetryPolicy
from .structured import Parser, response_format_for_wire
from .tokens import count_tokens

__all__ = ["Call", "CHAT_ARGUMENTS", "chat_arguments", "prepare_chat", "prepare_embedding", "input_count"]

logger = logging.getLogger("openai_utils")


@dataclass
class Call:
    """One call, prepared once before any attempt: what to send, how to retry, where to cache."""

    kind: str
    request: dict[str, Any]
    policy: RetryPolicy
    timeout: float
    cache: ResponseCache | None
    key: str | None
    parse: Parser | None = None


CHAT_ARGUMENTS = (
    "model",
    "temperature",
    "max_tokens",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "stop",
    "timeout",
    "max_attempts",
    "waiting_time",
    "exponential_backoff_factor",
    "n",
    "echo",
    "stream",
)
"""The named parameters of send_message / asend_message, passed on to `prepare_chat` by name."""


def chat_arguments(scope: Mapping[str, Any]) -> dict[str, Any]:
    """The chat parameters among a send_message call's locals, by name."""
    return {name: scope[name] for name in CHAT_ARGUMENTS}


def retry_policy(max_attempts: int | None, waiting_time: float | None, factor: float | None) -> RetryPolicy:
    """The call's retry policy; what is None comes from `default`."""
    return RetryPolicy(
        max_attempts=max_attempts if max_attempts is not None else default["max_attempts"],
        waiting_time=waiting_time if waiting_time is not None else default["waiting_time"],
        backoff_factor=factor if factor is not None else default["exponential_backoff_factor"],
        max_waiting_time=default["max_waiting_time"],
    )


@dataclass(slots=True)
class Target:
    """What a call needs from its client: the model when it names none, and for the cache key
    the client's `api_type` and server (asked only when `cache` is on)."""

    api_type: str
    default_model: Callable[[str], str]
    endpoint: Callable[[], str]
    cache: ResponseCache | None


def prepare_chat(
    target: Target,
    messages: Sequence[Mapping[str, Any]],
    extra: Mapping[str, Any],
    *,
    model: str | None,
    temperature: float | None,
    max_tokens: int | None,
    top_p: float | None,
    frequency_penalty: float | None,
    presence_penalty: float | None,
    stop: str | list[str] | None,
    timeout: float | None,
    max_attempts: int | None,
    waiting_time: float | None,
    exponential_backoff_factor: float | None,
    n: int,
    echo: bool,
    stream: bool,
) -> Call:
    """A chat call from send_message's arguments."""
    validate_arguments(
        {
            "model": model,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "top_p": top_p,
            "frequency_penalty": frequency_penalty,
            "presence_penalty": presence_penalty,
            "timeout": timeout,
            "max_attempts": max_attempts,
            "waiting_time": waiting_time,
            "exponential_backoff_factor": exponential_backoff_factor,
            "n": n,
            "echo": echo,
            "stream": stream,
        }
    )
    if stream and (n != 1 or echo):
        raise InvalidRequestError("stream=True returns one answer's text: it cannot be combined with n > 1 or echo")
    params: dict[str, Any] = {
        "model": model or target.default_model(CHAT),
        "temperature": temperature if temperature is not None else default["temperature"],
        "max_tokens": max_tokens if max_tokens is not None else default["max_tokens"],
        "top_p": top_p if top_p is not None else default["top_p"],
        "frequency_penalty": frequency_penalty if frequency_penalty is not None else default["frequency_penalty"],
        "presence_penalty": presence_penalty if presence_penalty is not None else default["presence_penalty"],
        "stop": stop or None,
        "n": n if n != 1 else None,
        **extra,
    }
    params["response_format"], parse = response_format_for_wire(params.get("response_format"))
    if is_reasoning_model(params["model"], default["reasoning_models"]):
        params = adapt_for_reasoning(params, default["reasoning_effort"])
    if stream:
        params["stream"] = True
        params["stream_options"] = {"include_usage": True}
    request = build_chat_request(messages, params)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "sending %d message(s) to %s, about %s prompt tokens",
            len(request["messages"]),
            request["model"],
            count_tokens(request["messages"], request["model"]),
        )
    call = _prepare(
        target, CHAT, request, timeout, retry_policy(max_attempts, waiting_time, exponential_backoff_factor)
    )
    call.parse = parse
    return call


def prepare_embedding(
    target: Target, text: str | Sequence[str], model: str | None, timeout: float | None, max_attempts: int | None
) -> list[Call]:
    """One call per request the input needs: a list longer than the API takes goes in parts,
    each retried and cached on its own, so a failed long call resumes where it stopped."""
    validate_arguments({"model": model, "timeout": timeout, "max_attempts": max_attempts})
    requests = build_embedding_requests(text, model or target.default_model(EMBEDDING))
    policy = retry_policy(max_attempts, None, None)
    return [_prepare(target, EMBEDDING, request, timeout, policy) for request in requests]


def _prepare(target: Target, kind: str, request: dict[str, Any], timeout: float | None, policy: RetryPolicy) -> Call:
    cache = target.cache
    key = cache_key(target.api_type, target.endpoint(), kind, request) if cache is not None else None
    return Call(kind, request, policy, timeout if timeout is not None else default["timeout"], cache, key)


def input_count(call: Call) -> int:
    """How many vectors an embeddings request asks for: one for a string, one per text of a list."""
    texts = call.request["input"]
    return 1 if isinstance(texts, str) else len(texts)
