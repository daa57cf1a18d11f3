"""The boundary with the openai SDK: build its clients, send one request, translate its errors.

No other module imports `openai`, so importing openai_utils stays cheap and the SDK loads once,
on the first request. Requests go through the SDK's generic `post` with the body as we built it:
every parameter passes through unchanged (new API fields, or a local server's own ones), and the
body comes back as the server's JSON, parsed once, with no SDK objects in between.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    InvalidRequestError,
    MalformedResponseError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from .retry import parse_retry_after

if TYPE_CHECKING:
    import openai

__all__ = ["build_openai_sdk", "build_azure_sdk", "post_json", "translate_error"]


def build_openai_sdk(api_key: str, base_url: str | None) -> openai.OpenAI:
    """An SDK client with its own retries off: ours are the only layer."""
    import openai

    return openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0)


def build_azure_sdk(
    endpoint: str, api_version: str, api_key: str | None, ad_token: str | None
) -> openai.AzureOpenAI:
    """An Azure SDK client; `model` in each request body selects the deployment."""
    import openai

    return openai.AzureOpenAI(
        azure_endpoint=endpoint,
        api_version=api_version,
        api_key=api_key,
        azure_ad_token=ad_token,
        max_retries=0,
    )


def post_json(sdk: openai.OpenAI, path: str, body: Mapping[str, Any], timeout: float, auth_hint: str) -> dict[str, Any]:
    """POST `body` to `path` and return the JSON answer, or raise one of our errors."""
    import openai

    try:
        raw = sdk.post(path, body=body, cast_to=bytes, options={"timeout": timeout})
    except openai.APIError as exc:
        raise translate_error(exc, auth_hint) from exc
    try:
        data = json.loads(raw)
    except ValueError:
        raise MalformedResponseError(
            f"the server answered {path} with a body that is not JSON: {raw[:200]!r}"
        ) from None
    if not isinstance(data, dict):
        raise MalformedResponseError(f"the server answered {path} with JSON that is not an object: {raw[:200]!r}")
    return data


def translate_error(exc: Exception, auth_hint: str) -> APIError:
    """Map an SDK exception to our tree, keeping the server's message, status and request id.

    `auth_hint` names the environment variable that holds the key, so an authentication error
    says what to set.
    """
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return APITimeoutError(f"no answer in time: {exc}")
    if isinstance(exc, openai.APIConnectionError):
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
    return InvalidRequestError(message, **fields)


def _error_message(exc: openai.APIStatusError) -> tuple[str, str | None]:
    body = exc.body
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and inner.get("message"):
            code = inner.get("code")
            return str(inner["message"]), str(code) if code is not None else None
    return str(exc.message), exc.code
