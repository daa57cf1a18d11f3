"""The fake server's Responses API: `POST /responses`, plain and streamed, and the refusals a chat
request for a Responses-only model gets.

Hooked into tests/fake_server.py by a few lines: its router knows the path, its chat handler asks
`chat_refusal` first, and `answer` serves the endpoint. Answers follow the published shapes (the
`response` object, its `output` items, and the event stream with its real event names:
response.created, response.in_progress, response.output_item.added, response.content_part.added,
response.output_text.delta, ..., response.completed), with the fake's usual habits: the text echoes
the last user message, `max_output_tokens` cuts it in words (status "incomplete"), the user text
`__tool__` asks for a function call, `__refuse__` for a refusal.

`FakeOpenAIServer.responses_only` maps a model to the refusal its chat requests get: "404"
(OpenAI's: the model "is only supported in v1/responses"), "400" (a gateway's, with code
`unsupported_api_for_model`) or "azure" (Azure's 400 `OperationNotSupported`). The cached and reasoning tokens `FakeOpenAIServer.usage_details`
gives in chat's shape are reported in the Responses shape, the reasoning ones counted in
`output_tokens` as the Responses API counts them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fake_server import FakeOpenAIServer, Fault, _Handler

REFUSE_TRIGGER = "__refuse__"
REFUSAL_TEXT = "I can't help with that."
REFUSALS = {
    "404": (
        404,
        "This model is only supported in v1/responses and not in v1/chat/completions.",
        "invalid_request_error",
        None,
    ),
    "400": (
        400,
        "The requested model does not support the chat completions API; use the Responses API.",
        "invalid_request_error",
        "unsupported_api_for_model",
    ),
    "azure": (
        400,
        "The chatCompletion operation does not work with the specified model, my-codex. Please choose "
        "different model and try again.",
        "invalid_request_error",
        "OperationNotSupported",
    ),
}


def chat_refusal(fake: FakeOpenAIServer, model: str) -> tuple[int, dict[str, Any]] | None:
    """The refusal a chat request for `model` gets, or None when the model takes chat."""
    from tests.fake_server import error_body

    form = fake.responses_only.get(model)
    if form is None:
        return None
    status, message, kind, code = REFUSALS[form]
    return status, error_body(status, message, type=kind, code=code)


def as_chat_body(body: dict[str, Any]) -> dict[str, Any]:
    """The Responses request as a chat body, so the fake's reply functions read it unchanged."""
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"role": "system", "content": body["instructions"]})
    given = body.get("input")
    if isinstance(given, str):
        messages.append({"role": "user", "content": given})
    for item in given if isinstance(given, list) else ():
        if isinstance(item, dict) and "role" in item and item.get("type", "message") == "message":
            messages.append({"role": item["role"], "content": item.get("content")})
    return {**body, "messages": messages}


def answer(
    fake: FakeOpenAIServer,
    h: _Handler,
    n: int,
    body: Any,
    deployment: str | None,
    headers: dict[str, str],
    fault: Fault | None,
) -> None:
    """Serve one `POST /responses`."""
    from tests.fake_server import _last_user_text, _truncate_words, _word_count, _word_pieces, error_body

    if not isinstance(body, dict) or "input" not in body:
        h.send_json(
            400, error_body(400, "Missing required parameter: 'input'.", code="missing_required_parameter"), headers
        )
        return
    chat = as_chat_body(body)
    model = body.get("model") or deployment or "gpt-4o-mini"
    user_text = _last_user_text(chat)
    limit = body.get("max_output_tokens")
    status, reason = "completed", None
    item: dict[str, Any]
    if user_text == "__tool__":
        from tests.fake_server import TOOL_ARGUMENTS, TOOL_CALL_ID, TOOL_NAME

        item = {
            "type": "function_call",
            "id": f"fc_{n}",
            "call_id": TOOL_CALL_ID,
            "name": TOOL_NAME,
            "arguments": TOOL_ARGUMENTS,
            "status": "completed",
        }
        output_words = _word_count(TOOL_ARGUMENTS)
    else:
        if user_text == REFUSE_TRIGGER:
            part: dict[str, Any] = {"type": "refusal", "refusal": REFUSAL_TEXT}
            output_words = _word_count(REFUSAL_TEXT)
        else:
            text = fake.reply(chat)
            if isinstance(limit, int) and _word_count(text) > limit:
                text, status, reason = _truncate_words(text, limit), "incomplete", "max_output_tokens"
            part = {"type": "output_text", "text": text, "annotations": []}
            output_words = _word_count(text)
        item = {"type": "message", "id": f"msg_{n}", "status": "completed", "role": "assistant", "content": [part]}
    input_words = sum(_word_count(_text(m.get("content"))) for m in chat["messages"])
    response = _response(n, model, status, reason, [item], _usage(fake, input_words, output_words))
    if body.get("stream") is not True:
        h.send_json(200, response, headers)
        return
    drop_after = fault.after_chunks if fault is not None and fault.kind == "stream_drop" else None
    _stream(h, response, item, _word_pieces, headers, drop_after)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") for p in content or () if isinstance(p, dict))


def _usage(fake: FakeOpenAIServer, input_words: int, output_words: int) -> dict[str, Any]:
    cached = (fake.usage_details.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    reasoning = (fake.usage_details.get("completion_tokens_details") or {}).get("reasoning_tokens", 0)
    return {
        "input_tokens": input_words,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output_words + reasoning,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_words + output_words + reasoning,
    }


def _response(
    n: int, model: str, status: str, reason: str | None, output: list[dict[str, Any]], usage: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "id": f"resp_{n}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": {"reason": reason} if reason else None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tools": [],
        "usage": usage,
    }


def _stream(
    h: _Handler,
    response: dict[str, Any],
    item: dict[str, Any],
    pieces: Any,
    headers: dict[str, str],
    drop_after: int | None,
) -> None:
    """The event stream of `response`, whose one output item is `item`: text (or arguments) in
    word pieces; `drop_after` cuts the connection after that many delta events."""
    from tests.fake_server import TOOL_ARGUMENT_PIECES, _StreamDropped

    sequence = 0

    def event(kind: str, **fields: Any) -> None:
        nonlocal sequence
        h.send_chunk(
            f"event: {kind}\ndata: {_json({'type': kind, 'sequence_number': sequence, **fields})}\n\n".encode()
        )
        sequence += 1

    sent = 0

    def delta(kind: str, **fields: Any) -> None:
        nonlocal sent
        if drop_after is not None and sent >= drop_after:
            raise _StreamDropped()
        event(kind, **fields)
        sent += 1

    started = {**response, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    h.start_stream(headers)
    event("response.created", response=started)
    event("response.in_progress", response=started)
    if item["type"] == "function_call":
        event("response.output_item.added", output_index=0, item={**item, "arguments": "", "status": "in_progress"})
        for piece in TOOL_ARGUMENT_PIECES:
            delta("response.function_call_arguments.delta", item_id=item["id"], output_index=0, delta=piece)
        event("response.function_call_arguments.done", item_id=item["id"], output_index=0, arguments=item["arguments"])
    else:
        part = item["content"][0]
        event("response.output_item.added", output_index=0, item={**item, "content": [], "status": "in_progress"})
        where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        if part["type"] == "refusal":
            event("response.content_part.added", **where, part={"type": "refusal", "refusal": ""})
            delta("response.refusal.delta", **where, delta=part["refusal"])
            event("response.refusal.done", **where, refusal=part["refusal"])
        else:
            event("response.content_part.added", **where, part={"type": "output_text", "text": "", "annotations": []})
            for piece in pieces(part["text"]):
                delta("response.output_text.delta", **where, delta=piece, logprobs=[])
            event("response.output_text.done", **where, text=part["text"], logprobs=[])
        event("response.content_part.done", **where, part=part)
    event("response.output_item.done", output_index=0, item=item)
    if drop_after is not None:
        raise _StreamDropped()
    event("response.incomplete" if response["status"] == "incomplete" else "response.completed", response=response)
    h.end_stream()


def _json(value: Any) -> str:
    import json

    return json.dumps(value)
