"""Turning a server's JSON answer into the plain data we cache and the replies we return.

What is cached is plain Python data (dicts, lists, strings, numbers), never SDK objects, so a
cache written today still loads after the openai package changes. What callers get back is
rebuilt from it on every call, hit or miss, so both look exactly alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .exceptions import ContentFilterError, MalformedResponseError, ResponseFormatError

__all__ = ["Reply", "chat_record", "check_record", "chat_result", "embedding_record", "filtered_categories"]

logger = logging.getLogger("openai_utils")

_MESSAGE_FIELDS = ("tool_calls", "refusal", "function_call", "audio", "annotations")


class Reply(dict[str, Any]):
    """An assistant message: a plain dict (role, content, tool_calls, refusal) you can append to
    the conversation as it is, with what is not part of a message kept as attributes.

    - `parsed`: the structured answer when a response_format asked for one (None otherwise, or
      when the model refused: see `["refusal"]`);
    - `finish_reason`: why the answer ended; "length" means it was cut off at the token limit
      (`truncated` is True then);
    - `usage`: the server's token counts for the call; `model`: the model that answered;
    - `cached`: whether it came from the cache.
    """

    parsed: Any = None
    finish_reason: str | None = None
    usage: Mapping[str, Any] | None = None
    model: str | None = None
    cached: bool = False

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


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
        entry = {"message": _plain_message(message), "finish_reason": choice.get("finish_reason")}
        if choice.get("content_filter_results"):
            entry["content_filter_results"] = choice["content_filter_results"]
        kept.append(entry)
    return {"model": data.get("model"), "choices": kept, "usage": data.get("usage")}


def _plain_message(message: Mapping[str, Any]) -> dict[str, Any]:
    plain: dict[str, Any] = {"role": message.get("role") or "assistant", "content": message.get("content")}
    for field in _MESSAGE_FIELDS:
        if message.get(field) not in (None, []):
            plain[field] = message[field]
    return plain


def filtered_categories(results: Any) -> list[str]:
    """The categories a content filter report marks as filtered (Azure's shape)."""
    if not isinstance(results, Mapping):
        return []
    return sorted(name for name, verdict in results.items() if isinstance(verdict, Mapping) and verdict.get("filtered"))


def check_record(record: dict[str, Any], parse: Callable[[str], Any] | None) -> dict[str, Any]:
    """Raise for an answer that must not be cached: filtered, or not parsable as asked."""
    for choice in record["choices"]:
        _reply(record, choice, parse, cached=False)
    return record


def chat_result(
    record: Mapping[str, Any],
    n: int,
    echo: bool,
    messages: Sequence[Mapping[str, Any]],
    parse: Callable[[str], Any] | None = None,
    cached: bool = False,
) -> Reply | list[Any]:
    """What send_message returns, rebuilt fresh from a record so callers can edit it freely.

    n == 1: the Reply. n > 1: a list of them, one per choice, in order. echo: the conversation
    sent, followed by the reply (or, with n > 1, by the list of replies). `parse` turns the
    content into the structured answer a response_format asked for.
    """
    if n > 1 and len(record["choices"]) < n:
        logger.warning("asked for %d choices, the server sent %d", n, len(record["choices"]))
    replies = [_reply(record, choice, parse, cached) for choice in record["choices"]]
    for reply in replies:
        if reply.truncated:
            logger.warning("the answer from %s was cut off at the token limit (finish_reason 'length')", reply.model)
    result: Reply | list[Any] = replies[0] if n == 1 else replies
    if echo:
        return [dict(m) for m in messages] + [result]
    return result


def _reply(
    record: Mapping[str, Any], choice: Mapping[str, Any], parse: Callable[[str], Any] | None, cached: bool
) -> Reply:
    finish_reason = choice.get("finish_reason")
    if finish_reason == "content_filter":
        results = choice.get("content_filter_results")
        categories = filtered_categories(results)
        raise ContentFilterError(
            f"the answer was withheld by the content filter ({', '.join(categories) or 'categories not given'})",
            categories=categories,
            results=results,
        )
    reply = Reply(choice["message"])
    reply.finish_reason = finish_reason
    reply.usage = record.get("usage")
    reply.model = record.get("model")
    reply.cached = cached
    if parse is not None and not reply.get("refusal") and reply.get("content") is not None:
        try:
            reply.parsed = parse(reply["content"])
        except ValueError as exc:
            cut = " It was cut off at the token limit: raise max_tokens." if finish_reason == "length" else ""
            raise ResponseFormatError(
                f"the answer does not match the requested response_format: {exc}.{cut}",
                content=reply["content"],
                finish_reason=finish_reason,
            ) from None
    return reply


def embedding_record(data: Mapping[str, Any], count: int) -> dict[str, Any]:
    """The vectors of an embeddings answer in input order (one per input), with model and usage."""
    items = data.get("data")
    if not isinstance(items, list) or len(items) != count:
        raise MalformedResponseError(
            f"expected {count} embedding(s), got {len(items) if isinstance(items, list) else 'none'}"
        )
    try:
        ordered = sorted(items, key=lambda item: item["index"])
        vectors = [list(item["embedding"]) for item in ordered]
    except (KeyError, TypeError) as exc:
        raise MalformedResponseError(f"an embedding is missing its index or vector: {exc}") from None
    return {"model": data.get("model"), "vectors": vectors, "usage": data.get("usage")}
