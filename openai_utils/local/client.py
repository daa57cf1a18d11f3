"""The embedded local model's client (`api_type = "local"`).

`LocalBackend` sends requests to the llama.cpp servers of server.py; `LocalClient` is an
OpenAIClient over it.
Everything else (retries, the cache, error translation, streaming, async, the return values) is
the shared OpenAIClient path, so code written against `client()` runs unchanged, offline, with
`API_TYPE = local`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..backend import Backend
from ..config import default
from ..exceptions import APIError, InvalidRequestError
from ..openai_client import OpenAIClient
from ..request import CHAT, EMBEDDING
from ..sdk_backend import SDKBackend
from ..transport import SDKClient
from .paths import CHAT_FILE
from .server import LocalServer, chat_server, embedding_server
from .specs import CHAT_ALIAS, EMBEDDING_ALIAS, chat_spec, model_alias

__all__ = ["LocalClient", "LocalBackend", "LocalSettings"]


def _error_fields(body: Any) -> Mapping[str, Any]:
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            return inner
    return {}


@lru_cache(maxsize=16)
def _endpoint(chat: str | None, embedding: str | None) -> str:
    """LocalBackend.endpoint for these two settings, memoized on them: it is in every cache key."""
    chat_name = Path(chat).name if chat else CHAT_FILE
    embedding_name = Path(embedding).name if embedding else EMBEDDING_ALIAS
    return f"local:{chat_name}+{embedding_name}"


@dataclass(frozen=True)
class LocalSettings:
    """The running server for a call kind, its URL and key, and this process: a restarted
    server (new port and key) or a forked child gets a new SDK client instead of a dead port or
    a connection pool shared with the parent."""

    server: LocalServer
    base_url: str
    key: str | None
    pid: int


class LocalBackend(SDKBackend):
    """Sends to the embedded llama.cpp servers: no key, no network.

    It only says where requests go (the shared servers, started on first use) and rewords
    llama.cpp's errors. A call that names no model sends the local model's alias, not MODEL /
    EMBEDDING_MODEL (which name remote models): llama.cpp would accept any name, but the
    answer's `model`, the usage stats and the cache key then say what really answered.
    """

    auth_hint = "the key the local server generated (nothing to set)"
    has_batches = False

    def default_model(self, kind: str) -> str:
        """The alias the server of `kind` answers to, from the setting alone (see model_alias):
        a changed setting reaches the next call, and a cache hit looks at no file."""
        if kind == CHAT:
            return model_alias(default["local_chat_model"], CHAT_ALIAS)
        return model_alias(default["local_embedding_model"], EMBEDDING_ALIAS)

    def settings_now(self, kind: str) -> LocalSettings:
        """The running server for `kind` (started now if need be)."""
        server = embedding_server() if kind == EMBEDDING else chat_server()  # the chat server answers /responses too
        return LocalSettings(server, server.base_url, server.api_key, os.getpid())

    def build_sdk(self, settings: LocalSettings, asynchronous: bool) -> SDKClient:
        return settings.server.build_sdk(asynchronous)

    def endpoint(self) -> str:
        """Both model files: the same request to another local model is another answer."""
        return _endpoint(default["local_chat_model"], default["local_embedding_model"])

    def refine_error(self, error: APIError, kind: str) -> APIError:
        """Say what an over-long input means here, and make it a 400 whatever llama.cpp sent.

        llama.cpp answers a prompt over the context with a 400 of type
        `exceed_context_size_error`, whose text ("try increasing it") does not name the setting
        to raise; an embedding input that outgrows the batch is even a 500, which would be
        retried for nothing. Both become InvalidRequestError with OpenAI's code
        `context_length_exceeded`, so callers can test one code whatever the backend.
        """
        fields = _error_fields(error.body)
        too_long = fields.get("type") == "exceed_context_size_error" or "too large to process" in error.message
        if not too_long:
            return error
        tokens = fields.get("n_prompt_tokens", "more")
        if kind == EMBEDDING:
            message = (
                f"an input is {tokens} tokens, longer than the local embedding model's context of "
                f"{fields.get('n_ctx', 'its')} tokens: split the text. llama.cpp said: {error.message}"
            )
        else:
            spec = chat_spec()
            message = (
                f"the prompt is {tokens} tokens, longer than the local chat model's context of "
                f"{fields.get('n_ctx', '?')} tokens per request (LOCAL_CONTEXT_SIZE {spec.context_size} "
                f"split over LOCAL_SLOTS {spec.slots}): shorten the conversation or raise "
                f"LOCAL_CONTEXT_SIZE. llama.cpp said: {error.message}"
            )
        return InvalidRequestError(
            message,
            status_code=400,
            request_id=error.request_id,
            code="context_length_exceeded",
            body=error.body,
        )


class LocalClient(OpenAIClient):
    """A client for the embedded llama.cpp servers: `API_TYPE = local`, no key, no network.
    Retries, the cache, streaming and the async calls are OpenAIClient's; see LocalBackend."""

    api_type = "local"
    key_variables: tuple[str, ...] = ()

    def _make_backend(self) -> Backend:
        return LocalBackend()
