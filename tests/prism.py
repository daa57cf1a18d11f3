"""Stoplight Prism for the contract tests: find or install it, run `prism mock` over a spec, stop it.

Prism (npm `@stoplight/prism-cli`) serves an OpenAPI description and answers 422 to any request
body the schema rejects and 401 to a request without the auth header the spec declares. It is
installed by `.ci/install-prism` into `.ci/node/` (git-ignored); PRISM_BIN names another binary.
The specs live outside the project: in the folder OPENAI_UTILS_SPECS names, by default
`../shared/specs/` (see the README there, and tests/shared_files.py).

    with prism_servers(SPECS / "openai-openapi.prism-core.yaml") as (server,):
        ...  # server.base_url is "http://127.0.0.1:PORT"; paths are served at the root, no /v1

Several servers start concurrently: all are spawned first, then each is waited for.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tests.shared_files import SPECS_VARIABLE, specs_folder

__all__ = [
    "INSTALL_SCRIPT",
    "PROJECT",
    "SPECS",
    "PrismServer",
    "ensure_prism",
    "prism_available",
    "prism_binary",
    "prism_servers",
]

PROJECT = Path(__file__).resolve().parents[1]
SPECS = specs_folder()
INSTALL_SCRIPT = PROJECT / ".ci" / "install-prism"
LOCAL_BIN = PROJECT / ".ci" / "node" / "node_modules" / ".bin" / "prism"
LOCAL_MARKER = PROJECT / ".ci" / "node" / ".installed"
"""Written by .ci/install-prism once an install answered `prism --version`."""
START_TIMEOUT = 60.0
"""Seconds to wait for Prism's first HTTP answer; the core OpenAI spec takes ~4-7 s on 2 cores."""
INSTALL_TIMEOUT = 300.0


def prism_binary() -> Path:
    """PRISM_BIN when set, else the copy `.ci/install-prism` puts in `.ci/node/`."""
    named = os.environ.get("PRISM_BIN")
    return Path(named) if named else LOCAL_BIN


def _runnable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def prism_available() -> str | None:
    """None when Prism can run here (installed, or installable with npm); otherwise why not.

    Tests skip with this reason only when Prism is missing and cannot be installed. A missing
    Prism with npm present is not a reason to skip: `ensure_prism` installs it.
    """
    if os.environ.get("PRISM_BIN") or LOCAL_MARKER.is_file():
        return None  # a wrong PRISM_BIN is an error when Prism starts, not a reason to skip
    if shutil.which("npm") is None:
        return "npm is not available: it is needed to install Stoplight Prism (.ci/install-prism)"
    return None


@functools.cache
def ensure_prism() -> Path:
    """The Prism binary: PRISM_BIN, or the local copy after `.ci/install-prism` made sure of it.

    The script is run once per process even when Prism is installed: it returns at once then,
    and otherwise it waits for, or does, the install (it holds a lock, so test runs started
    together do not install into the same folder at once, and it removes a half-finished one).
    """
    binary = prism_binary()
    if os.environ.get("PRISM_BIN"):
        if not _runnable(binary):
            raise RuntimeError(f"PRISM_BIN={binary} is not an executable file: point it at a prism binary, or unset it")
        return binary
    try:
        done = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)],
            cwd=PROJECT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{INSTALL_SCRIPT} did not finish within {INSTALL_TIMEOUT:.0f} s") from exc
    if done.returncode != 0 or not _runnable(binary):
        raise RuntimeError(f"{INSTALL_SCRIPT} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    return binary


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(base_url: str) -> bool:
    """Whether anything HTTP answers at base_url; any status counts (Prism 404s on `/`)."""
    try:
        with urllib.request.urlopen(base_url + "/", timeout=1):
            return True
    except urllib.error.HTTPError as answer:
        answer.close()
        return True
    except OSError:
        return False


class PrismServer:
    """One `prism mock` process on a free loopback port. `start` spawns it, `wait` polls it up."""

    def __init__(self, spec: Path) -> None:
        if not spec.is_file():
            raise FileNotFoundError(f"spec {spec} not found: set {SPECS_VARIABLE} to the folder of the published specs")
        self.spec = spec
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._started_at = 0.0

    def start(self) -> None:
        binary = ensure_prism()
        # Output goes to a file, not a pipe: nobody reads it while Prism runs, and a full pipe
        # would block it. It is shown when Prism fails to start.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self._started_at = time.monotonic()
        self._process = subprocess.Popen(
            [str(binary), "mock", str(self.spec), "-h", "127.0.0.1", "-p", str(self.port), "-v", "warn"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait(self, timeout: float = START_TIMEOUT) -> str:
        """Block until Prism answers; its base URL. Raises with Prism's output if it does not."""
        assert self._process is not None, "start() first"
        deadline = self._started_at + timeout
        while not _answers(self.base_url):
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"prism mock {self.spec.name} exited with {self._process.returncode}:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"prism mock {self.spec.name} did not answer on {self.base_url} within {timeout:.0f} s:\n{self.output()}"
                )
            time.sleep(0.1)
        if self._process.poll() is not None:  # the port was taken by someone else meanwhile
            raise RuntimeError(f"prism mock {self.spec.name} exited with {self._process.returncode}:\n{self.output()}")
        self.startup_seconds = time.monotonic() - self._started_at
        return self.base_url

    def output(self, limit: int = 4000) -> str:
        """The end of what Prism printed so far."""
        if self._log is None:
            return "(not started)"
        self._log.seek(0)
        text = self._log.read().decode("utf-8", "replace")
        return text[-limit:] or "(no output)"

    def stop(self) -> None:
        """Terminate, then kill if it lingers; idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None


@contextlib.contextmanager
def prism_servers(*specs: Path, timeout: float = START_TIMEOUT) -> Iterator[tuple[PrismServer, ...]]:
    """Start one Prism per spec, concurrently; yield them once all answer; stop them all on exit."""
    ensure_prism()
    servers = [PrismServer(spec) for spec in specs]
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait(timeout)
        yield tuple(servers)
    finally:
        for server in servers:
            server.stop()
