"""Turning a server's JSON answer into the plain data we cache and return.

What is kept is plain Python data (dicts, lists, strings, numbers), never SDK objects, so a
cache written today still loads after the openai package changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .exceptions import MalformedResponseError

__all__ = ["chat_record", "chat_result", "embedding_vectors"]

_MESSAGE_FIELDS = ("tool_calls", "refusal", "function_call", "audio", "annotations")


def chat_record(data: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a chat completion worth keeping: model, every choice, finish reasons, usage."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise MalformedResponseError(f"the chat completion has no choices: {str(data)[:200]}")
    kept = []
    for choice in sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, Mapping) else 0):
        message = choice.get("message") if isinstance(choice, Mapping) else None
        if not isinstance(message, Mapping):
            raise MalformedResponseError(f"a choice has no message: {str(choice)[:200]}")
        kept.append({"message": _plain_message(message), "finish_reason": choice.get("finish_reason")})
    return {"model": data.get("model"), "choices": kept, "usage": data.get("usage")}


def _plain_message(message: Mapping[str, Any]) -> dict[str, Any]:
    plain: dict[str, Any] = {"role": message.get("role") or "assistant", "content": message.get("content")}
    for field in _MESSAGE_FIELDS:
        if message.get(field) not in (None, []):
            plain[field] = message[field]
    return plain


def chat_result(
    record: Mapping[str, Any], n: int, echo: bool, messages: Sequence[Mapping[str, Any]]
) -> dict[str, Any] | list[Any]:
    """What send_message returns, rebuilt fresh from a record so callers can edit it freely.

    n == 1: the assistant message dict. n > 1: a list of them, one per choice, in order.
    echo: the conversation sent, followed by the reply (or, with n > 1, by the list of replies).
    """
    replies = [dict(choice["message"]) for choice in record["choices"]]
    result: dict[str, Any] | list[Any] = replies[0] if n == 1 else replies
    if echo:
        return [dict(m) for m in messages] + ([result] if n == 1 else [result])
    return result


def embedding_vectors(data: Mapping[str, Any], count: int) -> list[list[float]]:
    """The vectors of an embeddings answer in input order, checked to be one per input."""
    items = data.get("data")
    if not isinstance(items, list) or len(items) != count:
        raise MalformedResponseError(
            f"expected {count} embedding(s), got {len(items) if isinstance(items, list) else 'none'}"
        )
    try:
        ordered = sorted(items, key=lambda item: item["index"])
        return [list(item["embedding"]) for item in ordered]
    except (KeyError, TypeError) as exc:
        raise MalformedResponseError(f"an embedding is missing its index or vector: {exc}") from None
