"""Reading a batch's output and error files: one JSON object per line, each failure an error
from the one tree.

An output line carries the answer the online endpoint would have given (`response.body`), an
error line the status and error object it would have raised; `line_error` turns the latter into
the exception an online call raises for that status, with the server's message and the batch id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from .exceptions import (
    APIError,
    AuthenticationError,
    BatchError,
    InvalidRequestError,
    RateLimitError,
    ServerError,
)

__all__ = ["line_error", "json_lines", "json_object"]

logger = logging.getLogger("openai_utils")

_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidRequestError,
    404: InvalidRequestError,
    422: InvalidRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    429: RateLimitError,
}


def line_error(line: Mapping[str, Any], batch_id: str) -> APIError:
    """The exception of a line the batch answered with an error, with the server's message."""
    response = json_object(line.get("response"))
    body = response.get("body")
    error = json_object(line.get("error") or (body.get("error") if isinstance(body, dict) else None))
    status = response.get("status_code")
    message = str(error.get("message") or f"the request failed with status {status}")
    fields: dict[str, Any] = {
        "status_code": status if isinstance(status, int) else None,
        "request_id": response.get("request_id"),
        "code": error.get("code"),
        "body": body,
    }
    if not isinstance(status, int):
        return BatchError(f"batch {batch_id}: {message}", batch_id=batch_id, **fields)
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 or status in (408, 409) else None)
    if cls is None:
        return BatchError(f"batch {batch_id}: {message}", batch_id=batch_id, **fields)
    return cls(f"batch {batch_id}: {message}", **fields)


def json_object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}  # a JSON object, or an empty one


def json_lines(data: bytes) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file; a line that is not one is skipped with a WARNING."""
    out = []
    for number, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        if isinstance(line, dict):
            out.append(line)
        else:
            logger.warning("line %d of a batch file is not a JSON object; skipped: %r", number, raw[:200])
    return out
