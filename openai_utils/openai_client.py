"""OpenAIClient: chat and embeddings, sync and async, streamed or not.

A client is cheap to build (no file, no connection): everything it needs is read from `default`
and the environment at call time. The SDK clients behind it are built on first use and kept, so
connections are reused, until their settings (key, endpoint) change; the async ones are kept per
event loop and closed when that loop shuts down.

Everything that is not I/O is shared by the sync and async paths: `_prepare` builds and checks
the request, the cache key and the retry policy once; `retry.Attempts` decides every wait; the
response and stream handling live in `response.py` and `streaming.py`. Admission, attempts,
retrying and opening a stream are written once as flows (flow.py); the sync and async drivers
below only perform their steps. Each request itself is the backend's (backend.py).

Custom clients subclass OpenAIClient and override `_raw_model_call` / `_raw_embedding_call`
(one attempt each; their async twins default to running them in a thread); raising
NonTerminalError there makes the call retried.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, TypeVar

from . import flow
from .backend import Backend
from .cache import MISSING, ResponseCache, cache_for_calls
from .concurrency import call_slots
from .config import default
from .exceptions import (
    APIError,
    InvalidRequestError,
    MalformedResponseError,
    RetriesExhaustedError,
    StreamInterruptedError,
)
from .forksafe import renew_in_child
from .legacy import adapt as adapt_legacy
from .ratelimit import rate_gate
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
from .response import chat_record, chat_result, check_record, embedding_record
from .retry import RetryPolicy
from .sdk_backend import OpenAIBackend
from .streaming import AsyncTextStream, TextStream, areplay, replay
from .structured import Parser, response_format_for_wire
from .tokens import count_tokens
from .transport import SDKClient
from .usage import UsageStats, format_stats, process_usage

__all__ = ["OpenAIClient", "CHAT", "EMBEDDING"]

logger = logging.getLogger("openai_utils")

T = TypeVar("T")


@dataclass
class _Call:
    """One call, prepared once before any attempt: what to send, how to retry, where to cache."""

    kind: str
    request: dict[str, Any]
    policy: RetryPolicy
    timeout: float
    cache: ResponseCache | None
    key: str | None
    parse: Parser | None = None


class OpenAIClient:
    """Calls the OpenAI API, or any OpenAI-compatible server named by BASE_URL."""

    api_type = "openai"
    key_variables: tuple[str, ...] = ("OPENAI_API_KEY",)

    def __init__(
        self,
        cache_api_calls: bool | None = None,
        cache_file_name: str | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] | None = None,
        random_value: Callable[[], float] = random.random,
        backend: Backend | None = None,
    ) -> None:
        """`cache_api_calls` / `cache_file_name` of None follow CACHE_API_CALLS / CACHE_FILE_NAME
        at call time. `sleep`, `async_sleep` (default asyncio.sleep) and `random_value` drive the
        backoff waits; tests pass their own. `backend` performs each request (backend.py); None
        means this class's own (OpenAIBackend here)."""
        self.backend = backend if backend is not None else self._make_backend()
        self.cache_api_calls = cache_api_calls
        self.cache_file_name = cache_file_name
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._random = random_value
        self._counter_lock = threading.Lock()
        self.cache_hits = 0
        self.cache_misses = 0
        self.usage = UsageStats()
        renew_in_child(self)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass written for the module this library replaces is adapted to the new hooks
        here, or refused with a ConfigError that says how to port it (legacy.py)."""
        super().__init_subclass__(**kwargs)
        adapt_legacy(cls)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(api_type={self.api_type!r}, cache_api_calls={self.cache_api_calls!r}, "
            f"cache_file_name={self.cache_file_name!r})"
        )

    # -- configuration -------------------------------------------------------------------

    def set_api_cache(self, cache_api_calls: bool, cache_file_name: str | None = None) -> None:
        """Turn the cache on or off for this client, optionally on another file."""
        self.cache_api_calls = cache_api_calls
        if cache_file_name is not None:
            self.cache_file_name = cache_file_name

    def _cache(self) -> ResponseCache | None:
        enabled = self.cache_api_calls if self.cache_api_calls is not None else default["cache_api_calls"]
        if not enabled:
            return None
        return cache_for_calls(self.cache_file_name or default["cache_file_name"], fsync=default["cache_fsync"])

    # -- the backend: one request (backend.py); these delegate to it ----------------------

    def _make_backend(self) -> Backend:
        """The backend a client of this class uses when none is given."""
        return OpenAIBackend()

    def _default_model(self, kind: str) -> str:
        """The model a call uses when it names none."""
        return self.backend.default_model(kind)

    def _endpoint(self) -> str:
        """The server, as part of the cache key: the same request to another server is another answer."""
        return self.backend.endpoint()

    def _refine_error(self, error: APIError, kind: str) -> APIError:
        """Reword a server's error for this kind of server (the backend's job)."""
        return self.backend.refine_error(error, kind)

    def _sdk(self, kind: str = CHAT) -> SDKClient:
        """What the backend sends `kind` with (for the SDK backends: the sync SDK client)."""
        return self.backend.connect(kind)

    async def _async_sdk(self, kind: str = CHAT) -> SDKClient:
        """The async form of `_sdk`: the async SDK client of the running loop."""
        return await self.backend.aconnect(kind)

    def close(self) -> None:
        """Close the sync connections now rather than at exit; the next call opens new ones.

        Async clients are closed by their event loop's shutdown (asyncio.run does it).
        """
        self.backend.close()

    async def aclose(self) -> None:
        """Close the async connections of the running event loop now."""
        await self.backend.aclose()

    @property
    def _sdks(self) -> Any:
        return getattr(self.backend, "_sdks", {})

    @property
    def _async_sdks(self) -> Any:
        return getattr(self.backend, "_async_sdks", {})

    @property
    def _sdk_lock(self) -> Any:
        return getattr(self.backend, "_sdk_lock", None)

    def _renew_after_fork(self) -> None:
        """In a forked child: a fresh counter lock (the backend renews itself)."""
        self._counter_lock = threading.Lock()

    def _policy(self, max_attempts: int | None, waiting_time: float | None, factor: float | None) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=max_attempts if max_attempts is not None else default["max_attempts"],
            waiting_time=waiting_time if waiting_time is not None else default["waiting_time"],
            backoff_factor=factor if factor is not None else default["exponential_backoff_factor"],
            max_waiting_time=default["max_waiting_time"],
        )

    # -- preparing a call (shared by every path) -----------------------------------------

    def _prepare_chat(
        self,
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
    ) -> _Call:
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
            "model": model or self._default_model(CHAT),
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
        call = self._prepare(
            CHAT, request, timeout, self._policy(max_attempts, waiting_time, exponential_backoff_factor)
        )
        call.parse = parse
        return call

    def _prepare_embedding(
        self, text: str | Sequence[str], model: str | None, timeout: float | None, max_attempts: int | None
    ) -> list[_Call]:
        """One call per request the input needs: a list longer than the API takes goes in parts,
        each retried and cached on its own, so a failed long call resumes where it stopped."""
        validate_arguments({"model": model, "timeout": timeout, "max_attempts": max_attempts})
        requests = build_embedding_requests(text, model or self._default_model(EMBEDDING))
        policy = self._policy(max_attempts, None, None)
        return [self._prepare(EMBEDDING, request, timeout, policy) for request in requests]

    def _prepare(self, kind: str, request: dict[str, Any], timeout: float | None, policy: RetryPolicy) -> _Call:
        cache = self._cache()
        key = cache_key(self.api_type, self._endpoint(), kind, request) if cache is not None else None
        return _Call(kind, request, policy, timeout if timeout is not None else default["timeout"], cache, key)

    def _account(self, call: _Call, record: Mapping[str, Any], hit: bool) -> None:
        """Count a finished call: cache hit or miss, and its tokens and cost."""
        if call.cache is not None:
            with self._counter_lock:
                if hit:
                    self.cache_hits += 1
                else:
                    self.cache_misses += 1
        model = record.get("model") or call.request.get("model")
        for stats in (self.usage, process_usage):
            stats.record(model, record.get("usage"), cached=hit)

    def _cached(self, call: _Call) -> Any:
        """The cached answer for `call`, counted as a hit, or MISSING."""
        if call.cache is None:
            return MISSING
        value = call.cache.get(call.key)  # type: ignore[arg-type]
        if value is not MISSING:
            self._account(call, value, hit=True)
        return value

    def _store(self, call: _Call, value: Any) -> None:
        if call.cache is not None:
            call.cache.put(call.key, value, call.request)  # type: ignore[arg-type]

    def _give_up(self, call: _Call, exc: RetriesExhaustedError) -> None:
        """Attempts ran out: log it once, then return None or raise, as RAISE_ON_FAILURE says."""
        logger.error("%s call to %s failed: %s", call.kind, call.request.get("model"), exc)
        if default["raise_on_failure"]:
            raise exc

    # -- the public calls ----------------------------------------------------------------

    def send_message(
        self,
        current_messages: Sequence[Mapping[str, Any]],
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        frequency_penalty: float | None = None,
        presence_penalty: float | None = None,
        stop: str | list[str] | None = None,
        timeout: float | None = None,
        max_attempts: int | None = None,
        waiting_time: float | None = None,
        exponential_backoff_factor: float | None = None,
        n: int = 1,
        echo: bool = False,
        stream: bool = False,
        **extra: Any,
    ) -> Any:
        """Send a conversation; return the assistant message as a plain dict.

        Any argument left as None takes its value from `default` now, at call time; a sampling
        parameter that is None there too is not sent at all. Further API parameters (`seed`,
        `tools`, `response_format`, ...) pass through as given. With n > 1 the result is a list
        of messages, one per choice; with echo=True, the conversation plus the reply; with
        stream=True, a `TextStream` of text chunks (retried until the first chunk arrives) whose
        `reply`, `finish_reason`, `truncated`, `usage`, ... are known once it is read to its end.
        Returns None when every attempt failed with a retryable error (or raises
        RetriesExhaustedError with RAISE_ON_FAILURE); other errors raise at once.
        """
        call = self._prepare_chat(current_messages, extra, **_chat_arguments(locals()))
        if stream:
            return self._stream(call)
        outcome = self._run(call, "model")
        return None if outcome is None else chat_result(outcome[0], n, echo, current_messages, call.parse, outcome[1])

    async def asend_message(
        self,
        current_messages: Sequence[Mapping[str, Any]],
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        frequency_penalty: float | None = None,
        presence_penalty: float | None = None,
        stop: str | list[str] | None = None,
        timeout: float | None = None,
        max_attempts: int | None = None,
        waiting_time: float | None = None,
        exponential_backoff_factor: float | None = None,
        n: int = 1,
        echo: bool = False,
        stream: bool = False,
        **extra: Any,
    ) -> Any:
        """The async form of send_message: same parameters, same results; with stream=True an
        `AsyncTextStream` of text chunks."""
        call = self._prepare_chat(current_messages, extra, **_chat_arguments(locals()))
        if stream:
            return await self._astream(call)
        outcome = await self._arun(call, "model")
        return None if outcome is None else chat_result(outcome[0], n, echo, current_messages, call.parse, outcome[1])

    def send_messages(
        self,
        conversations: Sequence[Sequence[Mapping[str, Any]]],
        max_workers: int | None = None,
        progress: Any = None,
        **params: Any,
    ) -> list[Any]:
        """send_message for each conversation, in a thread pool; results in input order.

        A failed item holds its exception object, an item whose retries ran out holds None (see
        parallel.py); `progress` shows a tqdm bar (None: when interactive, True, False, or a
        callable(done, total)). At most MAX_CONCURRENT_MODEL_CALLS requests are in flight.
        """
        from .parallel import send_messages

        return send_messages(self, conversations, max_workers, progress, params)

    def get_embedding(
        self,
        text: str | Sequence[str],
        model: str | None = None,
        timeout: float | None = None,
        max_attempts: int | None = None,
    ) -> Any:
        """One vector for a string, or a list of vectors (in order) for a list of strings.

        Same retries, cache and failure contract as send_message. A list longer than one request
        may carry (2,048 texts) goes out in parts, each retried and cached on its own.
        """
        vectors: list[Any] = []
        for call in self._prepare_embedding(text, model, timeout, max_attempts):
            outcome = self._run(call, "embedding")
            if outcome is None:
                return None
            vectors.extend(outcome[0]["vectors"])
        return vectors[0] if isinstance(text, str) else vectors

    async def aget_embedding(
        self,
        text: str | Sequence[str],
        model: str | None = None,
        timeout: float | None = None,
        max_attempts: int | None = None,
    ) -> Any:
        """The async form of get_embedding."""
        vectors: list[Any] = []
        for call in self._prepare_embedding(text, model, timeout, max_attempts):
            outcome = await self._arun(call, "embedding")
            if outcome is None:
                return None
            vectors.extend(outcome[0]["vectors"])
        return vectors[0] if isinstance(text, str) else vectors

    # -- usage and cost ------------------------------------------------------------------

    def get_cost_stats(self) -> dict[str, Any]:
        """This client's tokens, calls and cost so far: totals plus `by_model`."""
        return self.usage.snapshot()

    def reset_cost_stats(self) -> None:
        """Start this client's counts again from zero (the process total is kept)."""
        self.usage.reset()

    def pretty_print_cost_stats(self) -> None:
        """Print this client's usage and cost as a small table."""
        import sys

        format_stats(self.get_cost_stats(), sys.stdout)

    def _count_tokens(
        self, messages: Sequence[Mapping[str, Any]], model: str, tools: Sequence[Mapping[str, Any]] | None = None
    ) -> int | None:
        """Prompt tokens of a chat request, estimated offline; None when no encoding is available."""
        return count_tokens(messages, model, tools)

    # -- one HTTP attempt (override these in a custom client) -----------------------------

    def _raw_model_call(self, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """One chat completion attempt; returns the server's JSON."""
        return self.backend.post(CHAT, request, timeout)

    def _raw_embedding_call(self, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """One embeddings attempt; returns the server's JSON."""
        return self.backend.post(EMBEDDING, request, timeout)

    def _raw_stream_call(self, request: Mapping[str, Any], timeout: float) -> Iterator[dict[str, Any]]:
        """Open one streamed chat completion; its chunks as dicts."""
        return self.backend.open_stream(CHAT, request, timeout)

    async def _araw_model_call(self, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        if _overrides(self, "_raw_model_call"):
            return await _in_thread(self._raw_model_call, request, timeout)
        return await self.backend.apost(CHAT, request, timeout)

    async def _araw_embedding_call(self, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        if _overrides(self, "_raw_embedding_call"):
            return await _in_thread(self._raw_embedding_call, request, timeout)
        return await self.backend.apost(EMBEDDING, request, timeout)

    async def _araw_stream_call(self, request: Mapping[str, Any], timeout: float) -> AsyncIterator[dict[str, Any]]:
        return await self.backend.aopen_stream(CHAT, request, timeout)

    def _auth_hint(self) -> str:
        return self.backend.auth_hint

    # -- the drivers: the flow (flow.py) is written once; these only perform its steps -----

    def _gate_key(self, call: _Call) -> str:
        """Rate limits and 429 pauses apply per model (Azure: deployment) per server."""
        return f"{self._endpoint()} {call.request.get('model')}"

    def _attempts(self, call: _Call, what: str) -> flow.Flow[dict[str, Any]]:
        """Attempts of `what` ("model" or "embedding") until one succeeds; the server's JSON,
        checked and shaped into a record."""
        key = self._gate_key(call)

        def one() -> flow.Flow[dict[str, Any]]:
            data = yield from flow.attempt(call, key, what, functools.partial(self._refine_error, kind=call.kind))
            if what == "embedding":
                return embedding_record(data, _input_count(call))
            return check_record(chat_record(data), call.parse)

        return flow.retrying(call, self._random, one)

    def _stream_opening(self, call: _Call) -> flow.Flow[flow.OpenStream]:
        key = self._gate_key(call)
        refine = functools.partial(self._refine_error, kind=call.kind)
        return flow.retrying(call, self._random, lambda: flow.open_stream(call, key, refine))

    def _drive(self, call: _Call, steps: flow.Flow[T]) -> T:
        return flow.drive(steps, functools.partial(self._perform_sync, call))

    async def _adrive(self, call: _Call, steps: flow.Flow[T]) -> T:
        return await flow.adrive(steps, functools.partial(self._perform_async, call))

    def _perform_sync(self, call: _Call, step: flow.Step) -> Any:
        """Do one step of a flow now."""
        if isinstance(step, flow.Send):
            return getattr(self, f"_raw_{step.what}_call")(call.request, call.timeout)
        if isinstance(step, flow.NextChunk):
            return flow.next_chunk(step.chunks)
        if isinstance(step, flow.Sleep):
            return self._sleep(step.seconds)
        if isinstance(step, flow.BeforeRequest):
            return rate_gate.before_request(step.key, step.tokens)
        if isinstance(step, flow.HoldSlot):
            slot = call_slots.hold()
            slot.__enter__()
            return slot
        if isinstance(step, flow.ReleaseSlot):
            return step.slot.__exit__(None, None, None)
        if isinstance(step, flow.Connect):
            if _sends_with_our_sdk(self, getattr(self, f"_raw_{step.what}_call")):
                self._sdk(step.kind)
            return None
        if isinstance(step, flow.BeforeSend):
            return rate_gate.before_send(step.key, step.tokens)
        raise TypeError(f"unknown step {step!r}")

    async def _perform_async(self, call: _Call, step: flow.Step) -> Any:
        """Await one step of a flow."""
        if isinstance(step, flow.Send):
            return await getattr(self, f"_araw_{step.what}_call")(call.request, call.timeout)
        if isinstance(step, flow.NextChunk):
            return await flow.anext_chunk(step.chunks)
        if isinstance(step, flow.Sleep):
            return await self._await_sleep(step.seconds)
        if isinstance(step, flow.BeforeRequest):
            return await rate_gate.abefore_request(step.key, step.tokens)
        if isinstance(step, flow.HoldSlot):
            slot = call_slots.ahold()
            await slot.__aenter__()
            return slot
        if isinstance(step, flow.ReleaseSlot):
            return await step.slot.__aexit__(None, None, None)
        if isinstance(step, flow.Connect):
            if _sends_with_our_sdk(self, getattr(self, f"_araw_{step.what}_call")):
                await self._async_sdk(step.kind)
            return None
        if isinstance(step, flow.BeforeSend):
            return await rate_gate.abefore_send(step.key, step.tokens)
        raise TypeError(f"unknown step {step!r}")

    def _run(self, call: _Call, what: str) -> tuple[dict[str, Any], bool] | None:
        """(record, whether it came from the cache), or None when the attempts ran out."""
        try:
            if call.cache is None:
                value, hit = self._drive(call, self._attempts(call, what)), False
            else:
                compute = lambda: self._drive(call, self._attempts(call, what))  # noqa: E731
                value, hit = call.cache.get_or_compute(call.key, compute, call.request)  # type: ignore[arg-type]
        except RetriesExhaustedError as exc:
            self._give_up(call, exc)
            return None
        self._account(call, value, hit)
        return value, hit

    async def _arun(self, call: _Call, what: str) -> tuple[dict[str, Any], bool] | None:
        """The async form of `_run`."""
        try:
            if call.cache is None:
                value, hit = await self._adrive(call, self._attempts(call, what)), False
            else:
                compute = lambda: self._adrive(call, self._attempts(call, what))  # noqa: E731
                value, hit = await call.cache.aget_or_compute(call.key, compute, call.request)  # type: ignore[arg-type]
        except RetriesExhaustedError as exc:
            self._give_up(call, exc)
            return None
        self._account(call, value, hit)
        return value, hit

    async def _await_sleep(self, seconds: float) -> None:
        if self._async_sleep is not None:
            await self._async_sleep(seconds)
        else:
            import asyncio

            await asyncio.sleep(seconds)

    def _stream(self, call: _Call) -> TextStream | None:
        cached = self._cached(call)
        if cached is not MISSING:
            return TextStream(replay(cached), lambda: cached, call.parse, cached=True)
        try:
            opened = self._drive(call, self._stream_opening(call))
        except RetriesExhaustedError as exc:
            self._give_up(call, exc)
            return None
        return TextStream(self._stream_rest(opened), lambda: self._finish_stream(call, opened), call.parse)

    async def _astream(self, call: _Call) -> AsyncTextStream | None:
        cached = self._cached(call)
        if cached is not MISSING:
            return AsyncTextStream(areplay(cached), lambda: cached, call.parse, cached=True)
        try:
            opened = await self._adrive(call, self._stream_opening(call))
        except RetriesExhaustedError as exc:
            self._give_up(call, exc)
            return None
        return AsyncTextStream(self._astream_rest(opened), lambda: self._finish_stream(call, opened), call.parse)

    def _stream_rest(self, opened: flow.OpenStream) -> Iterator[str]:
        """The rest of an open stream's text; its slot is released when it ends."""
        try:
            if opened.first is not None:
                yield opened.first
            for chunk in opened.chunks:
                text = opened.assembler.feed(chunk)
                if text:
                    yield text
        except APIError as error:
            raise _interrupted(opened, error) from error
        finally:
            opened.slot.__exit__(None, None, None)

    async def _astream_rest(self, opened: flow.OpenStream) -> AsyncIterator[str]:
        """The async form of `_stream_rest`."""
        try:
            if opened.first is not None:
                yield opened.first
            async for chunk in opened.chunks:
                text = opened.assembler.feed(chunk)
                if text:
                    yield text
        except APIError as error:
            raise _interrupted(opened, error) from error
        finally:
            await opened.slot.__aexit__(None, None, None)

    def _finish_stream(self, call: _Call, opened: flow.OpenStream) -> dict[str, Any]:
        """A complete stream: check it like a plain answer, count it, cache it; its record."""
        unfinished = opened.assembler.unfinished()
        if unfinished:
            raise _interrupted(opened, MalformedResponseError(unfinished))
        record = check_record(opened.assembler.record(), call.parse)
        self._account(call, record, hit=False)
        self._store(call, record)
        return record


def _interrupted(opened: flow.OpenStream, error: APIError) -> StreamInterruptedError:
    """A stream that failed after its first text: what arrived is kept in the error."""
    return StreamInterruptedError(opened.assembler.text, opened.assembler.chunks, error)


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
"""The named parameters of send_message / asend_message, passed on to `_prepare_chat` by name."""


def _chat_arguments(scope: Mapping[str, Any]) -> dict[str, Any]:
    """The chat parameters among a send_message call's locals, by name."""
    return {name: scope[name] for name in CHAT_ARGUMENTS}


def _input_count(call: _Call) -> int:
    """How many vectors an embeddings request asks for: one for a string, one per text of a list."""
    texts = call.request["input"]
    return 1 if isinstance(texts, str) else len(texts)


def _overrides(client: OpenAIClient, name: str) -> bool:
    """Whether a custom client replaced a sync raw call (so the async path must use it too)."""
    return getattr(type(client), name) is not getattr(OpenAIClient, name)


def _sends_with_our_sdk(client: OpenAIClient, raw: Callable[..., Any]) -> bool:
    """Whether `raw` is one of our raw calls, which send through `_sdk` / `_async_sdk`.

    Only then can admission build the SDK client before taking the rate-limit token; a custom
    raw call (or an async one running a custom sync twin) builds what it needs itself.
    """
    name = getattr(raw, "__name__", "")
    ours = getattr(OpenAIClient, name, None)
    if ours is None or getattr(raw, "__func__", None) is not ours:
        return False
    return not _overrides(client, name.replace("_araw_", "_raw_"))


async def _in_thread(function: Callable[..., T], *args: Any) -> T:
    import asyncio

    return await asyncio.to_thread(function, *args)
