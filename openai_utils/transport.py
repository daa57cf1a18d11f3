"""The boundary with the openai SDK: build its clients, send one request, translate its errors.

No other module imports `openai`, so importing openai_utils stays cheap and the SDK loads once,
on the first request. Requests go through the SDK's generic `post` with the body as we built it:
every parameter passes through unchanged (new API fields, or a local server's own ones), and the
body comes back as the server's JSON, parsed once, with no SDK objects in between.

Every SDK client is built on `http_client`, whose hooks read each answer within the attempt's
bounds (wire.py): TIMEOUT for the whole attempt (for a stream: for the first chunk, then for each
next one) and MAX_RESPONSE_BYTES once decompressed.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    ContentFilterError,
    InvalidRequestError,
    MalformedResponseError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from .redact import redact, redact_value, remember
from .response import filtered_categories
from .retry import parse_retry_after

if TYPE_CHECKING:
    import openai

    from .wire import Deadline

__all__ = [
    "http_client",
    "build_openai_sdk",
    "build_azure_sdk",
    "post_json",
    "apost_json",
    "open_stream",
    "aopen_stream",
    "translate_error",
]

SDKClient = Any
"""An `openai.OpenAI`, `AzureOpenAI` or their async twins; typed loosely to keep openai unimported."""


def http_client(asynchronous: bool = False, **options: Any) -> Any:
    """The httpx client under every SDK client the library builds: the SDK's own defaults, plus
    the hooks that read each answer within its bounds (wire.py).

    `options` go to httpx (e.g. trust_env=False); event hooks given there run before ours.
    """
    from .wire import bounded_http_client

    return bounded_http_client(asynchronous, **options)


def build_openai_sdk(api_key: str, base_url: str | None, asynchronous: bool = False) -> SDKClient:
    """An SDK client with its own retries off: ours are the only layer."""
    import openai

    cls = openai.AsyncOpenAI if asynchronous else openai.OpenAI
    return cls(api_key=api_key, base_url=base_url, max_retries=0, http_client=http_client(asynchronous))


def build_azure_sdk(
    endpoint: str | None,
    base_url: str | None,
    api_version: str,
    api_key: str | None,
    ad_token: str | None,
    token_provider: Callable[[], Any] | None = None,
    asynchronous: bool = False,
) -> SDKClient:
    """An Azure SDK client; `model` in each request body selects the deployment.

    Exactly one of `api_key`, `ad_token` and `token_provider` is given; the SDK asks the provider
    before each request, so Entra ID tokens are refreshed as they expire. `base_url`, when set,
    replaces `endpoint` + "/openai" as the root of the deployment paths.
    """
    import openai

    cls = openai.AsyncAzureOpenAI if asynchronous else openai.AzureOpenAI
    where = {"base_url": base_url} if base_url else {"azure_endpoint": endpoint}
    if token_provider is not None:
        token_provider = _remembering(token_provider)
    return cls(
        **where,
        api_version=api_version,
        api_key=api_key,
        azure_ad_token=ad_token,
        azure_ad_token_provider=token_provider,
        max_retries=0,
        http_client=http_client(asynchronous),
    )


def _remembering(provider: Callable[[], Any]) -> Callable[[], Any]:
    """`provider`, with each token it hands out masked in every message from then on."""

    def provide() -> Any:
        token = provider()
        remember(token)
        return token

    return provide


def post_json(sdk: SDKClient, path: str, body: Mapping[str, Any], timeout: float, auth_hint: str) -> dict[str, Any]:
    """POST `body` to `path` and return the JSON answer, or raise one of our errors.

    The whole attempt, up to the answer's last byte, is bounded by `timeout` (wire.py).
    """
    import openai

    from .wire import attempt_bounds, bounded

    try:
        with bounded(attempt_bounds(timeout)):
            raw = sdk.post(path, body=body, cast_to=bytes, options={"timeout": timeout})
    except openai.APIError as exc:
        raise translate_error(exc, auth_hint) from exc
    return _decode(raw, path)


async def apost_json(
    sdk: SDKClient, path: str, body: Mapping[str, Any], timeout: float, auth_hint: str
) -> dict[str, Any]:
    """The async form of `post_json`; the attempt is cancelled at its deadline."""
    import anyio
    import openai

    from .wire import attempt_bounds, bounded

    try:
        with bounded(attempt_bounds(timeout)), anyio.fail_after(timeout):
            raw = await sdk.post(path, body=body, cast_to=bytes, options={"timeout": timeout})
    except openai.APIError as exc:
        raise translate_error(exc, auth_hint) from exc
    except TimeoutError:
        raise _timed_out(timeout) from None
    return _decode(raw, path)


def _timed_out(timeout: float) -> APITimeoutError:
    return APITimeoutError(f"no answer in time: the attempt's TIMEOUT of {timeout:g} s ran out")


def _decode(raw: bytes, path: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise MalformedResponseError(
            f"the server answered {path} with a body that is not JSON: {raw[:200]!r}"
        ) from None
    except RecursionError:
        raise MalformedResponseError(
            f"the server answered {path} with JSON nested too deep to read: {raw[:200]!r}"
        ) from None
    if not isinstance(data, dict):
        raise MalformedResponseError(f"the server answered {path} with JSON that is not an object: {raw[:200]!r}")
    return data


def open_stream(
    sdk: SDKClient, path: str, body: Mapping[str, Any], timeout: float, auth_hint: str
) -> Iterator[dict[str, Any]]:
    """Start a server-sent-events request; return its chunks as dicts.

    Errors before the answer starts raise here; errors while reading raise from the iterator,
    both translated to our tree. `timeout` bounds the wait for the first chunk, from now, and
    then the wait for each next chunk, from when it is asked for.
    """
    import openai

    from .wire import attempt_bounds, bounded

    try:
        with bounded(attempt_bounds(timeout)) as bounds:
            stream = sdk.post(
                path,
                body=body,
                cast_to=object,
                options={"timeout": timeout},
                stream=True,
                stream_cls=openai.Stream[object],
            )
    except openai.APIError as exc:
        raise translate_error(exc, auth_hint) from exc
    return _translated(stream, bounds.deadline, auth_hint)


def _translated(chunks: Iterable[Any], deadline: Deadline, auth_hint: str) -> Iterator[dict[str, Any]]:
    try:
        for chunk in chunks:
            yield chunk
            deadline.restart()  # the wait for the next chunk starts when it is asked for
    except _stream_errors() as exc:
        raise translate_error(exc, auth_hint) from exc
    except (ValueError, RecursionError) as exc:
        raise _unreadable_chunk(exc) from None
    finally:
        close = getattr(chunks, "close", None)  # closed early: hand the connection back now
        if close is not None:
            with contextlib.suppress(Exception):  # the stream already failed or ended; closing only releases it
                close()


def _unreadable_chunk(exc: Exception) -> MalformedResponseError:
    """A streamed event the SDK could not parse: not JSON, or JSON nested too deep."""
    problem = "nested too deep to read" if isinstance(exc, RecursionError) else f"not JSON ({exc})"
    return MalformedResponseError(f"a streamed chunk of the answer is {problem}")


async def aopen_stream(
    sdk: SDKClient, path: str, body: Mapping[str, Any], timeout: float, auth_hint: str
) -> AsyncIterator[dict[str, Any]]:
    """The async form of `open_stream`; each wait is cancelled at its deadline."""
    import anyio
    import openai

    from .wire import attempt_bounds, bounded

    try:
        with bounded(attempt_bounds(timeout)) as bounds, anyio.fail_after(timeout):
            stream = await sdk.post(
                path,
                body=body,
                cast_to=object,
                options={"timeout": timeout},
                stream=True,
                stream_cls=openai.AsyncStream[object],
            )
    except openai.APIError as exc:
        raise translate_error(exc, auth_hint) from exc
    except TimeoutError:
        raise _timed_out(timeout) from None
    return _atranslated(stream, bounds.deadline, auth_hint)


async def _atranslated(chunks: AsyncIterator[Any], deadline: Deadline, auth_hint: str) -> AsyncIterator[dict[str, Any]]:
    import anyio

    iterator = chunks.__aiter__()
    try:
        while True:
            with anyio.fail_after(max(deadline.left(), 0.0)):
                try:
                    chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    return
            yield chunk
            deadline.restart()  # the wait for the next chunk starts when it is asked for
    except TimeoutError:
        raise _timed_out(deadline.seconds) from None
    except _stream_errors() as exc:
        raise translate_error(exc, auth_hint) from exc
    except (ValueError, RecursionError) as exc:
        raise _unreadable_chunk(exc) from None
    finally:
        # Closed early (or broken): end the SDK's generators and the response here, in this
        # task, rather than leave them to the loop's shutdown, which cannot close a generator
        # that is suspended inside another and logs an error for each.
        with anyio.CancelScope(shield=True):
            await _aclose_quietly(iterator)
            await _aclose_quietly(chunks)


async def _aclose_quietly(resource: Any) -> None:
    close = getattr(resource, "aclose", None) or getattr(resource, "close", None)
    if close is None:
        return
    with contextlib.suppress(Exception):  # the stream already failed or ended; closing only releases it
        await close()


def _stream_errors() -> tuple[type[Exception], ...]:
    """What a broken stream raises: the SDK's errors, or (openai 3.0) httpx2's unwrapped."""
    import httpx2
    import openai

    return (openai.APIError, httpx2.HTTPError, OSError)


def _is_httpx_timeout(exc: BaseException) -> bool:
    """httpx's own timeout, which a stream's reader raises unwrapped in some SDK versions."""
    import httpx2

    return isinstance(exc, httpx2.TimeoutException)


def _own_error_inside(exc: BaseException) -> APIError | None:
    """One of our errors that the SDK wrapped: raised by our httpx hooks (a deadline, a capped
    answer), it comes back as the SDK's connection error in some SDK versions (openai 3.0)."""
    seen: set[int] = set()
    current: BaseException | None = exc.__cause__ or exc.__context__
    while current is not None and id(current) not in seen:
        if isinstance(current, APIError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def translate_error(exc: Exception, auth_hint: str) -> APIError:
    """Map an SDK exception to our tree, keeping the server's message, status and request id.

    `auth_hint` names the environment variable that holds the key, so an authentication error
    says what to set.
    """
    import openai

    _mask_secrets_in(exc)
    ours = _own_error_inside(exc)
    if ours is not None:
        return ours
    if isinstance(exc, openai.APITimeoutError) or _is_httpx_timeout(exc):
        return APITimeoutError(f"no answer in time: {exc}")
    if isinstance(exc, (openai.APIConnectionError, OSError)) or not isinstance(exc, openai.APIError):
        cause = exc.__cause__ or exc.__context__
        detail = f"{exc} ({type(cause).__name__}: {cause})" if cause else str(exc)
        return APIConnectionError(f"connection failed: {detail}")
    if not isinstance(exc, openai.APIStatusError):
        return MalformedResponseError(f"unexpected answer: {type(exc).__name__}: {exc}")

    status = exc.status_code
    headers = exc.response.headers
    message, code = _error_message(exc)
    fields: dict[str, Any] = {
        "status_code": status,
        "request_id": exc.request_id,
        "code": code,
        "body": exc.body,
        "retry_after": parse_retry_after(headers),
    }
    if status in (401, 403):
        return AuthenticationError(f"{message}. Check the key in {auth_hint}", **fields)
    if status == 429:
        if code == "insufficient_quota" or getattr(exc, "type", None) == "insufficient_quota":
            return QuotaExceededError(f"{message}. The account is out of credit: retrying cannot help", **fields)
        return RateLimitError(message, **fields)
    if status in (408, 409) or status >= 500:
        return ServerError(message, **fields)
    if code == "content_filter":
        results = _content_filter_results(exc.body)
        categories = filtered_categories(results)
        return ContentFilterError(
            f"{message} (filtered: {', '.join(categories) or 'categories not given'})",
            categories=categories,
            results=results,
            **fields,
        )
    return InvalidRequestError(message, **fields)


def _mask_secrets_in(exc: Exception) -> None:
    """Our error chains the SDK's, and a traceback prints both: mask the secrets in the SDK's too
    (ours masks its own as it is built)."""
    exc.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in exc.args)
    for name in ("message", "body"):
        if hasattr(exc, name):
            setattr(exc, name, redact_value(getattr(exc, name)))


def _content_filter_results(body: Any) -> Any:
    """Azure's per-category verdicts, under `innererror` (spelt ..._result or ..._results)."""
    inner = body.get("error", body) if isinstance(body, Mapping) else None
    details = inner.get("innererror") if isinstance(inner, Mapping) else None
    if not isinstance(details, Mapping):
        return None
    return details.get("content_filter_result") or details.get("content_filter_results")


def _error_message(exc: openai.APIStatusError) -> tuple[str, str | None]:
    """The server's own words: OpenAI's error.message, or a problem document's title, detail
    and validation messages (as validating proxies and mock servers send)."""
    body = exc.body
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and inner.get("message"):
            code = inner.get("code")
            return str(inner["message"]), str(code) if code is not None else None
        problems = [
            f"{'.'.join(str(p) for p in v.get('location', []))}: {v.get('message')}"
            for v in body.get("validation") or []
            if isinstance(v, Mapping)
        ]
        parts = [str(body[k]) for k in ("title", "detail") if body.get(k)] + problems
        if parts:
            return "; ".join(parts), exc.code
    return str(exc.message), exc.code
