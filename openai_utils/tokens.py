"""Prompt token estimates for chat and embeddings requests, computed locally with tiktoken.

Counting is advisory (budgeting, truncation, the CLI ``tokens`` command), so it must
never break a request: if tiktoken or its encoding files are unavailable, the counting
functions return ``None`` and log one warning per encoding instead of raising.

tiktoken is imported only on first use, so importing this module stays cheap for
callers that never count tokens.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tiktoken import Encoding

__all__ = ["count_text_tokens", "count_tokens", "encoding_name_for"]

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
# None records a failed load, so a missing encoding costs one warning, not one per call.
_encodings: dict[str, Encoding | None] = {}


def encoding_name_for(model: str) -> str:
    """Return the tiktoken encoding name used by ``model``.

    Provider prefixes ("azure/gpt-4o") and fine-tune names ("ft:gpt-4o-mini:org::id",
    legacy "curie:ft-org-...") resolve to their base model, because a fine-tune or a
    proxied model shares its base model's tokenizer.
    """
    base = model.strip().lower().rpartition("/")[2]
    if base.startswith("ft:"):
        base = base.split(":")[1]
    else:
        base = base.partition(":")[0]
    for prefix, encoding_name in _ENCODING_BY_PREFIX:
        if base.startswith(prefix):
            return encoding_name
    return _DEFAULT_ENCODING


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


def _encoding_for(model: str) -> Encoding | None:
    """Return the model's cached encoding, loading it on first use.

    The lock makes concurrent first callers wait for one load instead of each paying
    for it (o200k_base takes about half a second to load); the unlocked read keeps later
    calls, and calls for an already-loaded encoding, off the lock.
    """
    name = encoding_name_for(model)
    if name in _encodings:
        return _encodings[name]
    with _lock:
        if name not in _encodings:
            _encodings[name] = _load_encoding(name)
        return _encodings[name]


def _load_encoding(name: str) -> Encoding | None:
    """Load one encoding, turning every failure into a single warning and None.

    tiktoken downloads a missing file with ``requests.get`` and no timeout while holding
    its registry lock. With no network at all that fails within a fraction of a second,
    but on a network that silently drops traffic it blocks indefinitely. So when a cache
    folder is pinned (TIKTOKEN_CACHE_DIR, the documented offline setup) and lacks the
    file, we fail here without letting tiktoken reach for the network.
    """
    cache_dir = _pinned_cache_dir()
    if cache_dir is not None:
        cache_key = hashlib.sha1(_ENCODING_URL.format(name=name).encode()).hexdigest()
        if not os.path.exists(os.path.join(cache_dir, cache_key)):
            _logger.warning(
                "tiktoken encoding %s is not in the cache folder %s (expected file %s), so "
                "token counts for models using it will be None. Set TIKTOKEN_CACHE_DIR to a "
                "folder holding tiktoken's encoding files, or fill this folder by loading "
                "the encoding once with network access.",
                name,
                cache_dir,
                cache_key,
            )
            return None
    try:
        import tiktoken

        return tiktoken.get_encoding(name)
    except Exception as exc:  # Counting is advisory: no tiktoken failure may reach the caller.
        _logger.warning(
            "Could not load tiktoken encoding %s (%s: %s), so token counts for models using "
            "it will be None. Set TIKTOKEN_CACHE_DIR to a folder holding tiktoken's encoding "
            "files, or allow network access on first use.",
            name,
            type(exc).__name__,
            exc,
        )
        return None


def _pinned_cache_dir() -> str | None:
    """Return the cache folder the user chose for tiktoken, using tiktoken's own precedence.

    None means tiktoken will use its temporary default folder or, for an empty value,
    no cache at all; both legitimately rely on downloading, so nothing is checked then.
    """
    for variable in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if variable in os.environ:
            return os.environ[variable] or None
    return None


def _reset_encoding_cache() -> None:
    """Forget loaded and failed encodings, so tests can exercise first-use behaviour."""
    with _lock:
        _encodings.clear()
