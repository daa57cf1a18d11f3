"""The floors the benchmarks hold openai_utils against: the least work any client has to do.

- `RawHTTP`, for a call: the openai SDK's own HTTP client (httpx2 under openai 3, httpx before;
  `sdk_http()` asks the installed SDK) posting the exact JSON bytes the SDK sends to the same
  loopback server, and parsing the JSON answer. No client library could do less per call.
- `KeyLookup`, for a cache hit: the canonical key openai_utils computes
  (`openai_utils.key_encoding.cache_key`), one dict lookup, and the fresh copy a hit returns.

Both check, when built, that they do the same work as the call they stand under (the same
bytes reach the server; the key found is the one the client stored), so a ratio to them means
what it says. Kept apart from timing.py because they import the SDK and openai_utils, which the
table printer and the statistics must not.
"""

from __future__ import annotations

import importlib
import json
import pickle
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

__all__ = ["sdk_http", "sent_body", "RawHTTP", "KeyLookup"]


def sdk_http() -> ModuleType:
    """The HTTP package the installed openai SDK builds its clients on."""
    import openai

    for cls in openai.DefaultHttpxClient.__mro__:
        if cls.__module__.split(".")[0] != "openai" and cls is not object:
            return importlib.import_module(cls.__module__.split(".")[0])
    raise RuntimeError("the openai SDK's HTTP client has no base class outside openai")


def sent_body(base_url: str, api_key: str, model: str, messages: Sequence[Mapping[str, Any]]) -> bytes:
    """The bytes the raw SDK sends for this chat call, captured as they leave."""
    import openai

    seen: list[bytes] = []
    http = sdk_http().Client(trust_env=False, event_hooks={"request": [lambda request: seen.append(request.content)]})
    sdk = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, http_client=http)
    try:
        sdk.chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]
    finally:
        sdk.close()
    return seen[-1]


class RawHTTP:
    """One chat call with no client library: POST `body` with the SDK's HTTP client, parse the JSON."""

    def __init__(self, base_url: str, api_key: str, body: bytes) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.body = body
        self.client = sdk_http().Client(
            trust_env=False,
            timeout=60.0,  # a local model's completion, on a busy machine, takes seconds
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        )

    def __call__(self) -> Any:
        response = self.client.post(self.url, content=self.body)
        response.raise_for_status()
        return json.loads(response.content)

    def check(self, expected: str) -> None:
        """Fail unless the answer's text is `expected`: the floor makes the same call it stands under."""
        content = self()["choices"][0]["message"]["content"]
        if content != expected:
            raise RuntimeError(f"the raw HTTP floor got {content!r}, the call it stands under {expected!r}")

    def close(self) -> None:
        self.client.close()


class KeyLookup:
    """A cache hit with nothing but the work it must do: key, lookup, a fresh copy of the message.

    `request` is the body the client sent on the miss (as the server received it) and `stored`
    the cache's entries as (key, value); building fails unless the key computed here is among
    them, so the floor looks up exactly what the client looks up.
    """

    def __init__(
        self, api_type: str, endpoint: str, request: Mapping[str, Any], stored: Sequence[tuple[str, Any]]
    ) -> None:
        from openai_utils.key_encoding import cache_key
        from openai_utils.request import CHAT

        self._key = cache_key
        self._parts = (api_type, endpoint, CHAT)
        self._template = {k: v for k, v in request.items() if k != "messages"}
        self._entries = {key: pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL) for key, value in stored}
        key = cache_key(api_type, endpoint, CHAT, request)
        if key not in self._entries:
            raise RuntimeError(f"the floor's key {key} is not among the {len(self._entries)} the client stored")

    def __call__(self, messages: Sequence[Mapping[str, Any]]) -> Any:
        key = self._key(*self._parts, {**self._template, "messages": messages})
        return pickle.loads(self._entries[key])["choices"][0]["message"]  # noqa: S301 - written just above
