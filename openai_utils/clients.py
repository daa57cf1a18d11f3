"""OpenAIClient and AzureClient: send_message and get_embedding with retries and the cache.

A client is cheap to build (no file, no connection): everything it needs is read from `default`
and the environment at call time, and the SDK client behind it is built on first use and kept,
so connections are reused, until its settings (key, endpoint) change.

Custom clients subclass OpenAIClient and override `_raw_model_call` (and, for embeddings,
`_raw_embedding_call`); raising NonTerminalError there makes our backoff retry the call.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .cache import ResponseCache, open_cache
from .config import default
from .exceptions import MissingCredentialsError, NonTerminalError, RetriesExhaustedError
from .request import build_chat_request, build_embedding_request, cache_key
from .response import chat_record, chat_result, embedding_vectors
from .retry import RetryPolicy
from .tokens import count_tokens
from .transport import build_azure_sdk, build_openai_sdk, post_json

if TYPE_CHECKING:
    import openai

__all__ = ["OpenAIClient", "AzureClient"]

logger = logging.getLogger("openai_utils")

T = TypeVar("T")

OPENAI_DEFAULT_ENDPOINT = "https://api.openai.com/v1"
NO_KEY_NEEDED = "no-key-needed"
"""Sent as the key to a BASE_URL server when OPENAI_API_KEY is unset: local servers ignore it."""


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
        random_value: Callable[[], float] = random.random,
    ) -> None:
        """`cache_api_calls` / `cache_file_name` of None follow CACHE_API_CALLS / CACHE_FILE_NAME
        at call time. `sleep` and `random_value` drive the backoff waits; tests pass their own."""
        self.cache_api_calls = cache_api_calls
        self.cache_file_name = cache_file_name
        self._sleep = sleep
        self._random = random_value
        self._sdk_lock = threading.Lock()
        self._sdk_client: Any = None
        self._sdk_settings: tuple[Any, ...] | None = None
        self._counter_lock = threading.Lock()
        self.cache_hits = 0
        self.cache_misses = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(api_type={self.api_type!r}, cache_api_calls={self.cache_api_calls!r}, cache_file_name={self.cache_file_name!r})"

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
        return open_cache(self.cache_file_name or default["cache_file_name"])

    def _sdk_settings_now(self) -> tuple[Any, ...]:
        """The settings the SDK client is built from, read from config and environment now."""
        base_url = default["base_url"] or os.environ.get("OPENAI_BASE_URL") or None
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            if base_url is None:
                raise MissingCredentialsError(
                    "no OpenAI API key: set the environment variable OPENAI_API_KEY (or put it in a "
                    ".env file), or set BASE_URL in config.ini to use another OpenAI-compatible server",
                    self.key_variables,
                )
            key = NO_KEY_NEEDED
        return (key, base_url)

    def _build_sdk(self, settings: tuple[Any, ...]) -> openai.OpenAI:
        key, base_url = settings
        return build_openai_sdk(key, base_url)

    def _endpoint(self) -> str:
        """The server, as part of the cache key: the same request to another server is another answer."""
        return default["base_url"] or os.environ.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_ENDPOINT

    def _sdk(self) -> Any:
        settings = self._sdk_settings_now()
        with self._sdk_lock:
            if self._sdk_client is None or settings != self._sdk_settings:
                if self._sdk_client is not None:
                    self._sdk_client.close()
                self._sdk_client = self._build_sdk(settings)
                self._sdk_settings = settings
            return self._sdk_client

    def _policy(self, max_attempts: int | None, waiting_time: float | None, factor: float | None) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=max_attempts if max_attempts is not None else default["max_attempts"],
            waiting_time=waiting_time if waiting_time is not None else default["waiting_time"],
            backoff_factor=factor if factor is not None else default["exponential_backoff_factor"],
            max_waiting_time=default["max_waiting_time"],
        )

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
        **extra: Any,
    ) -> dict[str, Any] | list[Any] | None:
        """Send a conversation; return the assistant message as a plain dict.

        Any argument left as None takes its value from `default` now, at call time; a sampling
        parameter that is None there too is not sent at all. Further API parameters (`seed`,
        `tools`, `response_format`, ...) pass through as given. With n > 1 the result is a list
        of messages, one per choice. With echo=True it is the conversation plus the reply.
        Returns None when every attempt failed with a retryable error (or raises
        RetriesExhaustedError with RAISE_ON_FAILURE); other errors raise at once.
        """
        params: dict[str, Any] = {
            "model": model or default["model"],
            "temperature": temperature if temperature is not None else default["temperature"],
            "max_tokens": max_tokens if max_tokens is not None else default["max_tokens"],
            "top_p": top_p if top_p is not None else default["top_p"],
            "frequency_penalty": frequency_penalty if frequency_penalty is not None else default["frequency_penalty"],
            "presence_penalty": presence_penalty if presence_penalty is not None else default["presence_penalty"],
            "stop": stop or None,
            "n": n if n != 1 else None,
            **extra,
        }
        request = build_chat_request(current_messages, params)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("sending %d message(s) to %s, about %s prompt tokens", len(request["messages"]), request["model"], count_tokens(request["messages"], request["model"]))
        record = self._call(
            "chat",
            request,
            lambda: chat_record(self._raw_model_call(request, self._timeout(timeout))),
            self._policy(max_attempts, waiting_time, exponential_backoff_factor),
        )
        if record is None:
            return None
        return chat_result(record, n, echo, current_messages)

    def get_embedding(
        self,
        text: str | Sequence[str],
        model: str | None = None,
        timeout: float | None = None,
        max_attempts: int | None = None,
    ) -> list[float] | list[list[float]] | None:
        """One vector for a string, or a list of vectors (in order) for a list of strings.

        Same retries, cache and failure contract as send_message.
        """
        request = build_embedding_request(text, model or default["embedding_model"])
        count = 1 if isinstance(text, str) else len(request["input"])
        vectors = self._call(
            "embedding",
            request,
            lambda: embedding_vectors(self._raw_embedding_call(request, self._timeout(timeout)), count),
            self._policy(max_attempts, None, None),
        )
        if vectors is None:
            return None
        return vectors[0] if isinstance(text, str) else vectors

    def _count_tokens(self, messages: Sequence[Mapping[str, Any]], model: str, tools: Sequence[Mapping[str, Any]] | None = None) -> int | None:
        """Prompt tokens of a chat request, estimated offline; None when no encoding is available."""
        return count_tokens(messages, model, tools)

    # -- one HTTP attempt (override these in a custom client) -----------------------------

    def _raw_model_call(self, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """One chat completion attempt; returns the server's JSON."""
        return post_json(self._sdk(), "/chat/completions", request, timeout, self._auth_hint())

    def _raw_embedding_call(self, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """One embeddings attempt; returns the server's JSON."""
        return post_json(self._sdk(), "/embeddings", request, timeout, self._auth_hint())

    # -- the shared path: cache, then attempts ---------------------------------------------

    def _call(self, kind: str, request: Mapping[str, Any], attempt: Callable[[], T], policy: RetryPolicy) -> T | None:
        try:
            cache = self._cache()
            if cache is None:
                return self._with_retries(attempt, policy)
            key = cache_key(self.api_type, self._endpoint(), kind, request)
            value, hit = cache.get_or_compute(key, lambda: self._with_retries(attempt, policy))
            with self._counter_lock:
                if hit:
                    self.cache_hits += 1
                else:
                    self.cache_misses += 1
            return value
        except RetriesExhaustedError as exc:
            logger.error("%s call to %s failed: %s", kind, request.get("model"), exc)
            if default["raise_on_failure"]:
                raise
            return None

    def _with_retries(self, attempt: Callable[[], T], policy: RetryPolicy) -> T:
        attempts = policy.start(self._random)
        while True:
            try:
                return attempt()
            except NonTerminalError as error:
                self._sleep(attempts.failed(error))

    def _timeout(self, timeout: float | None) -> float:
        return timeout if timeout is not None else default["timeout"]

    def _auth_hint(self) -> str:
        return " or ".join(self.key_variables)


class AzureClient(OpenAIClient):
    """Calls Azure OpenAI: `model` names the deployment; endpoint and key come from the environment."""

    api_type = "azure"
    key_variables = ("AZURE_OPENAI_KEY", "AZURE_OPENAI_API_KEY")

    def _sdk_settings_now(self) -> tuple[Any, ...]:
        endpoint = os.environ.get("AZURE_OPENAI_ENDPOINT")
        if not endpoint:
            raise MissingCredentialsError(
                "no Azure endpoint: set the environment variable AZURE_OPENAI_ENDPOINT "
                "(e.g. https://my-resource.openai.azure.com/)",
                ("AZURE_OPENAI_ENDPOINT",),
            )
        key = os.environ.get("AZURE_OPENAI_KEY") or os.environ.get("AZURE_OPENAI_API_KEY")
        ad_token = os.environ.get("AZURE_OPENAI_AD_TOKEN")
        if not key and not ad_token:
            raise MissingCredentialsError(
                "no Azure OpenAI key: set the environment variable AZURE_OPENAI_KEY "
                "(or AZURE_OPENAI_API_KEY), or AZURE_OPENAI_AD_TOKEN for an Entra ID token",
                self.key_variables,
            )
        return (endpoint, default["azure_api_version"], key or None, None if key else ad_token)

    def _build_sdk(self, settings: tuple[Any, ...]) -> openai.OpenAI:
        endpoint, api_version, key, ad_token = settings
        return build_azure_sdk(endpoint, api_version, key, ad_token)

    def _endpoint(self) -> str:
        return os.environ.get("AZURE_OPENAI_ENDPOINT", "")
