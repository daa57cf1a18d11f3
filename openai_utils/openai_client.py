"""OpenAIClient: chat and embeddings, sync and async, streamed or not.

A client is cheap to build (no file, no connection): everything it needs is read from `default`
and the environment at call time. Each request itself is its backend's (backend.py), which keeps
the SDK clients behind it.

This module is the public driver only: what a client offers (send_message, get_embedding, their
async twins, the usage counts) and the hooks a subclass may override. Turning the public arguments
into a prepared call is call.py's; running it, sync or async, through the flows of flow.py and the
cache is drivers.py's.

Custom clients subclass OpenAIClient and override `_raw_model_call` / `_raw_embedding_call`
(one attempt each; their async twins default to running them in a thread); raising
NonTerminalError there makes the call retried.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from . import api_mode, drivers
from .backend import Backend
from .cache import ResponseCache, cache_for_calls
from .call import Call, Target, prepare_chat, prepare_embedding
from .config import default
from .exceptions import APIError
from .forksafe import renew_in_child
from .legacy import adapt as adapt_legacy
from .request import CHAT, EMBEDDING
from .response import chat_result
from .sdk_backend import OpenAIBackend
from .tokens import count_tokens
from .transport import SDKClient
from .usage import UsageStats, counted, format_stats, process_usage

if TYPE_CHECKING:
    from .cache_store import StoreCache

__all__ = ["OpenAIClient", "CHAT", "EMBEDDING"]

T = TypeVar("T")


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

    def _cache(self) -> ResponseCache | StoreCache | None:
        enabled = self.cache_api_calls if self.cache_api_calls is not None else default["cache_api_calls"]
        if not enabled:
            return None
        return cache_for_calls(self.cache_file_name or None, fsync=default["cache_fsync"])

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

    # -- what preparing and running a call take from the client (call.py, drivers.py) ----

    def _target(self) -> Target:
        """What preparing a call needs from this client (call.py)."""
        return Target(self.api_type, self._default_model, self._endpoint, self._cache())

    def _account(self, call: Call, record: Mapping[str, Any], hit: bool) -> None:
        """Count a finished call: cache hit or miss, and its tokens and cost."""
        if call.cache is not None:
            with self._counter_lock:
                if hit:
                    self.cache_hits += 1
                else:
                    self.cache_misses += 1
        model = record.get("model") or call.request.get("model")
        counts = counted(model, record.get("usage"))  # once, for both totals
        self.usage.add(model, counts, hit)
        process_usage.add(model, counts, hit)

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
        call = prepare_chat(self._target(), current_messages, extra, locals())
        if stream:
            return drivers.stream(self, call)
        outcome = drivers.run(self, call, "model")
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
        call = prepare_chat(self._target(), current_messages, extra, locals())
        if stream:
            return await drivers.astream(self, call)
        outcome = await drivers.arun(self, call, "model")
        return None if outcome is None else chat_result(outcome[0], n, echo, current_messages, call.parse, outcome[1])

    def send_messages(
        self,
        conversations: Sequence[Sequence[Mapping[str, Any]]],
        max_workers: int | None = None,
        progress: Any = None,
        batch: bool | str = False,
        **params: Any,
    ) -> list[Any]:
        """send_message for each conversation, in a thread pool; results in input order.

        A failed item holds its exception object, an item whose retries ran out holds None (see
        parallel.py); `progress` shows a tqdm bar (None: when interactive, True, False, or a
        callable(done, total)). At most MAX_CONCURRENT_MODEL_CALLS requests are in flight.
        batch=True (or "auto") sends them as one batch job at the batch price (docs/batch.md).
        """
        if batch is False:
            from .parallel import send_messages

            return send_messages(self, conversations, max_workers, progress, params)
        from . import batch_run

        return batch_run.send_messages(self, conversations, batch, max_workers, progress, params)

    def submit_batch(self, conversations: Sequence[Sequence[Mapping[str, Any]]], **params: Any) -> Any:
        """send_messages(batch=True) without waiting: the `BatchJob` (status, wait, results, cancel)."""
        from .batch_run import submit_chat

        return submit_chat(self, conversations, params)

    def get_embedding(
        self,
        text: str | Sequence[str],
        model: str | None = None,
        timeout: float | None = None,
        max_attempts: int | None = None,
        batch: bool | str = False,
    ) -> Any:
        """One vector for a string, or a list of vectors (in order) for a list of strings.

        Same retries, cache and failure contract as send_message. A list longer than one request
        may carry (2,048 texts) goes out in parts, each cached on its own; batch=True: docs/batch.md.
        """
        if batch is not False:
            from . import batch_run

            return batch_run.get_embedding(self, text, model, timeout, max_attempts, batch)
        vectors: list[Any] = []
        for call in prepare_embedding(self._target(), text, model, timeout, max_attempts):
            outcome = drivers.run(self, call, "embedding")
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
        for call in prepare_embedding(self._target(), text, model, timeout, max_attempts):
            outcome = await drivers.arun(self, call, "embedding")
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
        return api_mode.post(self.backend, request, timeout)

    def _raw_embedding_call(self, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """One embeddings attempt; returns the server's JSON."""
        return self.backend.post(EMBEDDING, request, timeout)

    def _raw_stream_call(self, request: Mapping[str, Any], timeout: float) -> Iterator[dict[str, Any]]:
        """Open one streamed chat completion; its chunks as dicts."""
        return api_mode.open_stream(self.backend, request, timeout)

    async def _araw_model_call(self, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        if _overrides(self, "_raw_model_call"):
            return await _in_thread(self._raw_model_call, request, timeout)
        return await api_mode.apost(self.backend, request, timeout)

    async def _araw_embedding_call(self, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        if _overrides(self, "_raw_embedding_call"):
            return await _in_thread(self._raw_embedding_call, request, timeout)
        return await self.backend.apost(EMBEDDING, request, timeout)

    async def _araw_stream_call(self, request: Mapping[str, Any], timeout: float) -> AsyncIterator[dict[str, Any]]:
        return await api_mode.aopen_stream(self.backend, request, timeout)

    def _auth_hint(self) -> str:
        return self.backend.auth_hint

    # -- getting ready to send (the flow's Connect step, drivers.py) ------------------------

    def _connect(self, kind: str, what: str) -> None:
        """Get ready to send `what` before the rate-limit token is taken: build the SDK client
        when the raw call is one of ours (a custom one builds what it needs itself)."""
        if _sends_with_our_sdk(self, getattr(self, f"_raw_{what}_call")):
            self._sdk(api_mode.connect_kind(kind))

    async def _aconnect(self, kind: str, what: str) -> None:
        """The async form of `_connect`."""
        if _sends_with_our_sdk(self, getattr(self, f"_araw_{what}_call")):
            await self._async_sdk(api_mode.connect_kind(kind))


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
