"""The seam for one request: a `Backend` sends it, the client around it does everything else.

A client (openai_client.py) prepares a call, retries it, caches and counts it; the backend it holds only
performs one attempt, in the manner of an httpx transport: `post` a JSON body and return the
server's JSON, or `open_stream` and yield its chunks, each with an async twin. It also knows its
server (`endpoint`, part of cache and rate-limit keys), the model a call uses when it names none,
how to reword its server's errors, and how to close.

`MockBackend(handler)` takes a plain function, so tests and custom integrations need no
subclassing; the SDK-backed backends (openai, Azure, the local model) live in sdk_backend.py,
azure.py and local/client.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any

from .config import default
from .exceptions import APIError
from .request import CHAT

__all__ = ["Backend", "MockBackend"]

PATHS = {"chat": "/chat/completions", "embedding": "/embeddings", "responses": "/responses"}
"""Where each call kind (request.CHAT, request.EMBEDDING, request.RESPONSES) is sent on an OpenAI-style server."""


class Backend:
    """Performs one request. Subclass it and override `post` and `open_stream` (the async twins
    default to running those in a thread), or use `MockBackend` with a plain function.

    `kind` is request.CHAT or request.EMBEDDING; `body` is the request exactly as it goes on the
    wire; `timeout` bounds the whole attempt. Errors are raised as openai_utils.exceptions
    (a NonTerminalError is retried by the client).
    """

    auth_hint: str = ""
    """Where the credentials come from, named in authentication errors."""

    def post(self, kind: str, body: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """One attempt; the server's JSON answer."""
        raise NotImplementedError(f"{type(self).__name__} does not send {kind} requests")

    def open_stream(self, kind: str, body: Mapping[str, Any], timeout: float) -> Iterator[dict[str, Any]]:
        """Open one streamed attempt; its chunks as dicts."""
        raise NotImplementedError(f"{type(self).__name__} does not stream {kind} requests")

    async def apost(self, kind: str, body: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        import asyncio

        return await asyncio.to_thread(self.post, kind, body, timeout)

    async def aopen_stream(self, kind: str, body: Mapping[str, Any], timeout: float) -> AsyncIterator[dict[str, Any]]:
        import asyncio

        return _in_threads(await asyncio.to_thread(self.open_stream, kind, body, timeout))

    def connect(self, kind: str) -> Any:
        """Get ready to send `kind` (build a connection, start a server) before the rate-limit
        token is taken, so nothing slow lies between the token and the send; what it built."""
        return None

    async def aconnect(self, kind: str) -> Any:
        """The async form of `connect`."""
        return None

    def endpoint(self) -> str:
        """The server, as part of the cache key: the same request to another server is another answer."""
        return "custom"

    def default_model(self, kind: str) -> str:
        """The model a call uses when it names none."""
        return str(default["model"] if kind == CHAT else default["embedding_model"])

    def refine_error(self, error: APIError, kind: str) -> APIError:
        """Reword a server's error for this kind of server; the default keeps it."""
        return error

    def batch_endpoints(self) -> Any:
        """The server's batch endpoints (batch_transport.SDKBatchEndpoints' methods: upload,
        create, retrieve, cancel, list, content), for jobs that answer later (batch.md); a
        backend without them raises BatchUnsupportedError naming its server."""
        from .exceptions import BatchUnsupportedError

        raise BatchUnsupportedError(f"{type(self).__name__} ({self.endpoint()}) has no batch endpoints")

    def batch_url(self, kind: str) -> str:
        """The `url` of a batch line and the `endpoint` of a batch for `kind` (OpenAI's form)."""
        return "/v1" + PATHS[kind]

    def close(self) -> None:
        """Close the sync connections; the next request opens new ones."""

    async def aclose(self) -> None:
        """Close the async connections of the running loop."""


Handler = Callable[[str, Mapping[str, Any]], Any]


class MockBackend(Backend):
    """A backend that calls `handler(kind, body)`: a dict answers a plain request, an iterable of
    chunk dicts a streamed one. Raising an openai_utils error (e.g. ServerError) acts as the
    server failing, retries included. `endpoint` names it in cache keys."""

    def __init__(self, handler: Handler, endpoint: str = "mock") -> None:
        self.handler = handler
        self._endpoint = endpoint

    def __repr__(self) -> str:
        return f"MockBackend({self.handler!r}, endpoint={self._endpoint!r})"

    def post(self, kind: str, body: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        return dict(self.handler(kind, body))

    def open_stream(self, kind: str, body: Mapping[str, Any], timeout: float) -> Iterator[dict[str, Any]]:
        return iter(self.handler(kind, body))

    async def apost(self, kind: str, body: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        return self.post(kind, body, timeout)

    async def aopen_stream(self, kind: str, body: Mapping[str, Any], timeout: float) -> AsyncIterator[dict[str, Any]]:
        return _aiter(self.open_stream(kind, body, timeout))

    def endpoint(self) -> str:
        return self._endpoint


async def _aiter(chunks: Iterable[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for chunk in chunks:
        yield chunk


async def _in_threads(chunks: Iterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """A sync stream read in a thread, chunk by chunk, so the loop never waits on a socket."""
    import asyncio

    done = object()
    while True:
        chunk = await asyncio.to_thread(next, chunks, done)
        if chunk is done:
            return
        yield chunk  # type: ignore[misc]
