"""OpenAIClient: chat and embeddings, sync and async, streamed or not.

A client is cheap to build (no file, no connection): everything it needs is read from `default`
and the environment at call time. The SDK clients behind it are built on first use and kept, so
connections are reused, until their settings (key, endpoint) change; the async ones are kept per
event loop and closed when that loop shuts down.

Everything that is not I/O is shared by the sync and async paths: `_prepare` builds and checks
the request, the cache key and the retry policy once; `retry.Attempts` decides every wait; the
response and stream handling live in `response.py` and `streaming.py`. The drivers below differ
only in how they wait.

Custom clients subclass OpenAIClient and override `_raw_model_call` / `_raw_embedding_call`
(one attempt each; their async twins default to running them in a thread); raising
NonTerminalError there makes the call retried.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import threading
import time
import weakref
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

from .cache import MISSING, ResponseCache, cache_for_calls
from .config import default
from .exceptions import (
    APIError,
    InvalidRequestError,
    MalformedResponseError,
    MissingCredentialsError,
    NonTerminalError,
    RetriesExhaustedError,
    StreamInterruptedError,
)
from .forksafe import keep_forever, renew_in_child
from .limits import call_slots
from .ratelimit import estimate_tokens, rate_gate
from .redact import remember
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
from .streaming import AsyncTextStream, StreamAssembler, TextStream, areplay, replay
from .structured import Parser, response_format_for_wire
from .tokens import count_tokens
from .transport import (
    SDKClient,
    aopen_stream,
    apost_json,
    build_openai_sdk,
    open_stream,
    post_json,
)
from .usage import UsageStats, format_stats, process_usage

__all__ = ["OpenAIClient", "CHAT", "EMBEDDING"]

logger = logging.getLogger("openai_utils")

T = TypeVar("T")

OPENAI_DEFAULT_ENDPOINT = "https://api.openai.com/v1"
NO_KEY_NEEDED = "no-key-needed"
"""Sent as the key to a BASE_URL server when OPENAI_API_KEY is unset: local servers ignore it."""
OFFLINE_WAY_OUT = (
    '; or, with no key at all, run the embedded local model: force_api_type("local") '
    "(API_TYPE = local in config.ini) after python -m openai_utils local setup"
)
"""Ends every missing-credentials message: a notebook user without a key can still go on offline."""


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


@dataclass
class _OpenStream:
    """A stream whose first text has arrived: from here on a failure is no longer retried."""

    chunks: Any
    assembler: StreamAssembler
    first: str | None
    slot: Any


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
    ) -> None:
        """`cache_api_calls` / `cache_file_name` of None follow CACHE_API_CALLS / CACHE_FILE_NAME
        at call time. `sleep`, `async_sleep` (default asyncio.sleep) and `random_value` drive the
        backoff waits; tests pass their own."""
        self.cache_api_calls = cache_api_calls
        self.cache_file_name = cache_file_name
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._random = random_value
        self._sdk_lock = threading.Lock()
        self._sdks: dict[str, tuple[tuple[Any, ...], SDKClient]] = {}
        self._async_sdks: weakref.WeakKeyDictionary[Any, dict[str, tuple[tuple[Any, ...], SDKClient, Any]]] = (
            weakref.WeakKeyDictionary()
        )
        self._async_pending: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()
        self._counter_lock = threading.Lock()
        self.cache_hits = 0
        self.cache_misses = 0
        self.usage = UsageStats()
        renew_in_child(self)

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

    def _default_model(self, kind: str) -> str:
        """The model a call uses when it names none."""
        return str(default["model"] if kind == CHAT else default["embedding_model"])

    def _sdk_settings_now(self, kind: str) -> tuple[Any, ...]:
        """What the SDK client for `kind` is built from, read from config and environment now."""
        base_url = default["base_url"] or os.environ.get("OPENAI_BASE_URL") or None
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            if base_url is None:
                raise MissingCredentialsError(
                    "no OpenAI API key: set the environment variable OPENAI_API_KEY (or put it in a "
                    ".env file), or set BASE_URL in config.ini to use another OpenAI-compatible server"
                    + OFFLINE_WAY_OUT,
                    self.key_variables,
                )
            key = NO_KEY_NEEDED
        return (key, base_url)

    def _build_sdk(self, settings: tuple[Any, ...], asynchronous: bool) -> SDKClient:
        key, base_url = settings
        return build_openai_sdk(key, base_url, asynchronous)

    def _endpoint(self) -> str:
        """The server, as part of the cache key: the same request to another server is another answer."""
        return default["base_url"] or os.environ.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_ENDPOINT

    def _refine_error(self, error: APIError, kind: str) -> APIError:
        """A hook to reword a server's error for this kind of server; the default keeps it."""
        return error

    def _sdk(self, kind: str = CHAT) -> SDKClient:
        """The sync SDK client for `kind`, rebuilt only when its settings changed."""
        settings = self._sdk_settings_now(kind)
        with self._sdk_lock:
            current = self._sdks.get(kind)
            if current is not None and current[0] == settings:
                return current[1]
            if current is not None:
                current[1].close()
            sdk = self._build_sdk(settings, asynchronous=False)
            _remember_key(sdk)
            self._sdks[kind] = (settings, sdk)
            return sdk

    def close(self) -> None:
        """Close the sync connections now rather than at exit; the next call opens new ones.

        Async clients are closed by their event loop's shutdown (asyncio.run does it).
        """
        with self._sdk_lock:
            for _, sdk in self._sdks.values():
                sdk.close()
            self._sdks.clear()

    def _renew_after_fork(self) -> None:
        """In a forked child: start with no SDK client and fresh locks.

        The parent's SDK clients hold its pooled connections; used here they would mix up the
        answers of parent and child. They are kept, never closed (see forksafe.keep_forever).
        """
        keep_forever((self._sdks, dict(self._async_sdks)))
        self._sdk_lock = threading.Lock()
        self._sdks = {}
        self._async_sdks = weakref.WeakKeyDictionary()
        self._async_pending = weakref.WeakKeyDictionary()
        self._counter_lock = threading.Lock()

    async def _async_sdk(self, kind: str = CHAT) -> SDKClient:
        """The async SDK client for `kind` in the running loop, closed when that loop shuts down
        and then forgotten: neither the client nor the loop outlives the loop's end."""
        import asyncio

        loop = asyncio.get_running_loop()
        settings = self._sdk_settings_now(kind)
        self._forget_closed_loops()
        current = self._async_sdks.get(loop, {}).get(kind)
        if current is not None and current[0] == settings:
            return current[1]
        if current is not None:
            await current[2].aclose()  # closes it and forgets it
        sdk = self._build_sdk(settings, asynchronous=True)
        _remember_key(sdk)
        closer = _close_when_loop_ends(sdk, functools.partial(self._forget_async_sdk, weakref.ref(loop), kind, sdk))
        await closer.__anext__()
        self._async_sdks.setdefault(loop, {})[kind] = (settings, sdk, closer)
        return sdk

    def _forget_async_sdk(self, loop: weakref.ref[Any], kind: str, sdk: SDKClient) -> None:
        """Drop a closed async SDK client. Its entry must go: the closer in it refers to the loop
        (as every async generator refers to its loop's finalizer), so keeping it kept every loop
        ever run, and its client, alive (asyncio.run per call grew without bound)."""
        per_loop = self._async_sdks.get(loop())
        if per_loop is not None and kind in per_loop and per_loop[kind][1] is sdk:
            del per_loop[kind]
            if not per_loop:
                self._async_sdks.pop(loop(), None)

    def _forget_closed_loops(self) -> None:
        """Forget the clients of loops closed without shutting down their async generators
        (loop.close() alone): nothing can close those clients any more, or use them."""
        for loop in [loop for loop in list(self._async_sdks) if loop.is_closed()]:
            self._async_sdks.pop(loop, None)

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
        extra: Mapping[str, Any],
    ) -> _Call:
        validate_arguments({
            "model": model, "temperature": temperature, "max_tokens": max_tokens, "top_p": top_p,
            "frequency_penalty": frequency_penalty, "presence_penalty": presence_penalty, "timeout": timeout,
            "max_attempts": max_attempts, "waiting_time": waiting_time,
            "exponential_backoff_factor": exponential_backoff_factor, "n": n, "echo": echo, "stream": stream,
        })
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
                len(request["messages"]), request["model"], count_tokens(request["messages"], request["model"]),
            )
        call = self._prepare(CHAT, request, timeout, self._policy(max_attempts, waiting_time, exponential_backoff_factor))
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
        call = self._prepare_chat(
            current_messages, model, temperature, max_tokens, top_p, frequency_penalty, presence_penalty, stop,
            timeout, max_attempts, waiting_time, exponential_backoff_factor, n, echo, stream, extra,
        )
        if stream:
            return self._stream(call)
        outcome = self._run(call, lambda: check_record(chat_record(self._attempt(self._raw_model_call, call)), call.parse))
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
        call = self._prepare_chat(
            current_messages, model, temperature, max_tokens, top_p, frequency_penalty, presence_penalty, stop,
            timeout, max_attempts, waiting_time, exponential_backoff_factor, n, echo, stream, extra,
        )
        if stream:
            return await self._astream(call)

        async def attempt() -> dict[str, Any]:
            return check_record(chat_record(await self._aattempt(self._araw_model_call, call)), call.parse)

        outcome = await self._arun(call, attempt)
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
        self, text: str | Sequence[str], model: str | None = None, timeout: float | None = None, max_attempts: int | None = None
    ) -> Any:
        """One vector for a string, or a list of vectors (in order) for a list of strings.

        Same retries, cache and failure contract as send_message. A list longer than one request
        may carry (2,048 texts) goes out in parts, each retried and cached on its own.
        """
        vectors: list[Any] = []
        for call in self._prepare_embedding(text, model, timeout, max_attempts):
            outcome = self._run(call, functools.partial(self._embedding_attempt, call))
            if outcome is None:
                return None
            vectors.extend(outcome[0]["vectors"])
        return vectors[0] if isinstance(text, str) else vectors

    async def aget_embedding(
        self, text: str | Sequence[str], model: str | None = None, timeout: float | None = None, max_attempts: int | None = None
    ) -> Any:
        """The async form of get_embedding."""
        vectors: list[Any] = []
        for call in self._prepare_embedding(text, model, timeout, max_attempts):
            outcome = await self._arun(call, functools.partial(self._aembedding_attempt, call))
            if outcome is None:
                return None
            vectors.extend(outcome[0]["vectors"])
        return vectors[0] if isinstance(text, str) else vectors

    def _embedding_attempt(self, call: _Call) -> dict[str, Any]:
        return embedding_record(self._attempt(self._raw_embedding_call, call), _input_count(call))

    async def _aembedding_attempt(self, call: _Call) -> dict[str, Any]:
        return embedding_record(await self._aattempt(self._araw_embedding_call, call), _input_count(call))

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
        return post_json(self._sdk(CHAT), "/chat/completions", request, timeout, self._auth_hint())

    def _raw_embedding_call(self, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """One embeddings attempt; returns the server's JSON."""
        return post_json(self._sdk(EMBEDDING), "/embeddings", request, timeout, self._auth_hint())

    def _raw_stream_call(self, request: Mapping[str, Any], timeout: float) -> Iterator[dict[str, Any]]:
        """Open one streamed chat completion; its chunks as dicts."""
        return open_stream(self._sdk(CHAT), "/chat/completions", request, timeout, self._auth_hint())

    async def _araw_model_call(self, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        if _overrides(self, "_raw_model_call"):
            return await _in_thread(self._raw_model_call, request, timeout)
        return await apost_json(await self._async_sdk(CHAT), "/chat/completions", request, timeout, self._auth_hint())

    async def _araw_embedding_call(self, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        if _overrides(self, "_raw_embedding_call"):
            return await _in_thread(self._raw_embedding_call, request, timeout)
        return await apost_json(await self._async_sdk(EMBEDDING), "/embeddings", request, timeout, self._auth_hint())

    async def _araw_stream_call(self, request: Mapping[str, Any], timeout: float) -> AsyncIterator[dict[str, Any]]:
        return await aopen_stream(await self._async_sdk(CHAT), "/chat/completions", request, timeout, self._auth_hint())

    def _auth_hint(self) -> str:
        return " or ".join(self.key_variables)

    # -- sync drivers ------------------------------------------------------------------------

    def _gate_key(self, call: _Call) -> str:
        """Rate limits and 429 pauses apply per model (Azure: deployment) per server."""
        return f"{self._endpoint()} {call.request.get('model')}"

    @contextlib.contextmanager
    def _admitted(self, call: _Call, raw: Callable[..., Any]) -> Iterator[None]:
        """Admit one attempt of `raw`: wait out any 429 pause of this endpoint and for a place in
        its rate limits, hold a concurrency slot, build the SDK client, then take the rate-limit
        token as the very last step; a rate-limit answer pauses everyone else bound there.

        Waiting for a pause or a place holds no slot, so a limited model never holds slots
        that other models could use. The token comes last so that nothing slow (a busy slot,
        the first SDK build, starting the local server) lies between it and the send: requests
        whose turn came while they were held up still leave at the rate. A pause that began
        meanwhile sends the request back to the start.
        """
        key = self._gate_key(call)
        tokens = functools.cache(lambda: estimate_tokens(call.request, call.kind))
        while True:
            rate_gate.before_request(key, tokens)
            slot = call_slots.hold()
            slot.__enter__()
            try:
                if not rate_gate.paused(key):
                    if _sends_with_our_sdk(self, raw):
                        self._sdk(call.kind)
                    rate_gate.before_send(key, tokens)
                    if not rate_gate.paused(key):
                        break
            except BaseException:
                slot.__exit__(None, None, None)
                raise
            slot.__exit__(None, None, None)
        try:
            yield
        except APIError as error:
            rate_gate.after_error(key, error)
            raise
        finally:
            slot.__exit__(None, None, None)

    def _attempt(self, raw: Callable[[Mapping[str, Any], float], T], call: _Call) -> T:
        """One attempt, admitted by the gate, with the server's error reworded if need be."""
        with self._admitted(call, raw):
            try:
                return raw(call.request, call.timeout)
            except APIError as error:
                _reraise_refined(self._refine_error(error, call.kind), error)
                raise

    def _run(self, call: _Call, attempt: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool] | None:
        """(record, whether it came from the cache), or None when the attempts ran out."""
        try:
            if call.cache is None:
                value, hit = self._retrying(call, attempt), False
            else:
                value, hit = call.cache.get_or_compute(call.key, lambda: self._retrying(call, attempt), call.request)  # type: ignore[arg-type]
        except RetriesExhaustedError as exc:
            self._give_up(call, exc)
            return None
        self._account(call, value, hit)
        return value, hit

    def _retrying(self, call: _Call, attempt: Callable[[], T]) -> T:
        attempts = call.policy.start(self._random)
        while True:
            try:
                return attempt()
            except NonTerminalError as error:
                self._sleep(attempts.failed(error))

    def _stream(self, call: _Call) -> TextStream | None:
        cached = self._cached(call)
        if cached is not MISSING:
            return TextStream(replay(cached), lambda: cached, call.parse, cached=True)
        try:
            opened = self._retrying(call, lambda: self._open_stream(call))
        except RetriesExhaustedError as exc:
            self._give_up(call, exc)
            return None
        return TextStream(self._stream_rest(call, opened), lambda: self._finish_stream(call, opened), call.parse)

    def _open_stream(self, call: _Call) -> _OpenStream:
        """Open a stream and read up to its first text, holding a slot until the stream ends."""
        with contextlib.ExitStack() as slot:
            slot.enter_context(self._admitted(call, self._raw_stream_call))
            try:
                chunks = self._raw_stream_call(call.request, call.timeout)
                assembler = StreamAssembler()
                first = next((t for t in map(assembler.feed, chunks) if t), None)
                if first is None and assembler.unfinished():
                    raise MalformedResponseError(str(assembler.unfinished()))
            except APIError as error:
                _reraise_refined(self._refine_error(error, call.kind), error)
                raise
            return _OpenStream(chunks, assembler, first, slot.pop_all())

    def _stream_rest(self, call: _Call, opened: _OpenStream) -> Iterator[str]:
        with opened.slot:
            if opened.first is not None:
                yield opened.first
            try:
                for chunk in opened.chunks:
                    text = opened.assembler.feed(chunk)
                    if text:
                        yield text
            except APIError as error:
                raise StreamInterruptedError(opened.assembler.text, opened.assembler.chunks, error) from error

    def _finish_stream(self, call: _Call, opened: _OpenStream) -> dict[str, Any]:
        """A complete stream: check it like a plain answer, count it, cache it; its record."""
        unfinished = opened.assembler.unfinished()
        if unfinished:
            assembler = opened.assembler
            raise StreamInterruptedError(assembler.text, assembler.chunks, MalformedResponseError(unfinished))
        record = check_record(opened.assembler.record(), call.parse)
        self._account(call, record, hit=False)
        self._store(call, record)
        return record

    # -- async drivers: the same steps, awaited ------------------------------------------

    @contextlib.asynccontextmanager
    async def _aadmitted(self, call: _Call, raw: Callable[..., Any]) -> AsyncIterator[None]:
        """The async form of `_admitted`."""
        key = self._gate_key(call)
        tokens = functools.cache(lambda: estimate_tokens(call.request, call.kind))
        while True:
            await rate_gate.abefore_request(key, tokens)
            slot = call_slots.ahold()
            await slot.__aenter__()
            try:
                if not rate_gate.paused(key):
                    if _sends_with_our_sdk(self, raw):
                        await self._async_sdk(call.kind)
                    await rate_gate.abefore_send(key, tokens)
                    if not rate_gate.paused(key):
                        break
            except BaseException:
                await slot.__aexit__(None, None, None)
                raise
            await slot.__aexit__(None, None, None)
        try:
            yield
        except APIError as error:
            rate_gate.after_error(key, error)
            raise
        finally:
            await slot.__aexit__(None, None, None)

    async def _aattempt(self, raw: Callable[[Mapping[str, Any], float], Awaitable[T]], call: _Call) -> T:
        async with self._aadmitted(call, raw):
            try:
                return await raw(call.request, call.timeout)
            except APIError as error:
                _reraise_refined(self._refine_error(error, call.kind), error)
                raise

    async def _arun(self, call: _Call, attempt: Callable[[], Awaitable[dict[str, Any]]]) -> tuple[dict[str, Any], bool] | None:
        try:
            if call.cache is None:
                value, hit = await self._aretrying(call, attempt), False
            else:
                value, hit = await self._aget_or_compute(call, lambda: self._aretrying(call, attempt))
        except RetriesExhaustedError as exc:
            self._give_up(call, exc)
            return None
        self._account(call, value, hit)
        return value, hit

    async def _aretrying(self, call: _Call, attempt: Callable[[], Awaitable[T]]) -> T:
        attempts = call.policy.start(self._random)
        while True:
            try:
                return await attempt()
            except NonTerminalError as error:
                await self._await_sleep(attempts.failed(error))

    async def _await_sleep(self, seconds: float) -> None:
        if self._async_sleep is not None:
            await self._async_sleep(seconds)
        else:
            import asyncio

            await asyncio.sleep(seconds)

    async def _aget_or_compute(self, call: _Call, compute: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Cache lookup, with identical calls in flight in this loop sharing one request."""
        import asyncio

        pending = self._async_pending.setdefault(asyncio.get_running_loop(), {})
        while True:
            value = call.cache.get(call.key) if call.cache is not None else MISSING  # type: ignore[arg-type]
            if value is not MISSING:
                return value, True
            running = pending.get(call.key)  # type: ignore[arg-type]
            if running is None:
                break
            await asyncio.wait([running])
        done = asyncio.get_running_loop().create_future()
        pending[call.key] = done  # type: ignore[index]
        try:
            value = await compute()
            self._store(call, value)
            return value, False
        finally:
            del pending[call.key]  # type: ignore[arg-type]
            done.set_result(None)

    async def _astream(self, call: _Call) -> AsyncTextStream | None:
        cached = self._cached(call)
        if cached is not MISSING:
            return AsyncTextStream(areplay(cached), lambda: cached, call.parse, cached=True)
        try:
            opened = await self._aretrying(call, lambda: self._aopen_stream(call))
        except RetriesExhaustedError as exc:
            self._give_up(call, exc)
            return None
        return AsyncTextStream(self._astream_rest(call, opened), lambda: self._finish_stream(call, opened), call.parse)

    async def _aopen_stream(self, call: _Call) -> _OpenStream:
        async with contextlib.AsyncExitStack() as slot:
            await slot.enter_async_context(self._aadmitted(call, self._araw_stream_call))
            try:
                chunks = await self._araw_stream_call(call.request, call.timeout)
                assembler = StreamAssembler()
                first = None
                async for chunk in chunks:
                    first = assembler.feed(chunk)
                    if first:
                        break
                if first is None and assembler.unfinished():
                    raise MalformedResponseError(str(assembler.unfinished()))
            except APIError as error:
                _reraise_refined(self._refine_error(error, call.kind), error)
                raise
            return _OpenStream(chunks, assembler, first, slot.pop_all())

    async def _astream_rest(self, call: _Call, opened: _OpenStream) -> AsyncIterator[str]:
        async with opened.slot:
            if opened.first is not None:
                yield opened.first
            try:
                async for chunk in opened.chunks:
                    text = opened.assembler.feed(chunk)
                    if text:
                        yield text
            except APIError as error:
                raise StreamInterruptedError(opened.assembler.text, opened.assembler.chunks, error) from error


def _input_count(call: _Call) -> int:
    """How many vectors an embeddings request asks for: one for a string, one per text of a list."""
    texts = call.request["input"]
    return 1 if isinstance(texts, str) else len(texts)


def _reraise_refined(refined: APIError, original: APIError) -> None:
    if refined is not original:
        raise refined from original


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


def _remember_key(sdk: SDKClient) -> None:
    """The key an SDK client sends is a secret wherever it came from (a variable, a local
    server's generated key): mask it in every message (redact.py)."""
    key = getattr(sdk, "api_key", None)
    if key != NO_KEY_NEEDED:
        remember(key)


async def _close_when_loop_ends(sdk: SDKClient, forget: Callable[[], None]) -> AsyncIterator[None]:
    """Closes `sdk` when its event loop shuts down its async generators (asyncio.run does), then
    calls `forget`.

    Without it, an async client outlives its loop and its connections are torn down later from
    a closed loop: the "Event loop is closed" errors of notebooks rerunning cells.
    """
    try:
        yield
    finally:
        try:
            await sdk.close()
        finally:
            forget()
