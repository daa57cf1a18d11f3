"""The cache key of a request, from one canonical encoding that can also check its body.

The key is a digest of everything that decides the answer (`cache_key`). A cache hit must encode
the request to find it, and every request must be checked as sendable JSON
(`request.check_sendable`), which encodes it too: `sendable_key_body` does both in one encode,
with the encoder built once, and `key_from_body` hashes it. On the hit path that encode is most of
the work. `cache_key` is written with the same two pieces, so there is one way to make a key.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .exceptions import InvalidRequestError
from .request import KEY_EXCLUDED, check_sendable

if TYPE_CHECKING:
    import hashlib

__all__ = ["cache_key", "sendable_key_body", "key_from_body"]


def cache_key(api_type: str, endpoint: str, kind: str, request: Mapping[str, Any]) -> str:
    """A digest of everything that decides the answer, and nothing else.

    Timeouts, retry settings and secrets never enter the request body, so they cannot enter
    the key; stream options are dropped because a streamed answer is the same answer.
    """
    try:
        body = _canonical(_key_part(request)).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidRequestError(f"the request cannot be sent as JSON: {exc}") from None
    return key_from_body(api_type, endpoint, kind, body)


def _key_part(request: Mapping[str, Any]) -> Mapping[str, Any]:
    """The request without what only says how the answer is delivered (KEY_EXCLUDED)."""
    if KEY_EXCLUDED.isdisjoint(request):
        return request
    return {k: v for k, v in request.items() if k not in KEY_EXCLUDED}


def sendable_key_body(request: Mapping[str, Any]) -> bytes | None:
    """`check_sendable` and the costly half of `cache_key` in one encode: the request's part
    that enters the key, as the canonical UTF-8 bytes `key_from_body` hashes.

    A cache hit has to encode the body for its key anyway, and a body that encodes canonically
    (sorted keys, no NaN, valid Unicode) is sendable, so the check costs nothing more. A body
    that fails is checked the slow way, for the same typed error; None then (a body that is
    sendable but has no canonical encoding, e.g. keys of mixed types) means: key it with
    `cache_key`, which says why it cannot.
    """
    delivery = not KEY_EXCLUDED.isdisjoint(request)
    try:
        encoded = _canonical(_key_part(request)).encode("utf-8")
        if delivery:  # the delivery fields go out too: check them as well
            json.dumps(
                [v for k, v in request.items() if k in KEY_EXCLUDED], allow_nan=False, ensure_ascii=False
            ).encode("utf-8")
    except (TypeError, ValueError, RecursionError):
        check_sendable(request)
        return None
    return encoded


def _canonical_encoder() -> Callable[[Any], str]:
    """json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False),
    with the encoder built once rather than on every call (which is half the cost for a small body).

    Without a circular-reference check: a loop raises RecursionError instead, and
    `sendable_key_body` then asks `check_sendable`, which has the check, for the error.
    """
    encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator: the plain encoder
        return encoder.encode
    encode = make(None, encoder.default, json.encoder.encode_basestring, None, ":", ",", True, False, False)
    return lambda value: "".join(encode(value, 0))


_canonical = _canonical_encoder()


def _first_sha256(data: bytes) -> hashlib._Hash:
    """`hashlib.sha256`, imported on the first key rather than by `import openai_utils`: hashlib
    loads OpenSSL (~5 ms). It then takes this function's place, so later keys pay nothing."""
    global _sha256
    import hashlib

    _sha256 = hashlib.sha256
    return _sha256(data)


_sha256: Callable[[bytes], hashlib._Hash] = _first_sha256


def key_from_body(api_type: str, endpoint: str, kind: str, body: bytes) -> str:
    """The key of the request whose canonical key part (`sendable_key_body`) is `body`: the
    digest of `[api_type, endpoint, kind, body]` as canonical JSON."""
    return _sha256(_key_head(api_type, endpoint, kind) + body + b"]").hexdigest()


@functools.lru_cache(maxsize=64)
def _key_head(api_type: str, endpoint: str, kind: str) -> bytes:
    """What the key's encoding holds before the body: the same for every call to a server."""
    head = json.dumps([api_type, endpoint, kind], separators=(",", ":"), ensure_ascii=False)
    return head[:-1].encode("utf-8") + b","
