"""Preparing a call: the public arguments turned, once, into what every attempt uses.

`prepare_chat` and `prepare_embedding` check the arguments, fill what is left as None from
`default` (read now, at call time), build the request body, and decide the cache key, the retry
policy and the timeout: a `Call`. Nothing here does I/O or knows sync from async, so both drivers
(drivers.py) run the same prepared call; what the client contributes (its default models, its
server for the cache key, its cache) comes in as arguments.
"""

from __future__ import annotations

import functools
import logging
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .cache import ResponseCache
from .config import default
from .exceptions import InvalidRequestError
from .key_encoding import cache_key, key_from_body, sendable_key_body
from .request import (
    CHAT,
    EMBEDDING,
    adapt_for_reasoning,
    build_chat_request,
    build_embedding_requests,
    is_reasoning_model,
    validate_arguments,
)
from .retry import RetryPolicy
from .structured import Parser, response_format_for_wire
from .tokens import count_tokens

if TYPE_CHECKING:
    from .cache_store import StoreCache

__all__ = ["Call", "CHAT_ARGUMENTS", "prepare_chat", "prepare_embedding", "input_count"]

logger = logging.getLogger("openai_utils")


class Call:
    """One call, prepared once before any attempt: what to send, how to retry, where to cache.

    A plain slotted class (as is `Target`): one is made per call, and a dataclass would load
    dataclasses at import for no gain."""

    __slots__ = ("cache", "key", "kind", "parse", "policy", "request", "timeout")

    def __init__(
        self,
        kind: str,
        request: dict[str, Any],
        policy: RetryPolicy,
        timeout: float,
        cache: ResponseCache | StoreCache | None,
        key: str | None,
        parse: Parser | None = None,
    ) -> None:
        self.kind = kind
        self.request = request
        self.policy = policy
        self.timeout = timeout
        self.cache = cache
        self.key = key
        self.parse = parse


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
"""The named parameters of send_message / asend_message, which `prepare_chat` reads by name."""

_chat_arguments = operator.itemgetter(*CHAT_ARGUMENTS)


def retry_policy(max_attempts: int | None, waiting_time: float | None, factor: float | None) -> RetryPolicy:
    """The call's retry policy; what is None comes from `default`."""
    values = default.current()
    return _policy(
        max_attempts if max_attempts is not None else values["max_attempts"],
        waiting_time if waiting_time is not None else values["waiting_time"],
        factor if factor is not None else values["exponential_backoff_factor"],
        values["max_waiting_time"],
    )


@functools.lru_cache(maxsize=64)
def _policy(max_attempts: int, waiting_time: float, factor: float, max_waiting_time: float) -> RetryPolicy:
    """A policy is frozen, so calls with the same values share one rather than build it each time."""
    return RetryPolicy(max_attempts, waiting_time, factor, max_waiting_time)


class Target:
    """What a call needs from its client: the model when it names none, and for the cache key
    the client's `api_type` and server (asked only when `cache` is on)."""

    __slots__ = ("api_type", "cache", "default_model", "endpoint")

    def __init__(
        self,
        api_type: str,
        default_model: Callable[[str], str],
        endpoint: Callable[[], str],
        cache: ResponseCache | StoreCache | None,
    ) -> None:
        self.api_type = api_type
        self.default_model = default_model
        self.endpoint = endpoint
        self.cache = cache


def prepare_chat(
    target: Target,
    messages: Sequence[Mapping[str, Any]],
    extra: Mapping[str, Any],
    arguments: Mapping[str, Any],
) -> Call:
    """A chat call from send_message's arguments: `arguments` holds each of CHAT_ARGUMENTS by
    name (send_message passes its locals(); one lookup each rather than a dict rebuilt per call)."""
    (
        model,
        temperature,
        max_tokens,
        top_p,
        frequency_penalty,
        presence_penalty,
        stop,
        timeout,
        max_attempts,
        waiting_time,
        exponential_backoff_factor,
        n,
        echo,
        stream,
    ) = _chat_arguments(arguments)
    usual = (  # every argument but the model left to `default`: nothing to check
        (model is None or type(model) is str)
        and temperature is None
        and max_tokens is None
        and top_p is None
        and frequency_penalty is None
        and presence_penalty is None
        and timeout is None
        and max_attempts is None
        and waiting_time is None
        and exponential_backoff_factor is None
        and type(n) is int
        and n == 1
        and echo is False
        and stream is False
    )
    if not usual:
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
    name = model or target.default_model(CHAT)
    if usual and stop is None and not extra:  # what depends on `default` alone, kept per version
        params, policy, timeout = _usual_parts(name)
        parse = None
    else:
        sampling = (temperature, max_tokens, top_p, frequency_penalty, presence_penalty)
        params, parse = _params(extra, name, sampling, stop, n, stream)
        policy = retry_policy(max_attempts, waiting_time, exponential_backoff_factor)
    # with the cache on, the encoding that checks the body is the one its key hashes
    request = build_chat_request(messages, params, check=target.cache is None)
    key_body = None if target.cache is None else sendable_key_body(request)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "sending %d message(s) to %s, about %s prompt tokens",
            len(request["messages"]),
            request["model"],
            count_tokens(request["messages"], request["model"]),
        )
    call = _prepare(target, CHAT, request, timeout, policy, key_body)
    call.parse = parse
    return call


SAMPLING = ("temperature", "max_tokens", "top_p", "frequency_penalty", "presence_penalty")
"""The sampling arguments a call takes from `default` when it leaves them as None."""


def _params(
    extra: Mapping[str, Any], model: str, sampling: Sequence[Any], stop: str | list[str] | None, n: int, stream: bool
) -> tuple[dict[str, Any], Parser | None]:
    """The request's parameters (all but the messages), with each of `sampling` (in the order of
    SAMPLING) that is None filled from `default`, and how to parse the answer."""
    values = default.current()  # one dict for the whole call, rebuilt only when a value changes
    params: dict[str, Any] = {"model": model}
    for name, value in zip(SAMPLING, sampling, strict=True):
        params[name] = value if value is not None else values[name]
    params.update({"stop": stop or None, "n": n if n != 1 else None, **extra})
    params["response_format"], parse = response_format_for_wire(params.get("response_format"))
    if is_reasoning_model(params["model"], values["reasoning_models"]):
        params = adapt_for_reasoning(params, values["reasoning_effort"])
    if stream:
        params["stream"] = True
        params["stream_options"] = {"include_usage": True}
    return params, parse


def _usual_parts(model: str) -> tuple[dict[str, Any], RetryPolicy, float]:
    """The parameters, retry policy and timeout of a call that sets nothing but its messages and
    perhaps its model: worked out once per model and version of `default` rather than per call
    (a changed value makes a new version, so the very next call sees it). The parameters are
    only read: `build_chat_request` copies them into each request."""
    by_model = default.memo("usual chat parts by model")
    parts: tuple[dict[str, Any], RetryPolicy, float] | None = by_model.get(model)
    if parts is None:
        if len(by_model) >= 64:
            by_model.clear()
        every = _params({}, model, [None] * len(SAMPLING), None, 1, False)[0]
        params = {name: value for name, value in every.items() if value is not None}  # as the request has them
        parts = by_model[model] = (params, retry_policy(None, None, None), default.current()["timeout"])
    return parts


def prepare_embedding(
    target: Target, text: str | Sequence[str], model: str | None, timeout: float | None, max_attempts: int | None
) -> list[Call]:
    """One call per request the input needs: a list longer than the API takes goes in parts,
    each retried and cached on its own, so a failed long call resumes where it stopped."""
    validate_arguments({"model": model, "timeout": timeout, "max_attempts": max_attempts})
    requests = build_embedding_requests(text, model or target.default_model(EMBEDDING))
    policy = retry_policy(max_attempts, None, None)
    return [_prepare(target, EMBEDDING, request, timeout, policy) for request in requests]


def _prepare(
    target: Target,
    kind: str,
    request: dict[str, Any],
    timeout: float | None,
    policy: RetryPolicy,
    key_body: bytes | None = None,
) -> Call:
    """The call; `key_body` is the request's `sendable_key_body` when it was already encoded."""
    cache = target.cache
    key = None
    if cache is not None:
        endpoint = target.endpoint()
        if key_body is not None:
            key = key_from_body(target.api_type, endpoint, kind, key_body)
        else:
            key = cache_key(target.api_type, endpoint, kind, request)
    return Call(kind, request, policy, timeout if timeout is not None else default["timeout"], cache, key)


def input_count(call: Call) -> int:
    """How many vectors an embeddings request asks for: one for a string, one per text of a list."""
    texts = call.request["input"]
    return 1 if isinstance(texts, str) else len(texts)
