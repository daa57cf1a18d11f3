"""Which API answers a chat call: chat completions, or the Responses API for the models that
speak only that.

API_MODE says: `chat` sends every call to /chat/completions, `responses` every call to
/responses, and `auto` (the default) sends to /responses the models RESPONSES_MODELS names and
the ones a server has refused on /chat/completions, and every other model to /chat/completions.
A refusal is OpenAI's 404 saying the model "is only supported in v1/responses", a gateway's
400 with code `unsupported_api_for_model`, or Azure's 400 `OperationNotSupported` saying "the
chatCompletion operation does not work with the specified model": on auto it is not an error and costs no attempt; the
same attempt is sent again to /responses at once, and that model (on that server) goes straight
there from then on, for the rest of the process.

Only the raw send changes (the client's `_raw_model_call` and `_raw_stream_call` and their async
twins call `post`, `open_stream`, ...): the request is built, cached, rate-limited and retried in
its chat shape, and the answer comes back in it (responses_wire.py), so one conversation to one
model is one cache entry whichever API answered it.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .config import default
from .exceptions import APIError, ConfigError, InvalidRequestError
from .flow import Flow, Step, adrive, drive
from .request import CHAT, RESPONSES
from .responses_wire import ChunkTranslator, from_responses, to_responses

if TYPE_CHECKING:
    from .backend import Backend

__all__ = [
    "MODES",
    "uses_responses",
    "listed_pattern",
    "connect_kind",
    "is_refusal",
    "post",
    "apost",
    "open_stream",
    "aopen_stream",
    "forget",
]

logger = logging.getLogger("openai_utils")

T = TypeVar("T")

MODES = ("chat", "responses", "auto")
"""The values API_MODE takes."""

REFUSAL_MESSAGE = "only supported in v1/responses"
REFUSAL_CODE = "unsupported_api_for_model"
AZURE_REFUSAL_CODE = "OperationNotSupported"
AZURE_REFUSAL_MESSAGE = "chatcompletion operation does not work with the specified model"
"""Azure's form: a 400 whose code is OperationNotSupported, saying "The chatCompletion operation
does not work with the specified model" (a deployment of a Responses-only model)."""

_lock = threading.Lock()
_learned: set[tuple[str, str]] = set()
"""(server, model) pairs refused on /chat/completions in this process: sent to /responses."""


def _mode() -> str:
    mode = str(default["api_mode"]).strip().lower()
    if mode not in MODES:
        raise ConfigError(f"API_MODE is {default['api_mode']!r}: use one of {', '.join(MODES)}")
    return mode


def uses_responses(backend: Backend, model: Any) -> bool:
    """Whether a chat call to `model` goes to /responses now."""
    mode = _mode()
    if mode != "auto":
        return mode == "responses"
    name = str(model or "")
    listed = default["responses_models"]
    if listed and listed_pattern(listed).match(name.lower().rsplit("/", 1)[-1]):
        return True
    return bool(_learned) and (backend.endpoint(), name) in _learned


@functools.lru_cache(maxsize=8)
def listed_pattern(listed: str) -> re.Pattern[str]:
    """RESPONSES_MODELS as one pattern: each comma-separated entry a name prefix in which `*`
    stands for any text (so `gpt-5*-codex` names gpt-5-codex, gpt-5.1-codex-mini, ...)."""
    prefixes = [p.strip().lower() for p in listed.split(",") if p.strip()]
    alternatives = "|".join(".*".join(re.escape(part) for part in prefix.split("*")) for prefix in prefixes)
    return re.compile(f"(?:{alternatives})" if prefixes else "(?!)")


def connect_kind(kind: str) -> str:
    """What a chat call gets the backend ready for before its rate-limit token is taken: the
    Responses endpoint when API_MODE sends every chat call there. (On auto the model decides,
    at the send; getting ready for chat then is as good as it gets beforehand.)"""
    return RESPONSES if kind == CHAT and _mode() == "responses" else kind


def is_refusal(error: APIError) -> bool:
    """Whether `error` is a server saying the model takes only the Responses API."""
    message = (error.message or "").lower()
    if error.status_code == 404 and REFUSAL_MESSAGE in message:
        return True
    if error.status_code == 400 and error.code == AZURE_REFUSAL_CODE and AZURE_REFUSAL_MESSAGE in message:
        return True
    return error.status_code == 400 and error.code == REFUSAL_CODE


def _learn(backend: Backend, model: Any, error: APIError) -> bool:
    """On auto, remember a refused model and say so; whether the call goes on to /responses."""
    if not is_refusal(error) or _mode() != "auto":
        return False
    with _lock:
        _learned.add((backend.endpoint(), str(model or "")))
    logger.info(
        "%s answers only through the Responses API (%s): sending it to /responses from now on; "
        "add it to RESPONSES_MODELS to skip this first refusal",
        model,
        error.message,
    )
    return True


def forget() -> None:
    """Forget the models learned so far (tests, or a server that changed)."""
    with _lock:
        _learned.clear()


def post(backend: Backend, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """One chat attempt through the API the model speaks; the answer as a chat completion."""
    sent = _performed_by(lambda kind, body: backend.post(kind, body, timeout))
    return drive(_routed(backend, request, from_responses), sent)


def open_stream(backend: Backend, request: Mapping[str, Any], timeout: float) -> Iterator[dict[str, Any]]:
    """Open one streamed chat attempt through the API the model speaks; its chunks, chat-shaped."""
    sent = _performed_by(lambda kind, body: backend.open_stream(kind, body, timeout))
    return drive(_routed(backend, request, _Chunks), sent)


async def apost(backend: Backend, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """The async form of `post`."""
    sent = _performed_by(lambda kind, body: backend.apost(kind, body, timeout))
    return await adrive(_routed(backend, request, from_responses), sent)


async def aopen_stream(backend: Backend, request: Mapping[str, Any], timeout: float) -> AsyncIterator[dict[str, Any]]:
    """The async form of `open_stream`."""
    sent = _performed_by(lambda kind, body: backend.aopen_stream(kind, body, timeout))
    return await adrive(_routed(backend, request, _Chunks), sent)


class _To(Step):
    """Send `body` to one API (request.CHAT or request.RESPONSES); the result is the server's answer."""

    __slots__ = ("body", "kind")

    def __init__(self, kind: str, body: Mapping[str, Any]) -> None:
        self.kind = kind
        self.body = body


def _performed_by(send: Callable[[str, Any], T]) -> Callable[[Step], T]:
    """The driver's `perform` for `_routed`'s steps: `send(kind, body)`, sync or async alike."""

    def perform(step: Step) -> T:
        assert isinstance(step, _To)
        return send(step.kind, step.body)

    return perform


def _routed(backend: Backend, request: Mapping[str, Any], answer: Callable[[Any], Any]) -> Flow[Any]:
    """The request to /chat/completions, or (translated) to /responses when the model is sent there
    or refuses chat on auto; a Responses answer goes through `answer` into the chat shape. One flow,
    driven by flow.drive for the sync sends and flow.adrive for the async ones."""
    model = request.get("model")
    if not uses_responses(backend, model):
        try:
            return (yield _To(CHAT, request))
        except APIError as error:
            if not _learn(backend, model, error):
                raise
    try:
        return answer((yield _To(RESPONSES, to_responses(request))))
    except InvalidRequestError as error:
        _raise_if_not_served(error)
        raise


def _raise_if_not_served(error: InvalidRequestError) -> None:
    """A 404 from /responses: raise it again saying, besides the server's words, how to go back
    to chat completions, since the server may not serve the Responses API at all."""
    if error.status_code != 404 or type(error) is not InvalidRequestError:
        return
    raise InvalidRequestError(
        f"{error.message} (answered by /responses: if this server does not serve the Responses API, "
        "set API_MODE = chat, or leave the model out of RESPONSES_MODELS)",
        status_code=error.status_code,
        request_id=error.request_id,
        code=error.code,
        body=error.body,
        retry_after=error.retry_after,
    ) from error


class _Chunks:
    """A Responses event stream, sync or async, read as chat chunks (events that carry nothing a
    chat stream would are skipped). An iterator object rather than a generator: the event loop
    tracks every async generator and closes each at its shutdown, and a generator wrapping the
    transport's would be closed alongside it, the two closings colliding ("aclose(): asynchronous
    generator is already running") for a stream left unread. Closing this closes the events."""

    def __init__(self, events: Any) -> None:
        self._events = events
        self._translator = ChunkTranslator()

    def __iter__(self) -> _Chunks:
        return self

    def __next__(self) -> dict[str, Any]:
        while True:
            chunk = self._translator.chunk(next(self._events))
            if chunk is not None:
                return chunk

    def close(self) -> None:
        close = getattr(self._events, "close", None)
        if close is not None:
            close()

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while True:
            chunk = self._translator.chunk(await self._events.__anext__())
            if chunk is not None:
                return chunk

    async def aclose(self) -> None:
        aclose = getattr(self._events, "aclose", None)
        if aclose is not None:
            await aclose()
