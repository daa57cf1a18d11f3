"""The registry of clients by api_type, and the notebook switches that act on it.

"openai", "azure" and "local" are registered by the package's `__init__` through the same
`register_client` a user calls for a custom client, so the extension path is the one the library
itself uses, and this module imports no client (no import circle through the clients).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .config import default
from .exceptions import ConfigError
from .usage import format_stats, process_usage

if TYPE_CHECKING:
    from .openai_client import OpenAIClient

__all__ = [
    "register_client",
    "client",
    "force_api_type",
    "force_api_cache",
    "_get_client_for_api_type",
    "get_cost_stats",
    "reset_cost_stats",
    "pretty_print_cost_stats",
]

_clients: dict[str, OpenAIClient] = {}
_lazy: dict[str, Callable[[], OpenAIClient]] = {}
"""Clients made on first use (see `_register_lazily`); once made, they are in `_clients`."""
_lock = threading.Lock()
_forced_api_type: str | None = None
_forced_cache: tuple[bool, str | None] | None = None


def register_client(api_type: str, client: OpenAIClient) -> None:
    """Make `client` the one returned for `api_type`, replacing any earlier one.

    A cache setting forced with force_api_cache applies to it too, so the switch holds for
    clients registered after it was thrown.
    """
    if not isinstance(api_type, str) or not api_type:
        raise ValueError(f"api_type must be a non-empty string, not {api_type!r}")
    with _lock:
        if _forced_cache is not None:
            client.set_api_cache(*_forced_cache)
        _clients[api_type] = client


def _register_lazily(api_type: str, make: Callable[[], OpenAIClient]) -> None:
    """Register the client `make()` returns, made on first use: a built-in client whose module is
    costly to import (the local model's) registers so, and `import openai_utils` stays cheap. A
    client registered with `register_client` takes its place."""
    with _lock:
        _lazy[api_type] = make


def _get_client_for_api_type(api_type: str) -> OpenAIClient:
    """The client registered for `api_type`; a ValueError lists the registered ones."""
    with _lock:
        found = _clients.get(api_type)
        if found is None and api_type in _lazy:
            found = _lazy[api_type]()
            if _forced_cache is not None:
                found.set_api_cache(*_forced_cache)
            _clients[api_type] = found
        if found is None:
            names = [*_clients, *(name for name in _lazy if name not in _clients)]
            raise ValueError(
                f"no client registered for api_type {api_type!r}; registered: {', '.join(names) or 'none'}"
            )
        return found


def client() -> OpenAIClient:
    """The client for the forced api type, else for API_TYPE in config."""
    if _forced_api_type is not None:
        return _get_client_for_api_type(_forced_api_type)
    api_type = default["api_type"]
    try:
        return _get_client_for_api_type(api_type)
    except ValueError as exc:
        raise ConfigError(f"API_TYPE = {api_type!r} (from {default.source('api_type')}): {exc}") from None


def force_api_type(api_type: str | None) -> None:
    """Use this api type from now on regardless of config; None goes back to API_TYPE."""
    global _forced_api_type
    if api_type is not None:
        _get_client_for_api_type(api_type)
    _forced_api_type = api_type


def force_api_cache(cache_api_calls: bool | None, cache_file_name: str | None = None) -> None:
    """Turn the cache on or off for every client, now and registered later.

    Clients given the same file share one cache object, so no entry is lost between them.
    None hands the choice back to CACHE_API_CALLS and CACHE_FILE_NAME in config.
    """
    global _forced_cache
    with _lock:
        _forced_cache = None if cache_api_calls is None else (cache_api_calls, cache_file_name)
        for registered in _clients.values():
            if cache_api_calls is None:
                registered.cache_api_calls = registered.cache_file_name = None
            else:
                registered.set_api_cache(cache_api_calls, cache_file_name)


def get_cost_stats() -> dict[str, Any]:
    """Tokens, calls and cost of every client in this process so far: totals plus `by_model`."""
    return process_usage.snapshot()


def reset_cost_stats() -> None:
    """Start every count again from zero: the process total and each registered client's."""
    process_usage.reset()
    with _lock:
        for registered in _clients.values():
            registered.reset_cost_stats()


def pretty_print_cost_stats() -> None:
    """Print the process's usage and cost as a small table."""
    format_stats(get_cost_stats(), sys.stdout)
