"""Building and checking request bodies, and the cache key that identifies an answer.

Pure functions with no I/O: the sync and async paths share them, and each request is built
once, before the first attempt, so every retry sends exactly the same body.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from .exceptions import InvalidRequestError

__all__ = [
    "CHAT",
    "EMBEDDING",
    "validate_messages",
    "build_chat_request",
    "build_embedding_request",
    "cache_key",
    "is_reasoning_model",
    "adapt_for_reasoning",
]

logger = logging.getLogger("openai_utils")

CHAT = "chat"
EMBEDDING = "embedding"
"""The two kinds of call: which endpoint a request goes to, and which server or SDK client serves it."""

KEY_EXCLUDED = frozenset({"stream", "stream_options"})
"""Request fields that change how an answer is delivered, not what it is."""


def validate_messages(messages: Any) -> None:
    """Reject a conversation the API would reject, before spending a request on it."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise InvalidRequestError(
            f"messages must be a list of dicts like {{'role': 'user', 'content': '...'}}, "
            f"not {type(messages).__name__}"
        )
    if not messages:
        raise InvalidRequestError("messages is empty: give at least one message, e.g. {'role': 'user', 'content': '...'}")
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InvalidRequestError(f"messages[{index}] must be a dict with a 'role', not {type(message).__name__}")
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise InvalidRequestError(
                f"messages[{index}] has no 'role': each message needs one of 'system', 'developer', "
                f"'user', 'assistant', 'tool'"
            )
        if "content" not in message and not message.get("tool_calls"):
            raise InvalidRequestError(f"messages[{index}] (role {role!r}) has no 'content'")


def build_chat_request(messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> dict[str, Any]:
    """The body of a chat completion: the messages plus every parameter that has a value.

    A parameter whose value is None is left out rather than sent as null or zero, so the server's
    own default applies; the caller's message dicts are copied so later edits cannot leak in.
    """
    validate_messages(messages)
    request: dict[str, Any] = {"messages": [dict(m) for m in messages]}
    for name, value in params.items():
        if value is not None:
            request[name] = value
    return request


REASONING_UNSUPPORTED = ("temperature", "top_p", "frequency_penalty", "presence_penalty", "logprobs", "top_logprobs", "logit_bias")
"""Parameters reasoning models reject: sending any of them fails every request."""


def is_reasoning_model(model: str, prefixes: str) -> bool:
    """Whether `model` starts with one of the comma-separated `prefixes` (REASONING_MODELS)."""
    return model.lower().rsplit("/", 1)[-1].startswith(_prefix_tuple(prefixes))


@functools.lru_cache(maxsize=8)
def _prefix_tuple(prefixes: str) -> tuple[str, ...]:
    return tuple(p.strip().lower() for p in prefixes.split(",") if p.strip())


def adapt_for_reasoning(params: Mapping[str, Any], reasoning_effort: str | None) -> dict[str, Any]:
    """A reasoning model's parameters: the token limit as max_completion_tokens, no sampling
    parameters, and reasoning_effort when one is set. Returns a new dict; `params` is untouched."""
    adapted = dict(params)
    dropped = [name for name in REASONING_UNSUPPORTED if adapted.pop(name, None) is not None]
    if dropped:
        logger.debug("left out %s: %s does not take them", ", ".join(dropped), params.get("model"))
    limit = adapted.pop("max_tokens", None)
    if limit is not None and adapted.get("max_completion_tokens") is None:
        adapted["max_completion_tokens"] = limit
    if reasoning_effort is not None and adapted.get("reasoning_effort") is None:
        adapted["reasoning_effort"] = reasoning_effort
    return adapted


def build_embedding_request(text: str | Sequence[str], model: str) -> dict[str, Any]:
    """The body of an embeddings call, for one text or a list of them."""
    if isinstance(text, str):
        if not text:
            raise InvalidRequestError("get_embedding: text is empty; the API rejects empty input")
        return {"model": model, "input": text}
    texts = list(text)
    if not texts or not all(isinstance(t, str) and t for t in texts):
        raise InvalidRequestError("get_embedding: give a non-empty string or a non-empty list of non-empty strings")
    return {"model": model, "input": texts}


def cache_key(api_type: str, endpoint: str, kind: str, request: Mapping[str, Any]) -> str:
    """A digest of everything that decides the answer, and nothing else.

    Timeouts, retry settings and secrets never enter the request body, so they cannot enter
    the key; stream options are dropped because a streamed answer is the same answer.
    """
    body = {k: v for k, v in request.items() if k not in KEY_EXCLUDED}
    try:
        text = json.dumps(
            [api_type, endpoint, kind, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
    except TypeError as exc:
        raise InvalidRequestError(f"the request cannot be sent as JSON: {exc}") from None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
