"""Every error openai_utils raises, in one tree, so a caller knows what to catch.

::

    OpenAIUtilsError
    ├── ConfigError (also ValueError)           a bad config value, key or file
    │   ├── MissingCredentialsError             a secret's environment variable is not set
    │   └── EncodingUnavailableError            tiktoken's encoding file is neither cached nor downloadable
    ├── CacheError                              a cache path this version cannot use (newer format, not a file)
    ├── TemplateError (also ValueError)
    │   ├── TemplateNotFoundError               no template (or partial) of that name
    │   ├── TemplateVariableError               the template uses a variable the call did not give
    │   └── TemplateSyntaxError                 not valid mustache, or not UTF-8; names file and line
    ├── StreamNotFinishedError                  a stream's reply was asked for before the stream ended
    └── APIError                                a request failed; carries status, request id, attempts
        ├── InvalidRequestError (also ValueError)   400/404/422, or messages rejected before sending
        │   └── ContentFilterError              the prompt or the answer was filtered; names the categories
        ├── ResponseFormatError                 the answer could not be parsed as the response_format asked
        ├── AuthenticationError                 401/403: names the variable to set
        ├── QuotaExceededError                  429 with code insufficient_quota: retrying cannot help
        ├── RetriesExhaustedError               every attempt failed (only with RAISE_ON_FAILURE)
        ├── BatchError                          a batch job failed, or left an item unanswered
        │   └── BatchUnsupportedError           the server has no batch endpoints; names the online call
        └── NonTerminalError                    worth retrying; raise it from a custom client to retry
            ├── RateLimitError                  429
            ├── ServerError                     408, 409, 5xx
            ├── APIConnectionError              the connection failed or dropped
            │   ├── APITimeoutError             no answer within TIMEOUT
            │   └── StreamInterruptedError      a stream broke after part of the answer arrived
            └── MalformedResponseError          a 2xx whose body is not the JSON expected

Only `NonTerminalError` and its subclasses are retried. When the attempts run out,
`send_message` logs one ERROR and returns None (or raises `RetriesExhaustedError` with
RAISE_ON_FAILURE); every other `APIError` is raised at once, since retrying cannot fix it.
"""

from __future__ import annotations

from typing import Any

from .redact import redact, redact_value

__all__ = [
    "OpenAIUtilsError",
    "ConfigError",
    "MissingCredentialsError",
    "EncodingUnavailableError",
    "CacheError",
    "TemplateError",
    "TemplateNotFoundError",
    "TemplateVariableError",
    "TemplateSyntaxError",
    "APIError",
    "InvalidRequestError",
    "ContentFilterError",
    "ResponseFormatError",
    "AuthenticationError",
    "QuotaExceededError",
    "RetriesExhaustedError",
    "BatchError",
    "BatchUnsupportedError",
    "NonTerminalError",
    "RateLimitError",
    "ServerError",
    "APIConnectionError",
    "APITimeoutError",
    "StreamInterruptedError",
    "StreamNotFinishedError",
    "MalformedResponseError",
]


class OpenAIUtilsError(Exception):
    """Base of everything this library raises on purpose."""


class ConfigError(OpenAIUtilsError, ValueError):
    """A config value, key or file is wrong; the message names where and what is allowed."""


class MissingCredentialsError(ConfigError):
    """A secret is read only from the environment, and the variable it lives in is empty."""

    def __init__(self, message: str, variables: tuple[str, ...]) -> None:
        super().__init__(message)
        self.variables = variables


class EncodingUnavailableError(ConfigError):
    """tiktoken's encoding file is not in its cache folder and could not be downloaded.

    Raised only where a count is the point (`tokens.load_encoding`, the `tokens` command); the
    advisory counters return None instead. `encoding` is the encoding's name, `cache_dir` the
    folder that was checked (None when tiktoken used its own default).
    """

    def __init__(self, message: str, encoding: str, cache_dir: str | None) -> None:
        super().__init__(message)
        self.encoding = encoding
        self.cache_dir = cache_dir


class CacheError(OpenAIUtilsError):
    """A cache path this version cannot use (a newer format, not a regular file, a link to anything
    but a cache); it is left exactly as it was. Clients log it and answer without the cache."""


class TemplateError(OpenAIUtilsError, ValueError):
    """A prompt template could not be found or rendered."""


class TemplateNotFoundError(TemplateError, LookupError):
    """No template by that name; `searched` lists every folder looked in."""

    def __init__(self, message: str, searched: list[str]) -> None:
        super().__init__(message)
        self.searched = searched


class TemplateVariableError(TemplateError, KeyError):
    """The template uses variables the call did not supply."""

    def __init__(self, message: str, missing: list[str]) -> None:
        super().__init__(message)
        self.missing = missing

    def __str__(self) -> str:
        # KeyError's own __str__ would print the message as a quoted repr.
        return str(self.args[0])


class TemplateSyntaxError(TemplateError):
    """A template file that cannot be read as mustache: an unclosed or unmatched tag, an empty
    tag, a partial that includes itself without end, or bytes that are not UTF-8.

    `path` is the file (the partial's, when the fault is in a partial) and `line` the line, or
    None when it cannot be told.
    """

    def __init__(self, message: str, path: str | None, line: int | None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line


class APIError(OpenAIUtilsError):
    """A model call failed.

    Carries what a user needs to report or diagnose it: the HTTP status, the server's request
    id, the error code the server sent, the attempt on which it happened, and the retry hint.
    Every secret in use is masked in the message, code, request id and body, whatever the
    server sent (redact.py).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        request_id: str | None = None,
        code: str | None = None,
        body: Any = None,
        retry_after: float | None = None,
        attempts: int | None = None,
    ) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.request_id = redact(request_id) if request_id else request_id
        self.code = redact(code) if code else code
        self.body = redact_value(body)
        self.retry_after = retry_after
        self.attempts = attempts

    def __str__(self) -> str:
        details = []
        if self.status_code is not None:
            details.append(f"status {self.status_code}")
        if self.code:
            details.append(f"code {self.code}")
        if self.request_id:
            details.append(f"request id {self.request_id}")
        if self.attempts is not None:
            details.append(f"attempt {self.attempts}")
        return f"{self.message} ({', '.join(details)})" if details else self.message


class InvalidRequestError(APIError, ValueError):
    """The request itself is wrong; sending it again would fail the same way."""


class ContentFilterError(InvalidRequestError):
    """A content filter stopped the prompt (Azure's 400 `content_filter`) or the answer
    (finish_reason `content_filter`).

    `categories` lists the categories that filtered (e.g. ["violence"]); `results` is the
    server's full per-category report, when it sent one.
    """

    def __init__(self, message: str, *, categories: list[str], results: Any = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.categories = categories
        self.results = redact_value(results)


class ResponseFormatError(APIError):
    """The answer does not parse as the requested structured format.

    `content` is the text that came back and `finish_reason` why it ended: "length" means the
    answer was cut off at the token limit, the usual cause.
    """

    def __init__(self, message: str, *, content: str | None, finish_reason: str | None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.content = content
        self.finish_reason = finish_reason


class AuthenticationError(APIError):
    """The server refused the credentials; the message names the variable to set."""


class QuotaExceededError(APIError):
    """The account is out of credit: a 429 that waiting does not cure."""


class RetriesExhaustedError(APIError):
    """Every attempt failed with a retryable error; `last_error` is the final one."""

    def __init__(self, message: str, *, attempts: int, last_error: BaseException) -> None:
        status = getattr(last_error, "status_code", None)
        request_id = getattr(last_error, "request_id", None)
        super().__init__(message, status_code=status, request_id=request_id, attempts=attempts)
        self.last_error = last_error

    def __str__(self) -> str:
        # The message already names the attempts and the last error with its details.
        return self.message


class BatchError(APIError):
    """A batch job (batch.md) failed as a whole, or ended (expired, cancelled, failed) before
    answering an item: that item's slot holds this error. `batch_id` names the batch; the message
    says what the server said and how to get the rest (rerun the same call)."""

    def __init__(self, message: str, *, batch_id: str | None = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.batch_id = batch_id


class BatchUnsupportedError(BatchError):
    """The server has no batch endpoints (the local model, most OpenAI-compatible servers);
    the message names the server and the online call to use instead, or batch="auto"."""


class NonTerminalError(APIError):
    """A failure that may pass: the request is sent again after a backoff wait."""


class RateLimitError(NonTerminalError):
    """429: too many requests or tokens for now."""


class ServerError(NonTerminalError):
    """408, 409 or 5xx: the server or a proxy had a problem with a valid request."""


class APIConnectionError(NonTerminalError):
    """No HTTP answer: the connection could not be made or was dropped."""


class APITimeoutError(APIConnectionError):
    """No answer within the request's TIMEOUT."""


class StreamInterruptedError(APIConnectionError):
    """The connection dropped after part of a streamed answer arrived.

    Raised to the caller, never retried or cached by us, and never passed off as a shorter
    answer: `received` holds the text that arrived, `chunks` how many text chunks that was.
    """

    def __init__(self, received: str, chunks: int, cause: BaseException) -> None:
        super().__init__(
            f"the stream broke after {chunks} chunk{'s' if chunks != 1 else ''} "
            f"({len(received)} characters) of the answer had arrived: {cause}"
        )
        self.received = received
        self.chunks = chunks


class StreamNotFinishedError(OpenAIUtilsError):
    """A stream's reply (finish_reason, usage, truncated, ...) was asked for before the stream
    was read to its end, or after it was closed early or broke.

    The reply is only known once the last chunk has arrived; guessing (say, `truncated` False)
    would be a silent lie, so asking early is an error that says what to do instead.
    """


class MalformedResponseError(NonTerminalError):
    """A success status with a body that is not the expected JSON, as broken proxies send."""
