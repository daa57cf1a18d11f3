"""Keep the peers off the network: their offline switches, and a guard that refuses any other host.

The peers (litellm above all) fetch things of their own accord: a model price map, tokenizers,
header lists. `PEER_ENV` turns each of those to the copy they bundle; `loopback_only()` makes
sure of it by refusing, in this process, every connection and name lookup that is not for the
loopback interface, and reporting what it refused. The benchmarks talk only to servers on
127.0.0.1, so a refusal is a peer phoning home, and the run says so.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["PEER_ENV", "is_loopback", "loopback_only", "CHILD_GUARD"]

PEER_ENV = {
    "LITELLM_OFFLINE_MODE": "true",  # everything litellm would fetch by itself: its bundled copy
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # the same, for older litellm releases
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "HF_HUB_OFFLINE": "1",  # tokenizers from the local cache only
}

_INET = (socket.AF_INET, socket.AF_INET6)


def is_loopback(host: Any) -> bool:
    """True for the names and addresses of this machine's loopback interface."""
    text = str(host).strip("[]").lower()
    return text == "localhost" or text.startswith(("127.", "::ffff:127.")) or text == "::1"


@contextmanager
def loopback_only() -> Iterator[list[str]]:
    """While open, refuse every TCP/UDP connection and name lookup not for loopback; yields the
    list of what was refused, so a run can report it. Everything is put back on exit."""
    refused: list[str] = []
    connect, connect_ex, getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in _INET and not is_loopback(address[0]):
            refused.append(str(address[0]))
            raise ConnectionRefusedError(f"benchmarks/offline.py: no traffic off loopback ({address[0]})")

    def guarded_connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        connect(sock, address)

    def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return connect_ex(sock, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not is_loopback(host if isinstance(host, str) else bytes(host).decode()):
            refused.append(str(host))
            raise socket.gaierror(f"benchmarks/offline.py: no name lookups off loopback ({host})")
        return getaddrinfo(host, *args, **kwargs)

    saved_env = {name: os.environ.get(name) for name in PEER_ENV}
    os.environ.update(PEER_ENV)
    socket.socket.connect = guarded_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = guarded_getaddrinfo
    try:
        yield refused
    finally:
        socket.socket.connect, socket.socket.connect_ex = connect, connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = getaddrinfo
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


CHILD_GUARD = """
import sys
sys.path.insert(0, {folder!r})
import offline
_guard = offline.loopback_only()
_refused = _guard.__enter__()
"""
"""Put first in a `python -c` child (format it with this folder) so the guard holds there too;
the child reads `_refused` to report what it refused."""
