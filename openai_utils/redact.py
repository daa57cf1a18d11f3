"""Secrets never reach a message: keys and tokens are masked in every error and log line.

A server may repeat the credentials it was sent (an "incorrect API key: sk-..." message, a
proxy's debug body). That text becomes exception messages, the `body` kept on errors, and log
lines, which end up in terminals, notebooks and CI logs. Every secret in use is masked there:

* the values of the variables in SECRET_VARIABLES, read each time a message is made;
* every key an SDK client was built with (a local server's generated key included) and every
  Entra ID token a provider handed out, which the code that sees them passes to `remember`
  (kept in memory only, for the life of the process: a rotated key stays masked).

Where: APIError masks its message, code, request id and body as it is built (exceptions.py),
whatever raised it; transport.translate_error also masks the SDK's exception that it chains,
since tracebacks print it; and `RedactingFilter`, installed on the "openai_utils" logger when
this module is imported, masks every record it logs.

Values shorter than MIN_SECRET_LENGTH are not masked: no real key or token is that short, and
masking, say, a test key "abc" would garble every message that contains those letters.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

from .forksafe import renew_in_child

__all__ = [
    "SECRET_VARIABLES",
    "MIN_SECRET_LENGTH",
    "MASK",
    "remember",
    "secrets_now",
    "redact",
    "redact_value",
    "RedactingFilter",
]

SECRET_VARIABLES = (
    "OPENAI_API_KEY",
    "AZURE_OPENAI_KEY",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_AD_TOKEN",
    "OPENAI_UTILS_STORE_PASSWORD",
)
"""The environment variables whose values are secrets."""

MIN_SECRET_LENGTH = 8
MASK = "[redacted]"


class _Remembered:
    """The secrets seen in use so far, shared by every thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: frozenset[str] = frozenset()
        renew_in_child(self)

    def add(self, secret: str) -> None:
        with self._lock:
            self.values = self.values | {secret}

    def _renew_after_fork(self) -> None:
        self._lock = threading.Lock()


_remembered = _Remembered()


def remember(secret: object) -> None:
    """Mask `secret` (a key or token in use) in every message from now on; other values are ignored."""
    if isinstance(secret, str) and len(secret) >= MIN_SECRET_LENGTH and secret not in _remembered.values:
        _remembered.add(secret)


def secrets_now() -> list[str]:
    """Every secret to mask, longest first (so a secret containing another is masked whole)."""
    found = set(_remembered.values)
    for name in SECRET_VARIABLES:
        value = os.environ.get(name, "").strip()
        if len(value) >= MIN_SECRET_LENGTH:
            found.add(value)
    return sorted(found, key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with every secret replaced by MASK."""
    return _masked(text, secrets_now())


def redact_value(value: Any) -> Any:
    """A JSON-like value (an error body: dicts, lists, strings, numbers) with every secret in its
    strings replaced by MASK; the value itself when it holds none."""
    secrets = secrets_now()
    if not secrets or value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return _masked(value, secrets)
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (RecursionError, ValueError):
        return f"{MASK} (too deeply nested to check for secrets)"
    masked = _masked(text, secrets, escaped=True)
    return value if masked == text else json.loads(masked)


def _masked(text: str, secrets: list[str], escaped: bool = False) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
        if escaped:
            # As it appears inside a JSON string, should it hold a quote or a backslash.
            text = text.replace(json.dumps(secret, ensure_ascii=False)[1:-1], MASK)
    return text


class RedactingFilter(logging.Filter):
    """Masks secrets in every record of the logger it is installed on."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = secrets_now()
        if secrets:
            try:
                message = record.getMessage()
            except Exception:  # a malformed record is logging's to report, not ours
                return True
            masked = _masked(message, secrets)
            if masked != message:
                record.msg, record.args = masked, None
        return True


logging.getLogger("openai_utils").addFilter(RedactingFilter())
