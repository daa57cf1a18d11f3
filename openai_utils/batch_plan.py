"""What a batch job sends: one JSON line per request not yet answered, split to fit the API.

Each line's `custom_id` is the request's cache key (key_encoding.py, the one key there is), so an
answer that comes back is stored under the key the online path looks up, and two identical
requests in a job are sent once. A job's identity is a digest of the keys of every request it
covers, cached or not: the same call run again has the same identity, whatever was answered in
between, which is how a rerun finds the batches it already paid for (batch_record.py).

The API takes at most 50,000 lines and 200 MB per input file (BATCH_MAX_REQUESTS and
BATCH_MAX_BYTES, lower for a test or a smaller quota); a larger job becomes several parts, each
its own file and batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from .exceptions import InvalidRequestError

__all__ = [
    "MAX_REQUESTS",
    "MAX_BYTES",
    "MAX_EMBEDDING_INPUTS",
    "max_requests",
    "Part",
    "job_identity",
    "batch_line",
    "split_lines",
]

MAX_REQUESTS = 50_000
"""Most lines in one batch input file (the OpenAI and Azure limit)."""
MAX_BYTES = 200 * 1024 * 1024
"""Most bytes in one batch input file (the OpenAI and Azure limit: 200 MB)."""
MAX_EMBEDDING_INPUTS = 50_000
"""Most embedding inputs in one batch, over all its requests (OpenAI's limit)."""


def max_requests(kind: str, configured: int) -> int:
    """Requests per batch for `kind`: BATCH_MAX_REQUESTS, and for embeddings few enough that
    requests of the most texts one may carry stay within MAX_EMBEDDING_INPUTS."""
    from .request import EMBEDDING, EMBEDDING_INPUTS_PER_REQUEST

    if kind == EMBEDDING:
        return min(configured, MAX_EMBEDDING_INPUTS // EMBEDDING_INPUTS_PER_REQUEST)
    return configured


class Part(NamedTuple):
    """One batch's worth of lines: their custom_ids in file order, and the file's bytes."""

    custom_ids: list[str]
    data: bytes


def job_identity(keys: Iterable[str]) -> str:
    """The job's id: a digest of the set of its requests' keys (order and repeats do not count)."""
    import hashlib

    digest = hashlib.sha256("\n".join(sorted(set(keys))).encode("ascii"))
    return "job-" + digest.hexdigest()[:24]


def batch_line(custom_id: str, url: str, body: Mapping[str, Any]) -> bytes:
    """One line of a batch input file: the request `body` to POST to `url`, named `custom_id`."""
    line = {"custom_id": custom_id, "method": "POST", "url": url, "body": body}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def split_lines(
    lines: Iterable[tuple[str, bytes]], max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES
) -> list[Part]:
    """(custom_id, line) pairs, in order, cut into parts of at most `max_requests` lines and
    `max_bytes` bytes each. A single line larger than a whole file is refused: no batch takes it."""
    parts: list[Part] = []
    ids: list[str] = []
    chunks: list[bytes] = []
    size = 0
    for custom_id, line in lines:
        if len(line) > max_bytes:
            raise InvalidRequestError(
                f"one request is {len(line):,} bytes as a batch line, more than a batch file may hold "
                f"({max_bytes:,} bytes, BATCH_MAX_BYTES): send it online instead (batch=False)"
            )
        if ids and (len(ids) >= max_requests or size + len(line) > max_bytes):
            parts.append(Part(ids, b"".join(chunks)))
            ids, chunks, size = [], [], 0
        ids.append(custom_id)
        chunks.append(line)
        size += len(line)
    if ids:
        parts.append(Part(ids, b"".join(chunks)))
    return parts
