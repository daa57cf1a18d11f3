"""The settings table: every config key, its default, its type and its accepted range, in one place.

One job, kept apart from `config` (which reads the files and layers the values over these
defaults): the table is pure data and the rules to check a value against it, needed also by
request validation, the command line and the docs tests, none of which read config files.
`config` re-exports `Setting` and `SETTINGS`, where the docs first named them.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

__all__ = ["BY_KEY", "BY_NAME", "SETTINGS", "Setting", "short_repr"]


class Setting(NamedTuple):
    """One config key: its name in config.ini, its name in `default`, its default and its rule."""

    key: str
    name: str
    default: Any
    kind: str
    doc: str
    optional: bool = False
    minimum: float | None = None
    maximum: float | None = None

    def allowed(self) -> str:
        """Describe the accepted values, for error messages and the docs."""
        return self.rule() + (", or empty to leave it unset" if self.optional else "")

    def rule(self) -> str:
        """The accepted values other than "unset": also the rule for a call argument of this name."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "str":
            return "a non-empty text"
        noun = "a whole number" if self.kind == "int" else "a number"
        if self.minimum is not None and self.maximum is not None:
            return f"{noun} from {_num(self.minimum)} to {_num(self.maximum)}"
        if self.minimum is not None:
            return f"{noun} of at least {_num(self.minimum)}"
        if self.maximum is not None:
            return f"{noun} of at most {_num(self.maximum)}"
        return noun

    def coerce(self, value: Any) -> Any:
        """Turn text from a file, or a value from code, into this setting's type, or raise.

        Raises ValueError with the allowed values; callers add where the value came from.
        """
        if value is None or (isinstance(value, str) and value.strip() == ""):
            if self.optional:
                return None
            raise ValueError(f"a value is required: {self.allowed()}")
        if self.kind == "str":
            if not isinstance(value, str):
                raise ValueError(f"expected {self.allowed()}")
            return value.strip()
        if self.kind == "bool":
            return _to_bool(value, self.allowed())
        number = _to_number(value, self.kind, self.allowed())
        if (self.minimum is not None and number < self.minimum) or (self.maximum is not None and number > self.maximum):
            raise ValueError(f"expected {self.allowed()}")
        return number

    def to_text(self, value: Any) -> str:
        """Write a value the way config.ini spells it."""
        if value is None:
            return ""
        if isinstance(value, bool):
            return "True" if value else "False"
        return str(value)


def short_repr(value: Any, limit: int = 80) -> str:
    """A repr for an error message, cut to `limit`; one that cannot be made must not hide the error."""
    try:
        text = repr(value)
    except Exception:  # an int past Python's digit limit, an object whose __repr__ fails
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _to_bool(value: Any, allowed: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
    raise ValueError(f"expected {allowed}")


def _to_number(value: Any, kind: str, allowed: str) -> float | int:
    if isinstance(value, bool):
        raise ValueError(f"expected {allowed}")
    try:
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value) if not isinstance(value, str) else int(value.strip())
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"expected {allowed}") from None
    if not math.isfinite(number):
        raise ValueError(f"expected {allowed}")
    return number


def _setting(key: str, default: Any, kind: str, doc: str, name: str | None = None, **rule: Any) -> Setting:
    return Setting(key=key, name=name or key.lower(), default=default, kind=kind, doc=doc, **rule)


SETTINGS: tuple[Setting, ...] = (
    _setting(
        "API_TYPE",
        "openai",
        "str",
        "Which registered client `client()` returns: openai, azure, or a type added with register_client.",
    ),
    _setting("MODEL", "gpt-4o-mini", "str", "Model for send_message; for Azure, the deployment name."),
    _setting(
        "MAX_TOKENS",
        None,
        "int",
        "Upper bound on generated tokens per call.",
        optional=True,
        minimum=1,
        maximum=1_000_000,
    ),
    _setting("TEMPERATURE", None, "float", "Sampling temperature.", optional=True, minimum=0, maximum=2),
    _setting("TOP_P", None, "float", "Nucleus sampling mass.", optional=True, minimum=0, maximum=1),
    _setting(
        "FREQ_PENALTY",
        None,
        "float",
        "Frequency penalty.",
        name="frequency_penalty",
        optional=True,
        minimum=-2,
        maximum=2,
    ),
    _setting("PRESENCE_PENALTY", None, "float", "Presence penalty.", optional=True, minimum=-2, maximum=2),
    _setting("TIMEOUT", 60.0, "float", "Seconds to wait for one HTTP attempt.", minimum=0.001, maximum=86_400),
    _setting(
        "MAX_RESPONSE_BYTES",
        64 * 1024 * 1024,
        "int",
        "Most bytes one answer (a whole stream included) may take once decompressed; a larger one is a MalformedResponseError, before it fills the memory.",
        minimum=1024,
        maximum=2**40,
    ),
    _setting("MAX_ATTEMPTS", 5, "int", "HTTP attempts per call in total, the first included.", minimum=1, maximum=1000),
    _setting("WAITING_TIME", 1.0, "float", "Seconds to wait before the first retry.", minimum=0, maximum=86_400),
    _setting(
        "EXPONENTIAL_BACKOFF_FACTOR",
        2.0,
        "float",
        "Each further retry waits this many times longer.",
        minimum=1,
        maximum=100,
    ),
    _setting(
        "MAX_WAITING_TIME", 60.0, "float", "Cap on any single wait, server hints included.", minimum=0, maximum=86_400
    ),
    _setting(
        "MAX_CONCURRENT_MODEL_CALLS",
        16,
        "int",
        "Requests in flight at once in this process, over every client, thread and async task; 0 for no limit.",
        minimum=0,
        maximum=1000,
    ),
    _setting(
        "REQUESTS_PER_MINUTE",
        0,
        "int",
        "Most requests a minute to one model on one server, over every client and thread of this process; requests wait instead of getting a 429. 0: no limit.",
        minimum=0,
        maximum=1_000_000,
    ),
    _setting(
        "TOKENS_PER_MINUTE",
        0,
        "int",
        "Most tokens a minute (prompt counted with tiktoken, plus max_tokens) to one model on one server; requests wait. 0: no limit.",
        minimum=0,
        maximum=10_000_000_000,
    ),
    _setting(
        "RAISE_ON_FAILURE",
        False,
        "bool",
        "When attempts run out: False returns None (and logs an ERROR), True raises RetriesExhaustedError.",
    ),
    _setting(
        "REASONING_MODELS",
        "o1,o3,o4,gpt-5",
        "str",
        "Comma-separated name prefixes of reasoning models (or Azure deployments): they get max_completion_tokens and no sampling parameters.",
    ),
    _setting(
        "REASONING_EFFORT",
        None,
        "str",
        "reasoning_effort sent to reasoning models (minimal, low, medium, high); empty: the server's default.",
        optional=True,
    ),
    _setting(
        "API_MODE",
        "auto",
        "str",
        "Which API chat calls use: chat (/chat/completions), responses (/responses), or auto: /responses for the models RESPONSES_MODELS names and those a server refuses on chat (see docs/responses.md).",
    ),
    _setting(
        "RESPONSES_MODELS",
        "o1-pro,o3-pro,o3-deep-research,o4-mini-deep-research,gpt-5*-pro,gpt-5*-codex,codex-mini",
        "str",
        "Comma-separated name prefixes (* stands for any text) of models that take only the Responses API: on API_MODE auto they go straight to /responses.",
        optional=True,
    ),
    _setting(
        "EMBEDDING_MODEL", "text-embedding-3-small", "str", "Model for get_embedding; for Azure, the deployment name."
    ),
    _setting("CACHE_API_CALLS", False, "bool", "Answer repeated identical calls from the cache file."),
    _setting(
        "CACHE_FILE_NAME",
        "openai_api_cache.pickle",
        "str",
        "The cache file, relative to the working directory; /dev/null turns the cache off.",
    ),
    _setting(
        "CACHE_FSYNC",
        False,
        "bool",
        "fsync the cache file after each new entry: survives a power cut, at a disk-flush per call.",
    ),
    _setting(
        "CACHE_BACKEND",
        "file",
        "str",
        "Where answers, rate limits and 429 pauses are kept: file (CACHE_FILE_NAME, this process's limits) or a Valkey/Redis URL, redis://host:6379/0 (rediss:// for TLS), shared by every worker; the password comes only from OPENAI_UTILS_STORE_PASSWORD (see docs/scale-out.md).",
    ),
    _setting(
        "CACHE_NAMESPACE",
        "openai_utils",
        "str",
        "Prefix of every key in the store: workers with the same one share answers, rate limits and pauses.",
    ),
    _setting(
        "CACHE_TTL",
        0,
        "int",
        "Seconds an answer stays in the store; 0: kept until deleted (reruns hit).",
        minimum=0,
        maximum=315_360_000,
    ),
    _setting(
        "MAX_SHARED_CALLS",
        0,
        "int",
        "Requests in flight at once over every worker of the store CACHE_BACKEND names (a dead worker's slots come back within 30 s); 0: no such limit.",
        minimum=0,
        maximum=1_000_000,
    ),
    _setting(
        "STORE_TIMEOUT",
        0.25,
        "float",
        "Most seconds any call waits for the store; past it (or when the store is down) calls are answered without it.",
        minimum=0.001,
        maximum=30,
    ),
    _setting(
        "BATCH_POLL_INTERVAL",
        30.0,
        "float",
        "Seconds between two looks at a batch job's progress (batch=True; docs/batch.md).",
        minimum=0.001,
        maximum=86_400,
    ),
    _setting(
        "BATCH_MAX_REQUESTS",
        50_000,
        "int",
        "Most requests in one batch; a larger job is split into several (the API's limit is 50000).",
        minimum=1,
        maximum=50_000,
    ),
    _setting(
        "BATCH_MAX_BYTES",
        200 * 1024 * 1024,
        "int",
        "Most bytes in one batch's input file; a larger job is split (the API's limit is 200 MB).",
        minimum=1024,
        maximum=200 * 1024 * 1024,
    ),
    _setting("AZURE_API_VERSION", "2024-10-21", "str", "Azure OpenAI data-plane API version."),
    _setting(
        "AZURE_RESPONSES_API_VERSION",
        "2025-04-01-preview",
        "str",
        "Azure OpenAI API version for calls sent to /openai/responses (the Responses API needs 2025-03-01-preview or later).",
    ),
    _setting(
        "BASE_URL",
        None,
        "str",
        "Another OpenAI-compatible server (Ollama, vLLM, llama.cpp, LM Studio), e.g. http://localhost:11434/v1.",
        optional=True,
    ),
    _setting(
        "LOCAL_CHAT_MODEL",
        None,
        "str",
        "GGUF chat model for api_type local; empty: the packaged SmolLM2-135M-Instruct.",
        optional=True,
    ),
    _setting(
        "LOCAL_EMBEDDING_MODEL",
        None,
        "str",
        "GGUF embedding model for api_type local; empty: all-MiniLM-L6-v2, converted once into the user cache folder.",
        optional=True,
    ),
    _setting(
        "LOCAL_THREADS",
        0,
        "int",
        "CPU threads for the local server; 0: decided at its start from the cores free for this process (see docs/local.md).",
        minimum=0,
        maximum=1024,
    ),
    _setting(
        "LOCAL_CONTEXT_SIZE",
        4096,
        "int",
        "Context tokens of the local chat server, split across its slots.",
        minimum=256,
        maximum=1_048_576,
    ),
    _setting("LOCAL_SLOTS", 1, "int", "Requests the local chat server runs at once.", minimum=1, maximum=256),
    _setting(
        "PROMPTS_PATH",
        None,
        "str",
        "Folders searched for templates, separated by the OS path separator; empty: ./prompts, then the packaged templates.",
        optional=True,
    ),
)

BY_KEY = {s.key.lower(): s for s in SETTINGS}
"""Each setting by its config.ini key, lowercased: keys are read in any case."""
BY_NAME = {s.name: s for s in SETTINGS}
"""Each setting by its name in `default`."""
