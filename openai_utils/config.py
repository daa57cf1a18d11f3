"""Configuration: the one table of settings and their defaults, and the live `default` mapping.

Values are layered key by key, later wins: the built-in defaults below, then `config.ini` in the
current working directory, then the file named by OPENAI_UTILS_CONFIG, then anything set with
`force_default_value`. Files are read on first use, not at import, and every call reads
`default` afresh, so a value forced in a notebook reaches the very next request.

Secrets never live here: they are read from the environment when a client is built (a `.env`
file, loaded with python-dotenv, fills variables that are not already set).
"""

from __future__ import annotations

import configparser
import difflib
import logging
import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .exceptions import ConfigError
from .pricing import DEFAULT_PRICES, Price

__all__ = [
    "Setting",
    "SETTINGS",
    "CONFIG_SECTION",
    "PRICES_SECTION",
    "CONFIG_ENV_VAR",
    "Defaults",
    "default",
    "force_default_value",
]

logger = logging.getLogger("openai_utils")

CONFIG_SECTION = "OpenAI"
PRICES_SECTION = "Prices"
CONFIG_ENV_VAR = "OPENAI_UTILS_CONFIG"
KNOWN_SECTIONS = (CONFIG_SECTION, PRICES_SECTION)
"""The sections openai_utils reads, in their canonical spelling; any case is accepted."""


@dataclass(frozen=True)
class Setting:
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
    _setting("AZURE_API_VERSION", "2024-10-21", "str", "Azure OpenAI data-plane API version."),
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
        1,
        "int",
        "CPU threads for the local server; 1 keeps a 2-core machine responsive.",
        minimum=1,
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

_BY_KEY = {s.key.lower(): s for s in SETTINGS}
_BY_NAME = {s.name: s for s in SETTINGS}


def _unknown(name: str) -> str:
    return f"unknown default {name!r}; valid keys are: {', '.join(sorted(_BY_NAME))}"


class Defaults(Mapping[str, Any]):
    """The live settings, read key by key at call time.

    A Mapping rather than a dict of values copied at import: the old module froze its defaults
    when it was imported, so a notebook that changed them after `import` changed nothing.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._loaded: _Layers | None = None
        self._forced: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name in self._forced:
            return self._forced[name]
        if name not in _BY_NAME:
            raise KeyError(_unknown(name))
        return self._layers()[name][0]

    def __iter__(self) -> Iterator[str]:
        return iter(_BY_NAME)

    def __len__(self) -> int:
        return len(_BY_NAME)

    def __repr__(self) -> str:
        return f"Defaults({dict(self)!r})"

    def source(self, name: str) -> str:
        """Where the current value of `name` came from: a file, the built-in default, or code."""
        if name in self._forced:
            return "force_default_value"
        if name not in _BY_NAME:
            raise KeyError(_unknown(name))
        return self._layers()[name][1]

    def force(self, name: str, value: Any) -> None:
        """Override one key for this process, checked like a file value would be."""
        setting = _BY_NAME.get(name) if isinstance(name, str) else None
        if setting is None:
            raise ConfigError(_unknown(name))
        try:
            self._forced[setting.name] = setting.coerce(value)
        except ValueError as exc:
            raise ConfigError(f"force_default_value({name!r}, {short_repr(value)}): {exc}") from None

    def reload(self) -> None:
        """Read the config files again on next use; forced values stay."""
        with self._lock:
            self._loaded = None

    def reset(self) -> None:
        """Forget forced values and re-read the files: back to what the files say."""
        with self._lock:
            self._forced.clear()
            self._loaded = None

    def prices(self) -> dict[str, Price]:
        """The price table: the built-in one with every [Prices] entry of the config files over it."""
        return self._loaded_layers().prices

    def _layers(self) -> dict[str, tuple[Any, str]]:
        return self._loaded_layers().values

    def _loaded_layers(self) -> _Layers:
        loaded = self._loaded
        if loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = _load_layers()
                loaded = self._loaded
        return loaded


def config_files() -> list[Path]:
    """The files layered over the built-in defaults, in order, as they stand right now."""
    files = []
    local = Path.cwd() / "config.ini"
    if local.is_file():
        files.append(local)
    named = os.environ.get(CONFIG_ENV_VAR, "").strip()
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"{CONFIG_ENV_VAR} names {str(path)!r}, which is not a file; "
                f"point it at an existing config.ini or unset it"
            )
        files.append(path)
    return files


@dataclass
class _Layers:
    values: dict[str, tuple[Any, str]]
    prices: dict[str, Price]


def _load_layers() -> _Layers:
    _load_dotenv()
    layers = _Layers({s.name: (s.default, "built-in default") for s in SETTINGS}, dict(DEFAULT_PRICES))
    for path in config_files():
        parser = _parse(path)
        for setting, value in _read_settings(path, parser):
            layers.values[setting.name] = (value, str(path))
        layers.prices.update(_read_prices(path, parser))
    return layers


def _parse(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # model names keep their case
    try:
        # utf-8-sig: Windows Notepad starts a UTF-8 file with a byte order mark
        with open(path, encoding="utf-8-sig") as handle:
            parser.read_file(handle)
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc}") from None
    _canonical_sections(path, parser)
    return parser


def _canonical_sections(path: Path, parser: configparser.ConfigParser) -> None:
    """Give each known section its canonical name ([openai] becomes [OpenAI]); warn about the rest.

    configparser matches section names exactly, so a section spelled in another case used to be
    skipped without a word, and BASE_URL with it: prompts and the real key then went to
    api.openai.com. One section spelled two ways in one file is an error rather than a merge:
    which of two values for the same key was meant cannot be guessed.
    """
    canonical = {name.lower(): name for name in KNOWN_SECTIONS}
    spellings: dict[str, list[str]] = {}
    for section in parser.sections():
        known = canonical.get(section.strip().lower())
        if known is None:
            _warn_unknown(path, f"section [{section}] is not one openai_utils reads", section, KNOWN_SECTIONS, "[{}]")
        else:
            spellings.setdefault(known, []).append(section)
    for known, names in spellings.items():
        if len(names) > 1:
            raise ConfigError(
                f"{path}: {' and '.join(f'[{n}]' for n in names)} are one section spelled {len(names)} ways; "
                f"put all of its keys under a single [{known}]"
            )
        if names[0] != known:
            parser.add_section(known)
            for key, value in parser.items(names[0], raw=True):
                parser.set(known, key, value)
            parser.remove_section(names[0])


def _read_prices(path: Path, parser: configparser.ConfigParser) -> dict[str, Price]:
    if not parser.has_section(PRICES_SECTION):
        return {}
    prices = {}
    for model, text in parser.items(PRICES_SECTION):
        try:
            inputs, outputs = (float(part) for part in text.split(","))
            if not (math.isfinite(inputs) and math.isfinite(outputs)) or inputs < 0 or outputs < 0:
                raise ValueError
        except ValueError:
            raise ConfigError(
                f"{path}: [{PRICES_SECTION}] {model} = {text!r} is not valid: expected two numbers of at least 0, "
                f"US dollars per million input and output tokens, e.g. {model} = 0.15, 0.60"
            ) from None
        prices[model] = (inputs, outputs)
    return prices


def _read_settings(path: Path, parser: configparser.ConfigParser) -> list[tuple[Setting, Any]]:
    if not parser.has_section(CONFIG_SECTION):
        return []
    found = []
    spelled: dict[str, str] = {}
    for raw_key, raw_value in parser.items(CONFIG_SECTION):
        setting = _BY_KEY.get(raw_key.lower())
        if setting is None:
            _warn_unknown_key(path, raw_key)
            continue
        if setting.key in spelled:
            raise ConfigError(
                f"{path}: [{CONFIG_SECTION}] sets {setting.key} twice, as {spelled[setting.key]} and {raw_key}; keep one"
            )
        spelled[setting.key] = raw_key
        try:
            found.append((setting, setting.coerce(raw_value)))
        except ValueError as exc:
            raise ConfigError(f"{path}: [{CONFIG_SECTION}] {setting.key} = {raw_value!r} is not valid: {exc}") from None
    return found


def _warn_unknown_key(path: Path, raw_key: str) -> None:
    what = f"[{CONFIG_SECTION}] {raw_key.upper()} is not a known key"
    _warn_unknown(path, what, raw_key, [s.key for s in SETTINGS], "{}")


def _warn_unknown(path: Path, what: str, name: str, known: Sequence[str], shown: str) -> None:
    """One WARNING for a name that is ignored, suggesting the closest known one (case-blind)."""
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.strip().lower(), list(by_lower), n=1)
    hint = f" (did you mean {shown.format(by_lower[close[0]])}?)" if close else ""
    logger.warning("%s: %s and is ignored%s", path, what, hint)


def _load_dotenv() -> None:
    from dotenv import find_dotenv, load_dotenv

    found = find_dotenv(usecwd=True)
    if found:
        load_dotenv(found, override=False)


default = Defaults()


def force_default_value(key: str, value: Any) -> None:
    """Set one default for the rest of the process; the next call uses it.

    `key` is a name of `default` (e.g. "model", "max_tokens"); an unknown one is a ValueError
    listing the valid keys.
    """
    default.force(key, value)
