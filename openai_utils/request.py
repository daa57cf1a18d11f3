"""Building and checking request bodies, the cache key that identifies an answer, and the tokens
a request will count against a rate limit.

Pure functions with no I/O (but for the estimate's tiktoken encoding, loaded once): the sync and
async paths share them, and each request is built once, before the first attempt, so every
retry sends exactly the same body.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Mapping, Sequence, Set
from typing import Any

from .exceptions import InvalidRequestError
from .settings import SETTINGS, short_repr

__all__ = [
    "CHAT",
    "EMBEDDING",
    "RESPONSES",
    "validate_messages",
    "validate_arguments",
    "check_sendable",
    "build_chat_request",
    "build_embedding_request",
    "build_embedding_requests",
    "EMBEDDING_INPUTS_PER_REQUEST",
    "is_reasoning_model",
    "adapt_for_reasoning",
    "estimate_tokens",
]

logger = logging.getLogger("openai_utils")

CHAT = "chat"
EMBEDDING = "embedding"
"""The two kinds of call: which endpoint a request goes to, and which server or SDK client serves it."""
RESPONSES = "responses"
"""A chat call sent to the Responses API (api_mode.py): its own endpoint, on the server that answers chat."""

KEY_EXCLUDED = frozenset({"stream", "stream_options"})
"""Request fields that change how an answer is delivered, not what it is."""


def validate_messages(messages: Any) -> None:
    """Reject a conversation the API would reject, before spending a request on it."""
    if type(messages) is list and messages:  # the usual shape, checked at once; the rest below
        for message in messages:
            if type(message) is not dict or type(message.get("content")) is not str:
                break
            role = message.get("role")
            if type(role) is not str or not role:
                break
        else:
            return
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise InvalidRequestError(
            f"messages must be a list of dicts like {{'role': 'user', 'content': '...'}}, not {type(messages).__name__}"
        )
    if not messages:
        raise InvalidRequestError(
            "messages is empty: give at least one message, e.g. {'role': 'user', 'content': '...'}"
        )
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
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list, tuple)):
            raise InvalidRequestError(
                f"messages[{index}]['content'] is a {type(content).__name__}: give text, a list of content "
                f"parts like [{{'type': 'text', 'text': '...'}}], or None"
            )


ARGUMENT_SETTINGS = {
    s.name: s
    for s in SETTINGS
    if s.name
    in (
        "temperature",
        "max_tokens",
        "top_p",
        "frequency_penalty",
        "presence_penalty",
        "timeout",
        "max_attempts",
        "waiting_time",
        "exponential_backoff_factor",
    )
}
"""Call arguments that override a setting of the same name: one rule for a file, a forced value
and an argument, so a value refused in config.ini is not let in through a call."""

NOT_NONE = frozenset({"n", "stream", "echo"})
"""Arguments with a fixed default rather than a configured one: None is no value for them."""

MAX_CHOICES = 128
"""The most choices (`n`) one chat completion may ask for, per the API's published spec."""


def validate_arguments(arguments: Mapping[str, Any]) -> None:
    """Reject a call argument the request could not carry, naming it and what is allowed.

    Runs before anything else, so a bad value never reaches the SDK (which would fail with a bare
    ValueError or TypeError halfway through sending) and never costs a request. None means
    "the configured default" and is always accepted.
    """
    for name, value in arguments.items():
        if value is None and name not in NOT_NONE:
            continue
        problem = _argument_problem(name, value)
        if problem is not None:
            raise InvalidRequestError(f"{name}={short_repr(value)} is not valid: expected {problem}")


def _argument_problem(name: str, value: Any) -> str | None:
    if name == "model":
        return None if isinstance(value, str) else "the model's name as a str, e.g. 'gpt-4o-mini'"
    if name in ("stream", "echo"):
        return None if isinstance(value, bool) else "True or False"
    if name == "n":
        whole = isinstance(value, int) and not isinstance(value, bool)
        return None if whole and 1 <= value <= MAX_CHOICES else f"a whole number from 1 to {MAX_CHOICES}"
    setting = ARGUMENT_SETTINGS[name]
    kinds: tuple[type, ...] = (int,) if setting.kind == "int" else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        return setting.rule()
    try:
        setting.coerce(value)
    except ValueError:
        return setting.rule()
    return None


def check_sendable(request: Mapping[str, Any], names: Mapping[str, str] | None = None) -> None:
    """Reject a body that cannot go out as JSON: a set, NaN, a lone surrogate, an odd object.

    The error names the place (`messages[0]['content']`), calling a body field by the argument
    it came from (`names`, e.g. input -> text). One C-speed encode checks the usual, valid body;
    the walk that finds the culprit runs only when that fails.
    """
    try:
        json.dumps(request, allow_nan=False, ensure_ascii=False).encode("utf-8")
        return
    except (TypeError, ValueError, RecursionError) as exc:  # UnicodeEncodeError is a ValueError
        failure: Exception = exc
    for field, value in request.items():
        problem = _unsendable(value, (names or {}).get(field, field), 0)
        if problem is not None:
            raise InvalidRequestError(problem)
    raise InvalidRequestError(f"the request cannot be sent as JSON: {failure}")


SENDABLE_DEPTH = 100
"""How deep the culprit is looked for; deeper, the error names the request as a whole."""


def _unsendable(value: Any, where: str, depth: int) -> str | None:
    """What makes `value` unsendable, at `where`, or None when it is fine (or too deep to tell)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return (
                f"{where} has a lone surrogate {value[exc.start]!r} at index {exc.start}, which is not text: "
                f"give valid Unicode (clean it with s.encode('utf-8', 'replace').decode('utf-8'))"
            )
        return None
    if value is None or isinstance(value, (bool, int, float)):
        try:
            json.dumps(value, allow_nan=False)
        except ValueError:
            return (
                f"{where} is {short_repr(value)}: JSON has no NaN, infinity or integers that long; give a finite number"
            )
        return None
    if depth >= SENDABLE_DEPTH:
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if key is not None and not isinstance(key, (str, int, float, bool)):
                return f"{where} has a key of type {type(key).__name__}: JSON object keys are text"
            problem = _unsendable(key, f"{where} (a key)", depth + 1) or _unsendable(
                item, f"{where}[{key!r}]", depth + 1
            )
            if problem is not None:
                return problem
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problem = _unsendable(item, f"{where}[{index}]", depth + 1)
            if problem is not None:
                return problem
        return None
    return (
        f"{where} is a {type(value).__name__}, which cannot be sent as JSON: "
        f"use text, numbers, True/False, None, lists and dicts"
    )


def build_chat_request(
    messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any], check: bool = True
) -> dict[str, Any]:
    """The body of a chat completion: the messages plus every parameter that has a value.

    A parameter whose value is None is left out rather than sent as null or zero, so the server's
    own default applies; the caller's message dicts are copied so later edits cannot leak in.
    `check=False` leaves `check_sendable` to the caller, who runs `sendable_key_body` instead.
    """
    validate_messages(messages)
    request: dict[str, Any] = {"messages": [dict(m) for m in messages]}
    for name, value in params.items():
        if value is not None:
            request[name] = value
    if check:
        check_sendable(request)
    return request


REASONING_UNSUPPORTED = (
    "temperature",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "logprobs",
    "top_logprobs",
    "logit_bias",
)
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


EMBEDDING_INPUTS_PER_REQUEST = 2048
"""The most texts one embeddings request may carry (the `input` array's maxItems in the published
OpenAI and Azure specs); a longer list goes out as several requests."""


def build_embedding_request(text: str | Sequence[str], model: str) -> dict[str, Any]:
    """The body of an embeddings call, for one text or a list of them (of any length)."""
    if isinstance(text, str):
        if not text:
            raise InvalidRequestError("get_embedding: text is empty; the API rejects empty input")
        request: dict[str, Any] = {"model": model, "input": text}
    else:
        request = {"model": model, "input": _embedding_texts(text)}
    check_sendable(request, {"input": "text"})
    return request


def build_embedding_requests(
    text: str | Sequence[str], model: str, per_request: int = EMBEDDING_INPUTS_PER_REQUEST
) -> list[dict[str, Any]]:
    """The bodies of an embeddings call: one, or for a long list one per `per_request` texts, in
    order. The whole input is checked first, so a bad text anywhere fails before any request."""
    whole = build_embedding_request(text, model)
    texts = whole["input"]
    if isinstance(texts, str) or len(texts) <= per_request:
        return [whole]
    return [{**whole, "input": texts[start : start + per_request]} for start in range(0, len(texts), per_request)]


def _embedding_texts(text: Any) -> list[str]:
    """A list of texts from any iterable of them; a set is refused, since the vectors come back in order."""
    if text is None or isinstance(text, (bytes, bytearray, Mapping, Set)) or not isinstance(text, Iterable):
        raise InvalidRequestError(
            f"get_embedding: text is a {type(text).__name__}: give a str or a list of str (vectors come back in its order)"
        )
    texts = list(text)
    if not texts:
        raise InvalidRequestError("get_embedding: text is an empty list; give at least one non-empty string")
    for index, item in enumerate(texts):
        if not isinstance(item, str) or not item:
            raise InvalidRequestError(
                f"get_embedding: text[{index}] is {short_repr(item)} ({type(item).__name__}): every item must be a "
                f"non-empty str; the API rejects anything else"
            )
    return texts


def estimate_tokens(request: Mapping[str, Any], kind: str = CHAT) -> int:
    """Tokens a request will count against a TPM limit: its prompt plus the completion budget.

    Chat: prompt tokens (tiktoken, via `count_tokens`) plus `max_tokens` (or
    `max_completion_tokens`) times `n` when set. Embeddings: the tokens of every input. When no
    encoding loads, about four characters a token.
    """
    from .tokens import count_text_tokens, count_tokens

    model = str(request.get("model") or "")
    if kind == CHAT:
        messages = request.get("messages") or []
        prompt = count_tokens(messages, model, request.get("tools"))
        if prompt is None:
            prompt = _rough(messages) + _rough(request.get("tools") or "")
        budget = request.get("max_completion_tokens", request.get("max_tokens")) or 0
        choices = request.get("n") or 1
        return int(prompt + budget * choices)
    inputs = request.get("input")
    texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
    total = 0
    for text in texts:
        counted = count_text_tokens(text, model) if isinstance(text, str) else None
        total += counted if counted is not None else (len(text) if isinstance(text, list) else _rough(text))
    return total


def _rough(value: Any) -> int:
    return (len(str(value)) + 3) // 4
