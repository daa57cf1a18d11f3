"""Prompt token estimates for chat and embeddings requests, computed locally with tiktoken.

Counting is mostly advisory (budgeting, rate limits, debug logs), so it must never break a
request: if tiktoken's encoding files are unavailable, the counting functions return ``None``
and log one warning per encoding instead of raising. Where a count is the whole point (the
``tokens`` command), ``load_encoding`` raises ``EncodingUnavailableError`` saying what is
missing and how to get it. tiktoken is not offline by itself: it downloads each encoding file
on first use and caches it, so without network it needs TIKTOKEN_CACHE_DIR pointing at a
folder that already holds the files.

tiktoken is imported only on first use, so importing this module stays cheap for
callers that never count tokens.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .exceptions import EncodingUnavailableError

if TYPE_CHECKING:
    from tiktoken import Encoding

__all__ = ["count_text_tokens", "count_tokens", "encoding_name_for", "has_known_encoding", "load_encoding"]

_logger = logging.getLogger("openai_utils")

_O200K = "o200k_base"
_CL100K = "cl100k_base"
_P50K = "p50k_base"

# Ordered: the first matching prefix wins, so the gpt-4o / gpt-4.1 / gpt-4.5 entries must
# precede the bare "gpt-4" entry that would otherwise swallow them. Names that match
# nothing fall back to _DEFAULT_ENCODING because every model OpenAI has released since
# gpt-4o uses o200k_base, so an unknown name is far more likely new than old.
_ENCODING_BY_PREFIX: tuple[tuple[str, str], ...] = (
    ("gpt-4o", _O200K),
    ("gpt-4.1", _O200K),
    ("gpt-4.5", _O200K),
    ("gpt-5", _O200K),
    ("chatgpt-4o", _O200K),
    ("o1", _O200K),
    ("o3", _O200K),
    ("o4", _O200K),
    ("gpt-4", _CL100K),
    ("gpt-3.5", _CL100K),
    ("gpt-35", _CL100K),  # Azure spells gpt-3.5 this way.
    ("text-embedding-3-", _CL100K),
    ("text-embedding-ada-002", _CL100K),
    ("davinci-002", _CL100K),
    ("babbage-002", _CL100K),
    ("text-davinci-", _P50K),
    ("code-", _P50K),
)
_DEFAULT_ENCODING = _O200K

# Where tiktoken downloads encoding files from; its file cache names each file by the
# SHA-1 of this address. Used only to check a pinned cache folder before loading.
_ENCODING_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"

# From OpenAI's cookbook ("How to count tokens with tiktoken"), which matches the API's
# reported prompt_tokens for gpt-3.5-turbo-0613, gpt-4-0613, gpt-4o and gpt-4o-mini.
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_NAME = 1
_REPLY_PRIMING_TOKENS = 3

_TEXT_PART_TYPES = frozenset({"text", "input_text"})

_lock = threading.Lock()
# A failed load is kept as its error, so a missing encoding costs one load attempt and one
# warning, not one per call.
_encodings: dict[str, Encoding | EncodingUnavailableError] = {}
_warned: set[str] = set()


def encoding_name_for(model: str) -> str:
    """Return the tiktoken encoding name used by ``model``.

    Provider prefixes ("azure/gpt-4o") and fine-tune names ("ft:gpt-4o-mini:org::id",
    legacy "curie:ft-org-...") resolve to their base model, because a fine-tune or a
    proxied model shares its base model's tokenizer. A name that matches no known family gets
    o200k_base (see `has_known_encoding`).
    """
    return _matched_encoding(model) or _DEFAULT_ENCODING


def has_known_encoding(model: str) -> bool:
    """Whether ``model`` belongs to a family whose encoding is known, rather than assumed.

    False for names like "llama3" or "my-deployment": their count uses o200k_base, which is
    only an estimate for them, and a caller may want to say so.
    """
    return _matched_encoding(model) is not None


def _matched_encoding(model: str) -> str | None:
    base = model.strip().lower().rpartition("/")[2]
    base = base.split(":")[1] if base.startswith("ft:") else base.partition(":")[0]
    for prefix, encoding_name in _ENCODING_BY_PREFIX:
        if base.startswith(prefix):
            return encoding_name
    return None


def count_text_tokens(text: str, model: str) -> int | None:
    """Return the number of tokens in ``text`` for ``model``, or None if no encoding loads.

    Special-token markers such as "<|endoftext|>" count as ordinary text, as they do when
    sent to the API, rather than raising as tiktoken's ``encode`` would by default.
    """
    encoding = _encoding_for(model)
    if encoding is None:
        return None
    return len(encoding.encode_ordinary(text))


def count_tokens(
    messages: Sequence[Mapping[str, Any]],
    model: str,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> int | None:
    """Estimate the prompt tokens of a chat request, or return None if no encoding loads.

    Follows OpenAI's cookbook recipe: 3 tokens of framing per message, 1 more per
    ``name``, and 3 priming the reply, plus the encoded length of every string field of
    each message (role, content, name, tool_call_id, ...). The parts below are not
    counted exactly, because OpenAI does not publish how it serialises them:

    - List content counts only the ``text`` of "text"/"input_text" parts; images, audio,
      files and other parts are not counted at all, so multimodal prompts undercount.
    - Assistant ``tool_calls`` count the function name and arguments string of each call,
      without the (unpublished) framing around them.
    - ``tools`` count as the encoded length of their compact, key-sorted JSON, which
      approximates, but does not equal, the API's internal rendering of the definitions.
    """
    encoding = _encoding_for(model)
    if encoding is None:
        return None

    def length(text: str) -> int:
        return len(encoding.encode_ordinary(text))

    total = _REPLY_PRIMING_TOKENS
    for message in messages:
        total += _TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "content" and isinstance(value, Sequence) and not isinstance(value, str):
                total += sum(
                    length(part["text"])
                    for part in value
                    if part.get("type") in _TEXT_PART_TYPES and isinstance(part.get("text"), str)
                )
            elif key == "tool_calls" and isinstance(value, Sequence):
                for call in value:
                    function = call.get("function") or {}
                    total += sum(
                        length(function[field])
                        for field in ("name", "arguments")
                        if isinstance(function.get(field), str)
                    )
            elif isinstance(value, str):
                total += length(value)
                if key == "name":
                    total += _TOKENS_PER_NAME
    if tools:
        serialised = json.dumps(tools, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        total += length(serialised)
    return total


def load_encoding(model: str) -> Encoding:
    """Return the tiktoken encoding for ``model``, loading it once per process.

    Raises EncodingUnavailableError, naming the missing file and how to provide it, when the
    encoding is neither in tiktoken's cache folder nor downloadable; the same error again on
    later calls, without a second attempt. The lock makes concurrent first callers wait for
    one load instead of each paying for it (o200k_base takes about half a second to load);
    the unlocked read keeps later calls off the lock.
    """
    name = encoding_name_for(model)
    loaded = _encodings.get(name)
    if loaded is None:
        with _lock:
            if name not in _encodings:
                try:
                    _encodings[name] = _load_encoding(name)
                except EncodingUnavailableError as exc:
                    _encodings[name] = exc
            loaded = _encodings[name]
    if isinstance(loaded, EncodingUnavailableError):
        raise loaded.with_traceback(None)
    return loaded


def _encoding_for(model: str) -> Encoding | None:
    """The advisory form of `load_encoding`: None and one warning per encoding on failure."""
    try:
        return load_encoding(model)
    except EncodingUnavailableError as exc:
        with _lock:
            first = exc.encoding not in _warned
            _warned.add(exc.encoding)
        if first:
            _logger.warning("%s (until then token counts that need it are None)", exc)
        return None


def _load_encoding(name: str) -> Encoding:
    """Load one encoding, turning every failure into one EncodingUnavailableError.

    tiktoken downloads a missing file with ``requests.get`` and no timeout while holding
    its registry lock. With no network at all that fails within a fraction of a second,
    but on a network that silently drops traffic it blocks indefinitely. So when a cache
    folder is pinned (TIKTOKEN_CACHE_DIR, the documented way to count without network) and
    lacks the file, we fail here without letting tiktoken reach for the network.
    """
    variable, cache_dir = _pinned_cache_dir()
    if cache_dir is not None:
        import hashlib  # here, not at import: it loads OpenSSL (~5 ms)

        cache_key = hashlib.sha1(_ENCODING_URL.format(name=name).encode(), usedforsecurity=False).hexdigest()
        if not os.path.exists(os.path.join(cache_dir, cache_key)):
            raise EncodingUnavailableError(
                f"tiktoken's encoding {name} is not in {variable}={cache_dir} (no file {cache_key}): "
                f"point TIKTOKEN_CACHE_DIR at a folder holding tiktoken's encoding files, or load the "
                f"encoding once with network access to fill this one",
                name,
                cache_dir,
            )
    try:
        import tiktoken

        return tiktoken.get_encoding(name)
    except Exception as exc:  # Whatever tiktoken raises (mostly a failed download) means the same.
        _logger.debug("loading tiktoken encoding %s failed", name, exc_info=True)
        raise EncodingUnavailableError(
            f"tiktoken's encoding {name} is not cached and could not be downloaded "
            f"({type(exc).__name__}): set TIKTOKEN_CACHE_DIR to a folder holding tiktoken's "
            f"encoding files, or run once with network access so tiktoken caches it",
            name,
            cache_dir,
        ) from exc


def _pinned_cache_dir() -> tuple[str, str | None]:
    """Return the variable and cache folder the user chose for tiktoken, with its precedence.

    A None folder means tiktoken will use its temporary default folder or, for an empty
    value, no cache at all; both legitimately rely on downloading, so nothing is checked then.
    """
    for variable in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if variable in os.environ:
            return variable, os.environ[variable] or None
    return "TIKTOKEN_CACHE_DIR", None


def _reset_encoding_cache() -> None:
    """Forget loaded and failed encodings, so tests can exercise first-use behaviour."""
    with _lock:
        _encodings.clear()
        _warned.clear()
