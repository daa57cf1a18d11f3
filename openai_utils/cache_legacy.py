"""Converting a cache of the module this library replaces into records people can read.

That module pickled its whole dict to `openai_api_cache.pickle` (our default name too) on every
call: the key was `str((model, params))`, the repr of the parameters it sent, and the value the
SDK's response object. Reading it means unpickling SDK classes, which runs whatever code the
file names, so it happens only when the user says they trust the file (`--trust` on the command
line); this module never decides that.

Each answer becomes a plain record under a key of its own, "legacy-" and a digest of the old key,
with the request recovered from the old key when it parses as plain data. They are kept for
reading (`cache export`, `show`, `search`), not as answers to new calls: this library builds its
requests differently (no timeout or empty stop in the body, the server in the key), so no new
call would ever produce the old key, and claiming otherwise would be a guess.
"""

from __future__ import annotations

import ast
import hashlib
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cache import ResponseCache
from .cache_file import check_plain, open_regular
from .exceptions import CacheError, MalformedResponseError
from .response import chat_record

__all__ = ["LegacyImport", "import_legacy", "LEGACY_KEY_PREFIX"]

LEGACY_KEY_PREFIX = "legacy-"
_NOT_SENT = ("timeout", "stream")


@dataclass
class LegacyImport:
    """What an import did: entries stored, entries the target had already, entries skipped and why."""

    imported: int = 0
    already: int = 0
    not_stored: int = 0
    skipped: list[str] = field(default_factory=list)


def import_legacy(source: Path, into: ResponseCache) -> LegacyImport:
    """Convert every answer in the legacy pickle `source` into `into`. Unpickles: trusted files only.

    Raises CacheError when `source` is not a pickle of a dict. `source` is only read.
    """
    fd = open_regular(source, os.O_RDONLY, follow_link=True)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read()
    try:
        legacy = pickle.loads(data)  # noqa: S301 - the caller vouched for this file; see the module doc
    except Exception as exc:  # any failure of a foreign pickle is reported the same way
        raise CacheError(f"{source} could not be loaded as a pickle: {type(exc).__name__}: {exc}") from None
    if not isinstance(legacy, Mapping):
        raise CacheError(
            f"{source} holds a pickled {type(legacy).__name__}, not the dict of answers the replaced module wrote"
        )
    report = LegacyImport()
    for old_key, response in legacy.items():
        key = LEGACY_KEY_PREFIX + hashlib.sha256(str(old_key).encode("utf-8", "replace")).hexdigest()
        try:
            record = _record(response)
        except (MalformedResponseError, TypeError, ValueError) as exc:
            report.skipped.append(f"{str(old_key)[:60]!r}: {exc}")
            continue
        if key in into:
            report.already += 1
            continue
        into.put(key, record, _request(old_key))
        if key in into:
            report.imported += 1
        else:
            report.not_stored += 1
    return report


def _record(response: Any) -> dict[str, Any]:
    """A chat completion (SDK object or dict) as the plain record this library caches."""
    if hasattr(response, "model_dump"):
        data = response.model_dump(mode="json")
    elif isinstance(response, Mapping):
        data = dict(response)
    else:
        raise TypeError(f"a {type(response).__name__}, not a chat completion")
    record = chat_record(data)
    check_plain(record)
    return record


def _request(old_key: Any) -> dict[str, Any]:
    """The parameters the old key names, or the old key itself when it does not parse as data."""
    try:
        parsed = ast.literal_eval(old_key) if isinstance(old_key, str) else None
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        parsed = None
    if isinstance(parsed, tuple) and len(parsed) == 2 and isinstance(parsed[1], dict):
        params = {name: value for name, value in parsed[1].items() if name not in _NOT_SENT}
        params.setdefault("model", parsed[0])
        try:
            check_plain(params, "request")
            return params
        except TypeError:
            pass
    return {"legacy_key": str(old_key)}
