"""The Responses API spoken through the chat shape: a chat request in, a chat completion out.

Everything above the backend (the cache and its keys, retries, rate limits, structured parsing,
the usage counts, streaming) works on chat-shaped requests and answers. A model that speaks only
the Responses API (api_mode.py decides which) gets its request translated here, just before it is
sent, and its answer translated back, just after: `to_responses` turns the chat request into a
`POST /responses` body, `from_responses` turns the answer into a chat completion, and
`ChunkTranslator` turns the Responses event stream into chat completion chunks, so
streaming.StreamAssembler assembles it as it assembles any other stream.

A chat parameter the Responses API has no place for (stop, n > 1, penalties, seed, logit_bias,
logprobs, ...) is refused with an InvalidRequestError naming it, rather than dropped: the answer
would not be the one asked for. Parameters this module does not know pass through unchanged, so
a Responses-only one (`include`, `truncation`, ...) can be given to send_message as any other.
Pure functions with no I/O, shared by the sync and async paths.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from .exceptions import InvalidRequestError, MalformedResponseError, ServerError

logger = logging.getLogger("openai_utils")
_said_names = False
"""Whether the WARNING that message names are dropped was given (once a process is enough)."""

__all__ = ["to_responses", "from_responses", "ChunkTranslator", "chat_usage"]

NOT_IN_RESPONSES = {
    "stop": "it has no stop sequences",
    "frequency_penalty": "it has no frequency penalty",
    "presence_penalty": "it has no presence penalty",
    "logit_bias": "it has no logit_bias",
    "seed": "it has no seed",
    "logprobs": 'ask for include=["message.output_text.logprobs"] instead',
    "functions": "give tools=[...] instead of the legacy functions",
    "function_call": "give tool_choice instead of the legacy function_call",
    "modalities": "it answers text here",
    "audio": "it answers text here",
    "prediction": "it has no predicted outputs",
    "web_search_options": 'give tools=[{"type": "web_search"}] instead',
    "background": "send_message waits for the answer, which a background response is not",
}
"""Chat parameters with no counterpart in the Responses API, and what to do instead."""

DELIVERY_ONLY = ("messages", "max_tokens", "max_completion_tokens", "reasoning_effort", "response_format", "verbosity")
"""Chat fields translated one by one below rather than passed through."""

UNFINISHED = ("queued", "in_progress", "cancelled")
"""Statuses of a response that has no whole answer."""

FINISH_BY_INCOMPLETE_REASON = {"max_output_tokens": "length", "content_filter": "content_filter"}
"""An incomplete response's reason, as the chat finish_reason that means the same."""


# -- the request -----------------------------------------------------------------------------


def to_responses(request: Mapping[str, Any]) -> dict[str, Any]:
    """The `POST /responses` body that asks what the chat `request` asks.

    The first message, when it is a system (or developer) message of plain text, becomes
    `instructions`; every other message becomes an input item in order. `store` is false unless
    the request says otherwise: a chat completion is not kept by the server either.
    """
    model = request.get("model")
    for name, why in NOT_IN_RESPONSES.items():
        if request.get(name) is not None and request.get(name) is not False:  # seed=0 is a seed
            raise InvalidRequestError(
                f"{name} cannot be sent to {model}: it is answered through the Responses API, and {why}. "
                "Leave it out (or set API_MODE = chat if the model takes chat completions)"
            )
    if request.get("n") not in (None, 1):
        raise InvalidRequestError(f"n={request['n']} cannot be sent to {model}: the Responses API gives one answer")
    body: dict[str, Any] = {"model": model}
    messages = list(request.get("messages") or ())
    if messages and messages[0].get("role") in ("system", "developer") and isinstance(messages[0].get("content"), str):
        body["instructions"] = messages.pop(0)["content"]
    body["input"] = [item for message in messages for item in _input_items(message)]
    limit = request.get("max_completion_tokens", request.get("max_tokens"))
    if limit is not None:
        body["max_output_tokens"] = limit
    if request.get("reasoning_effort") is not None:
        body["reasoning"] = {**(request.get("reasoning") or {}), "effort": request["reasoning_effort"]}
    text = dict(request.get("text") or {})
    text_format = _text_format(request.get("response_format"))
    if text_format is not None:
        text["format"] = text_format
    if request.get("verbosity") is not None:
        text["verbosity"] = request["verbosity"]
    if text:
        body["text"] = text
    for name, value in request.items():
        if name in body or name in DELIVERY_ONLY or name in ("n", "stream_options") or value is None:
            continue
        if name == "tools":
            value = [_tool(tool) for tool in value]
        elif name == "tool_choice":
            value = _tool_choice(value)
        elif name in NOT_IN_RESPONSES:
            continue  # False: the same as leaving it out
        body[name] = value
    body.setdefault("store", False)
    return body


def _input_items(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One chat message as Responses input items: a message, a tool result, or an assistant
    turn that is its text (if any) followed by one function_call item per tool call."""
    role = message.get("role")
    if role == "tool":
        return [
            {
                "type": "function_call_output",
                "call_id": message.get("tool_call_id"),
                "output": _plain_text(message.get("content")),
            }
        ]
    if role not in ("user", "assistant", "system", "developer"):
        raise InvalidRequestError(
            f"a message with role {role!r} cannot be sent through the Responses API: use user, assistant, "
            "system, developer or tool"
        )
    if message.get("name"):
        _warn_name_dropped()
    items: list[dict[str, Any]] = []
    content = message.get("content")
    if content is None and role == "assistant":
        content = message.get("refusal")
    if content not in (None, "", []):
        items.append({"type": "message", "role": role, "content": _content(content, role)})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        items.append(
            {
                "type": "function_call",
                "call_id": call.get("id"),
                "name": function.get("name"),
                "arguments": function.get("arguments") or "",
            }
        )
    return items


def _warn_name_dropped() -> None:
    """A message's `name` (who speaks, in chat) has no place in a Responses input item: say once
    that it is left out, since the answer may differ from chat's for a conversation that relies on it."""
    global _said_names
    if not _said_names:
        _said_names = True
        logger.warning(
            "a message's `name` cannot be sent through the Responses API and is left out; put the speaker's "
            "name in the content, or set API_MODE = chat for models that take chat completions"
        )


def _content(content: Any, role: str) -> Any:
    """Message content: text stays text; each part of a list becomes its Responses form. An
    assistant turn's parts (text, refusal) are joined into its text: as an input item it is what
    the model said, and a list would have to carry the ids of a stored output message."""
    if isinstance(content, str):
        return content
    if role == "assistant":
        return "".join(
            str(part.get("text") or part.get("refusal") or "") for part in content if isinstance(part, Mapping)
        )
    return [_part(part) for part in content]


def _part(part: Any) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, Mapping) else None
    if kind == "text":
        return {"type": "input_text", "text": part.get("text", "")}
    if kind == "image_url":
        image = part.get("image_url")
        url, detail = (image.get("url"), image.get("detail")) if isinstance(image, Mapping) else (image, None)
        return {"type": "input_image", "image_url": url, "detail": detail or "auto"}
    if kind == "file":
        file = dict(part.get("file") or {})
        return {"type": "input_file", **file}
    raise InvalidRequestError(
        f"a content part of type {kind!r} cannot be sent through the Responses API: use text, image_url or file parts"
    )


def _plain_text(content: Any) -> str:
    """A tool result's content as the text the Responses API takes."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, Mapping))


def _text_format(response_format: Any) -> dict[str, Any] | None:
    """response_format as the Responses `text.format`: the json_schema's fields move up a level."""
    if not isinstance(response_format, Mapping):
        return None
    if response_format.get("type") == "json_schema":
        schema = dict(response_format.get("json_schema") or {})
        return {"type": "json_schema", **schema}
    return dict(response_format)


def _tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    """A chat tool as a Responses one: a function's fields move up a level; strict stays off
    unless asked for (it is on by default in the Responses API, off in chat)."""
    if tool.get("type") != "function" or not isinstance(tool.get("function"), Mapping):
        return dict(tool)  # a built-in tool (web_search, ...) is already in the Responses form
    function = tool["function"]
    converted = {"type": "function", **function}
    converted["strict"] = bool(function.get("strict", False))
    converted.setdefault("parameters", {"type": "object", "properties": {}})
    return converted


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, Mapping) and choice.get("type") == "function" and isinstance(choice.get("function"), Mapping):
        return {"type": "function", "name": choice["function"].get("name")}
    return choice


# -- the answer ------------------------------------------------------------------------------


def from_responses(data: Mapping[str, Any]) -> dict[str, Any]:
    """The chat completion that says what the Responses answer `data` says: one choice whose
    message has the output text, refusal and tool calls, its finish_reason, and chat usage."""
    if data.get("status") == "failed" or data.get("error"):
        raise _failed(data)
    if data.get("status") in UNFINISHED:
        raise MalformedResponseError(f"the response is {data['status']}, not finished: {str(data)[:200]}")
    text: list[str] = []
    annotations: list[dict[str, Any]] = []
    refusal: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for item in data.get("output") or ():
        if not isinstance(item, Mapping):
            continue
        if item.get("type") == "message":
            for part in item.get("content") or ():
                if part.get("type") == "output_text":
                    text.append(part.get("text") or "")
                    annotations.extend(_annotation(note) for note in part.get("annotations") or ())
                elif part.get("type") == "refusal":
                    refusal.append(part.get("refusal") or "")
        elif item.get("type") == "function_call":
            tool_calls.append(_tool_call(item))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not tool_calls else None}
    if refusal:
        message["refusal"] = "".join(refusal)
        if not text:
            message["content"] = None
    if tool_calls:
        message["tool_calls"] = tool_calls
    if annotations:
        message["annotations"] = annotations
    return {
        "id": data.get("id"),
        "object": "chat.completion",
        "model": data.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(data, bool(tool_calls))}],
        "usage": chat_usage(data.get("usage")),
    }


def _annotation(note: Mapping[str, Any]) -> dict[str, Any]:
    """A Responses annotation as chat has it: a URL citation's fields under `url_citation`
    (their offsets count in the joined text only when the answer has one text part); others as they are."""
    if note.get("type") != "url_citation":
        return dict(note)
    return {"type": "url_citation", "url_citation": {k: v for k, v in note.items() if k != "type"}}


def _tool_call(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": item.get("call_id"),
        "type": "function",
        "function": {"name": item.get("name") or "", "arguments": item.get("arguments") or ""},
    }


def finish_reason(data: Mapping[str, Any], called_tools: bool) -> str:
    """Why the answer ended, in chat's words: "length" when max_output_tokens cut it off."""
    if data.get("status") == "incomplete":
        reason = (data.get("incomplete_details") or {}).get("reason")
        return FINISH_BY_INCOMPLETE_REASON.get(str(reason), "length")
    return "tool_calls" if called_tools else "stop"


def chat_usage(usage: Any) -> dict[str, Any] | None:
    """Responses usage in chat's names, the cached and reasoning token details included, so the
    cost counts and the cache see one shape whichever API answered."""
    if not isinstance(usage, Mapping):
        return None
    prompt = usage.get("input_tokens") or 0
    completion = usage.get("output_tokens") or 0
    converted: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": usage.get("total_tokens") or prompt + completion,
    }
    cached = (usage.get("input_tokens_details") or {}).get("cached_tokens")
    if cached is not None:
        converted["prompt_tokens_details"] = {"cached_tokens": cached}
    reasoning = (usage.get("output_tokens_details") or {}).get("reasoning_tokens")
    if reasoning is not None:
        converted["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return converted


def _failed(data: Mapping[str, Any]) -> ServerError:
    """A response the server could not complete: retried, as a chat 5xx is."""
    error: Mapping[str, Any] = data["error"] if isinstance(data.get("error"), Mapping) else {}
    return ServerError(
        f"the response failed: {error.get('message') or 'no reason given'}",
        code=error.get("code"),
        body=dict(data),
    )


# -- the event stream ------------------------------------------------------------------------


class ChunkTranslator:
    """Turns Responses stream events, one at a time, into chat completion chunks (or None for
    an event that carries nothing a chat stream would), so the stream is read, cut, checked and
    cached exactly as a chat stream is."""

    def __init__(self) -> None:
        self.model: str | None = None
        self._tool_index: dict[Any, int] = {}

    def chunk(self, event: Mapping[str, Any]) -> dict[str, Any] | None:
        kind = event.get("type")
        response = event.get("response")
        if isinstance(response, Mapping) and response.get("model"):
            self.model = response["model"]
        if kind == "response.output_text.delta":
            return self._delta({"content": event.get("delta") or ""})
        if kind == "response.refusal.delta":
            return self._delta({"refusal": event.get("delta") or ""})
        if kind == "response.output_item.added" and (event.get("item") or {}).get("type") == "function_call":
            item = event["item"]
            index = self._tool_index.setdefault(event.get("output_index"), len(self._tool_index))
            start = {"index": index, "id": item.get("call_id"), "type": "function"}
            start["function"] = {"name": item.get("name") or "", "arguments": item.get("arguments") or ""}
            return self._delta({"tool_calls": [start]})
        if kind == "response.function_call_arguments.delta":
            index = self._tool_index.setdefault(event.get("output_index"), len(self._tool_index))
            return self._delta({"tool_calls": [{"index": index, "function": {"arguments": event.get("delta") or ""}}]})
        if kind in ("response.completed", "response.incomplete") and isinstance(response, Mapping):
            finish = finish_reason(response, bool(self._tool_index))
            end = self._chunk([{"index": 0, "delta": {}, "finish_reason": finish}])
            end["usage"] = chat_usage(response.get("usage"))
            return end
        if kind == "response.failed" and isinstance(response, Mapping):
            raise _failed(response)
        if kind == "error":
            raise ServerError(f"the response stream failed: {event.get('message')}", code=event.get("code"))
        return None

    def _delta(self, delta: dict[str, Any]) -> dict[str, Any]:
        return self._chunk([{"index": 0, "delta": delta, "finish_reason": None}])

    def _chunk(self, choices: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return {"object": "chat.completion.chunk", "model": self.model, "choices": list(choices)}
