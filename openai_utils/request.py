"""Building and checking request bodies, and the cache key that identifies an answer.

Pure functions with no I/O: the sync and async paths share them, and each request is built
once, before the first attempt, so every retry sends exactly the same body.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from .exceptions import InvalidRequestError

__all__ = ["validate_messages", "build_chat_request", "build_embedding_request", "cache_key"]

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
