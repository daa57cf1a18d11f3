"""Backends that send through the openai SDK: the shared lifecycle, and the OpenAI one.

`SDKBackend` keeps one sync SDK client per call kind and one async client per kind per event
loop, built on first use from settings read at call time (`settings_now`, a small frozen value
object) and rebuilt when those change; the async ones are closed when their loop shuts down, and
a forked child starts with none (forksafe.py). Subclasses say only what the settings are and how
an SDK client is built from them: `OpenAIBackend` here, `AzureBackend` in azure.py, `LocalBackend`
in local/client.py.
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, NamedTuple

from .backend import PATHS, Backend
from .config import default
from .exceptions import MissingCredentialsError
from .forksafe import keep_forever, renew_in_child
from .redact import remember
from .request import CHAT
from .transport import (
    SDKClient,
    aopen_stream,
    apost_json,
    build_openai_sdk,
    open_stream,
    post_json,
)

__all__ = ["SDKBackend", "OpenAIBackend", "OpenAISettings"]

OPENAI_DEFAULT_ENDPOINT = "https://api.openai.com/v1"
NO_KEY_NEEDED = "no-key-needed"
"""Sent as the key to a BASE_URL server when OPENAI_API_KEY is unset: local servers ignore it."""
OFFLINE_WAY_OUT = (
    '; or, with no key at all, run the embedded local model: force_api_type("local") '
    "(API_TYPE = local in config.ini) after python -m openai_utils local setup"
)
"""Ends every missing-credentials message: a notebook user without a key can still go on offline."""


class SDKBackend(Backend):
    """A backend over openai SDK clients; subclasses give `settings_now` and `build_sdk`."""

    def __init__(self) -> None:
        self._sdk_lock = threading.Lock()
        self._sdks: dict[str, tuple[Any, SDKClient]] = {}
        self._async_sdks: weakref.WeakKeyDictionary[Any, dict[str, tuple[Any, SDKClient, Any]]] = (
            weakref.WeakKeyDictionary()
        )
        renew_in_child(self)

    def settings_now(self, kind: str) -> Any:
        """What the SDK client for `kind` is built from, read from config and environment now;
        a value object compared with == to tell whether the client must be rebuilt."""
        raise NotImplementedError

    def build_sdk(self, settings: Any, asynchronous: bool) -> SDKClient:
        """A new SDK client from `settings`; its retries off (the client's are the only layer)."""
        raise NotImplementedError

    # -- one request --------------------------------------------------------------------------

    def post(self, kind: str, body: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        return post_json(self.connect(kind), PATHS[kind], body, timeout, self.auth_hint)

    def open_stream(self, kind: str, body: Mapping[str, Any], timeout: float) -> Iterator[dict[str, Any]]:
        return open_stream(self.connect(kind), PATHS[kind], body, timeout, self.auth_hint)

    async def apost(self, kind: str, body: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        return await apost_json(await self.aconnect(kind), PATHS[kind], body, timeout, self.auth_hint)

    async def aopen_stream(self, kind: str, body: Mapping[str, Any], timeout: float) -> AsyncIterator[dict[str, Any]]:
        return await aopen_stream(await self.aconnect(kind), PATHS[kind], body, timeout, self.auth_hint)

    has_batches = True
    """Whether the server can have batch endpoints (the embedded local model has none)."""

    def batch_endpoints(self) -> Any:
        from .batch_transport import SDKBatchEndpoints

        if not self.has_batches:
            return super().batch_endpoints()
        return SDKBatchEndpoints(self.connect(CHAT), self.auth_hint, default["timeout"])

    # -- the SDK clients ----------------------------------------------------------------------

    def connect(self, kind: str) -> SDKClient:
        """The sync SDK client for `kind`, rebuilt only when its settings changed."""
        settings = self.settings_now(kind)
        with self._sdk_lock:
            current = self._sdks.get(kind)
            if current is not None and current[0] == settings:
                return current[1]
            if current is not None:
                current[1].close()
            sdk = self.build_sdk(settings, asynchronous=False)
            _remember_key(sdk)
            self._sdks[kind] = (settings, sdk)
            return sdk

    async def aconnect(self, kind: str) -> SDKClient:
        """The async SDK client for `kind` in the running loop, closed when that loop shuts down
        and then forgotten: neither the client nor the loop outlives the loop's end."""
        import asyncio

        loop = asyncio.get_running_loop()
        settings = self.settings_now(kind)
        self._forget_closed_loops()
        current = self._async_sdks.get(loop, {}).get(kind)
        if current is not None and current[0] == settings:
            return current[1]
        if current is not None:
            await current[2].aclose()  # closes it and forgets it
        sdk = self.build_sdk(settings, asynchronous=True)
        _remember_key(sdk)
        closer = _close_when_loop_ends(sdk, functools.partial(self._forget_async_sdk, weakref.ref(loop), kind, sdk))
        await closer.__anext__()
        self._async_sdks.setdefault(loop, {})[kind] = (settings, sdk, closer)
        return sdk

    def close(self) -> None:
        """Close the sync connections now rather than at exit; the next call opens new ones.

        Async clients are closed by their event loop's shutdown (asyncio.run does it).
        """
        with self._sdk_lock:
            for _, sdk in self._sdks.values():
                sdk.close()
            self._sdks.clear()

    async def aclose(self) -> None:
        """Close the async SDK clients of the running loop now."""
        import asyncio

        for _, _, closer in list(self._async_sdks.get(asyncio.get_running_loop(), {}).values()):
            await closer.aclose()

    def _renew_after_fork(self) -> None:
        """In a forked child: start with no SDK client and fresh locks.

        The parent's SDK clients hold its pooled connections; used here they would mix up the
        answers of parent and child. They are kept, never closed (see forksafe.keep_forever).
        """
        keep_forever((self._sdks, dict(self._async_sdks)))
        self._sdk_lock = threading.Lock()
        self._sdks = {}
        self._async_sdks = weakref.WeakKeyDictionary()

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


class OpenAISettings(NamedTuple):
    """What an OpenAI SDK client is built from: the key sent, and the server (None: OpenAI's)."""

    key: str
    base_url: str | None


class OpenAIBackend(SDKBackend):
    """The OpenAI API, or any OpenAI-compatible server named by BASE_URL (or OPENAI_BASE_URL)."""

    key_variables: tuple[str, ...] = ("OPENAI_API_KEY",)
    auth_hint = "OPENAI_API_KEY"

    def settings_now(self, kind: str) -> OpenAISettings:
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
        return OpenAISettings(key, base_url)

    def build_sdk(self, settings: OpenAISettings, asynchronous: bool) -> SDKClient:
        return build_openai_sdk(settings.key, settings.base_url, asynchronous)

    def endpoint(self) -> str:
        return default["base_url"] or os.environ.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_ENDPOINT


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
