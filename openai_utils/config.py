"""Configuration: the config files layered over the settings table, and the live `default` mapping.

Values are layered key by key, later wins: the built-in defaults (the table in settings.py),
then `config.ini` in the current working directory, then the file named by OPENAI_UTILS_CONFIG,
then anything set with `force_default_value`. Files are read on first use, not at import, and every call reads
`default` afresh, so a value forced in a notebook reaches the very next request.

Secrets never live here: they are read from the environment when a client is built (a `.env`
file, loaded with python-dotenv, fills variables that are not already set).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .exceptions import ConfigError
from .pricing import DEFAULT_PRICES, Price
from .settings import BY_KEY, BY_NAME, SETTINGS, Setting, short_repr

if TYPE_CHECKING:  # configparser and difflib load when a config file is read, not at import
    import configparser

__all__ = [
    # defined in settings.py; the docs named them here first, so they stay importable from here
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


def _unknown(name: str) -> str:
    return f"unknown default {name!r}; valid keys are: {', '.join(sorted(BY_NAME))}"


class Defaults(Mapping[str, Any]):
    """The live settings, read key by key at call time.

    A Mapping rather than a dict of values copied at import: the old module froze its defaults
    when it was imported, so a notebook that changed them after `import` changed nothing.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._loaded: _Layers | None = None
        self._forced: dict[str, Any] = {}
        self.version = 0
        """Bumped by every change (a forced value, a reload, a reset): what is worked out from the
        values may be kept as long as the version it was worked out at is still current."""
        self._values: tuple[int, dict[str, Any]] = (-1, {})
        self._memos: dict[str, tuple[int, dict[Any, Any]]] = {}

    def __getitem__(self, name: str) -> Any:
        version, values = self._values
        if version == self.version and name in values:
            return values[name]
        if name in self._forced:
            return self._forced[name]
        if name not in BY_NAME:
            raise KeyError(_unknown(name))
        return self._layers()[name][0]

    def current(self) -> dict[str, Any]:
        """Every current value by name, as one dict, rebuilt only after a change (see `version`):
        a call reads a dozen settings, and this makes each read a plain dict lookup. Read it,
        never modify it."""
        version, values = self._values
        if version != self.version:
            version = self.version  # read before building: a change meanwhile rebuilds next time
            layers = self._layers()
            values = {name: layer[0] for name, layer in layers.items()}
            values.update(self._forced)
            self._values = (version, values)
        return values

    def memo(self, name: str) -> dict[Any, Any]:
        """A dict, by `name`, for what callers work out from the current values (a price by
        model, a call's usual parameters): emptied whenever a value changes, so what it holds is
        never older than the values. The version is read before anything is worked out: a change
        meanwhile leaves an entry behind that the next call, seeing a newer version, drops."""
        version = self.version
        found = self._memos.get(name)
        if found is None or found[0] != version:
            found = self._memos[name] = (version, {})
        return found[1]

    def __iter__(self) -> Iterator[str]:
        return iter(BY_NAME)

    def __len__(self) -> int:
        return len(BY_NAME)

    def __repr__(self) -> str:
        return f"Defaults({dict(self)!r})"

    def source(self, name: str) -> str:
        """Where the current value of `name` came from: a file, the built-in default, or code."""
        if name in self._forced:
            return "force_default_value"
        if name not in BY_NAME:
            raise KeyError(_unknown(name))
        return self._layers()[name][1]

    def force(self, name: str, value: Any) -> None:
        """Override one key for this process, checked like a file value would be."""
        setting = BY_NAME.get(name) if isinstance(name, str) else None
        if setting is None:
            raise ConfigError(_unknown(name))
        try:
            self._forced[setting.name] = setting.coerce(value)
        except ValueError as exc:
            raise ConfigError(f"force_default_value({name!r}, {short_repr(value)}): {exc}") from None
        self._changed()

    def _changed(self) -> None:
        with self._lock:
            self.version += 1

    def reload(self) -> None:
        """Read the config files again on next use; forced values stay."""
        with self._lock:
            self._loaded = None
            self._changed()

    def reset(self) -> None:
        """Forget forced values and re-read the files: back to what the files say."""
        with self._lock:
            self._forced.clear()
            self._loaded = None
            self._changed()

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


class _Layers(NamedTuple):
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
    import configparser

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
            prices[model] = _price_line(text)
        except ValueError:
            raise ConfigError(
                f"{path}: [{PRICES_SECTION}] {model} = {text!r} is not valid: expected 2 to 5 numbers of at least 0, "
                "US dollars per million tokens: input, output, and optionally cached input, batch input, "
                f"batch output (leave one empty to keep its default), e.g. {model} = 0.15, 0.60 "
                f"or {model} = 0.15, 0.60, 0.075"
            ) from None
    return prices


def _price_line(text: str) -> Price:
    """`input, output[, cached input[, batch input[, batch output]]]`; an empty optional rate is
    None (worked out by Price); anything else raises ValueError."""
    parts = [part.strip() for part in text.split(",")]
    if not 2 <= len(parts) <= 5 or not parts[0] or not parts[1]:
        raise ValueError(text)
    rates = [float(part) if part else None for part in parts] + [None] * (5 - len(parts))
    if any(rate is not None and (not math.isfinite(rate) or rate < 0) for rate in rates):
        raise ValueError(text)
    return Price(float(parts[0]), float(parts[1]), rates[2], rates[3], rates[4])


def _read_settings(path: Path, parser: configparser.ConfigParser) -> list[tuple[Setting, Any]]:
    if not parser.has_section(CONFIG_SECTION):
        return []
    found = []
    spelled: dict[str, str] = {}
    for raw_key, raw_value in parser.items(CONFIG_SECTION):
        setting = BY_KEY.get(raw_key.lower())
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
    import difflib

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
