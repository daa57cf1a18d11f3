"""llama.cpp's own server, started inside this process, for the embedded local model.

xllamacpp runs the real llama.cpp HTTP server on threads of the current process. A server is
started on first use, listens on 127.0.0.1 on a free port with a key generated per start, is
reused by every later call, restarted when its LOCAL_* settings change, and stopped at exit.
There is one for chat and one for embeddings, since a llama.cpp server serves one or the other.

What each server runs is a ServerSpec (specs.py). The engine is optional: nothing heavy is
imported here until a server starts, and a missing engine is a ConfigError that prints the
command installing it (`python -m openai_utils local setup`).
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from ..exceptions import APIConnectionError, ConfigError
from ..transport import SDKClient, http_client
from .requirements import ENGINE_REQUIREMENT, INSTALL_HINT
from .specs import ServerSpec, available_cores, chat_spec, decide_threads, embedding_spec, machine_busy

__all__ = [
    "LocalServer",
    "chat_server",
    "embedding_server",
    "current_server",
    "stop_local_servers",
]

logger = logging.getLogger("openai_utils")

HEALTH_TIMEOUT = 20.0
"""Seconds a started server may take to answer GET /health with 200 before we give up."""

EMBEDDING_BATCH = 8192
"""n_batch/n_ubatch of an embedding server: one input must fit in one micro-batch, and with a
smaller one llama.cpp answers an over-long input with a 500 ("increase the physical batch
size") instead of the 400 "larger than the max context size" that says what is wrong."""


# -- the engine and the model file -----------------------------------------------------------


def _engine() -> Any:
    """Import xllamacpp, or say how to install it."""
    if importlib.util.find_spec("xllamacpp") is None:
        raise ConfigError(f"the local model engine (xllamacpp) is not installed: {INSTALL_HINT}")
    try:
        import xllamacpp
    except ImportError as exc:  # a wheel for another platform, or a too-old glibc
        raise ConfigError(
            f"the local model engine (xllamacpp) is installed but cannot be loaded: {exc}. "
            f"Reinstall it with `pip install --force-reinstall {ENGINE_REQUIREMENT}`"
        ) from exc
    return xllamacpp


def _check_gguf(path: str) -> None:
    """Fail with a message naming the file before llama.cpp fails with 'check the input params'."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ConfigError(f"cannot read the local model {path!r}: {exc}") from None
    if magic != b"GGUF":
        raise ConfigError(f"{path!r} is not a GGUF file (it starts with {magic!r}); llama.cpp reads only GGUF models")


# -- one server -------------------------------------------------------------------------------

_started: weakref.WeakSet[LocalServer] = weakref.WeakSet()
_atexit_registered = False
_registry_lock = threading.Lock()


class LocalServer:
    """One llama.cpp server running in this process, for one model, on 127.0.0.1.

    `start()` is idempotent and thread-safe and returns the base URL; `stop()` frees the model
    and the port. Two counts prove what reached it: `requests`, every HTTP request sent by an
    SDK client from `build_sdk()` (counted as it leaves), and `metrics()`, llama.cpp's own
    counters (counted inside the server).
    """

    def __init__(self, spec: ServerSpec, *, health_timeout: float = HEALTH_TIMEOUT) -> None:
        self.spec = spec
        self.health_timeout = health_timeout
        self.requests = 0
        self.start_seconds: float | None = None
        self.threads: int | None = None  # decided at start (decide_threads)
        self._lock = threading.RLock()
        self._server: Any = None
        self._pid: int | None = None
        self._base_url: str | None = None
        self._api_key: str | None = None

    def __repr__(self) -> str:
        state = self._base_url if self.running else "stopped"
        return f"LocalServer({self.spec.kind}, {Path(self.spec.model_path).name!r}, {state})"

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT (without /v1), starting the server if needed."""
        return self.start()

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    @property
    def api_key(self) -> str:
        """The key generated at start; every request but GET /health must carry it."""
        with self._lock:
            self.start()
            assert self._api_key is not None
            return self._api_key

    def start(self) -> str:
        """Start the server unless it runs; return its base URL."""
        with self._lock:
            if self._server is not None:
                assert self._base_url is not None
                return self._base_url
            xllamacpp = _engine()
            _check_gguf(self.spec.model_path)
            params = self._params(xllamacpp)
            started = time.perf_counter()
            try:
                # Blocks (holding the GIL) until the model is loaded and the port is listening.
                server = xllamacpp.Server(params)
            except RuntimeError as exc:
                raise ConfigError(
                    f"llama.cpp could not start a {self.spec.kind} server for {self.spec.model_path!r}: {exc} "
                    f"Is it a {self.spec.kind} model that this llama.cpp build supports? "
                    f"(set the 'openai_utils' logger to DEBUG to see llama.cpp's log on stderr)"
                ) from None
            address = str(server.listening_address)
            base_url = address if address.startswith("http") else f"http://{address}"
            self._server = server
            self._pid = os.getpid()
            self._base_url = base_url
            self._api_key = params.api_keys[0]
            try:
                self._wait_healthy()
            except BaseException:
                self.stop()
                raise
            self.start_seconds = time.perf_counter() - started
            _track(self)
            logger.info(
                "started the local %s server for %s on %s (%s threads) in %.2f s",
                self.spec.kind,
                Path(self.spec.model_path).name,
                base_url,
                self.threads,
                self.start_seconds,
            )
            return base_url

    def _params(self, xllamacpp: Any) -> Any:
        import secrets

        spec = self.spec
        params = xllamacpp.CommonParams()
        params.model.path = spec.model_path
        params.model_alias = {spec.alias}
        params.n_ctx = spec.context_size
        params.n_parallel = spec.slots
        self.threads = threads = decide_threads(spec.threads, available_cores(), machine_busy())
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        if threads > 1:
            # Threads that wait for each other sleep instead of spinning (llama.cpp's poll 50):
            # with another process busy on a core, spinning took the CPU from the very thread
            # being waited for, and two threads fell below one.
            params.cpuparams.poll = params.cpuparams_batch.poll = 0
        params.port = 0  # a free port, reported by listening_address
        params.hostnames = ["127.0.0.1"]
        params.offline = True  # never reach for a model hub
        # A key per start: the port is reachable by every local user and process.
        params.api_keys = [secrets.token_urlsafe(24)]
        params.endpoint_metrics = True
        # llama.cpp logs straight to file descriptor 2, past Python's logging: keep it quiet
        # unless the library's logger asks for detail.
        params.verbosity = 3 if logger.isEnabledFor(logging.DEBUG) else -1
        if spec.embedding:
            xllamacpp_pooling = xllamacpp.llama_pooling_type
            params.embedding = True
            params.pooling_type = xllamacpp_pooling.LLAMA_POOLING_TYPE_UNSPECIFIED  # the model's own
            params.n_batch = EMBEDDING_BATCH
            params.n_ubatch = EMBEDDING_BATCH
        else:
            params.use_jinja = True  # the model's own chat template, as llama-server does
        return params

    def _wait_healthy(self) -> None:
        """Poll GET /health until it answers 200, for at most health_timeout seconds."""
        import urllib.error
        import urllib.request

        assert self._base_url is not None
        # Direct connection: an HTTP(S)_PROXY in the environment must not see loopback traffic.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + self.health_timeout
        last = "no answer"
        while True:
            try:
                with opener.open(self._base_url + "/health", timeout=2.0) as answer:
                    if answer.status == 200:
                        return
                    last = f"status {answer.status}"
            except urllib.error.HTTPError as exc:  # 503 while loading
                last = f"status {exc.code}"
            except OSError as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                raise APIConnectionError(
                    f"the local {self.spec.kind} server on {self._base_url} did not become ready "
                    f"within {self.health_timeout:g} s (last /health: {last})"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server and free its model and port. Safe to call twice, or when never started.

        A process forked from the one that started it (fork-based multiprocessing workers)
        keeps using the parent's server over HTTP, sharing its loaded model; there stop() only
        forgets the server, since destroying it would wait forever for threads that exist only
        in the parent.
        """
        with self._lock:
            server, self._server = self._server, None
            pid, self._pid = self._pid, None
            self._base_url = None
            self._api_key = None
            if server is None:
                return
            if pid != os.getpid():
                _leak(server)
                return
            started = time.perf_counter()
            del server  # the last reference: xllamacpp's destructor stops the loop and joins it
            logger.info("stopped the local %s server in %.2f s", self.spec.kind, time.perf_counter() - started)

    # -- talking to it ------------------------------------------------------------------------

    def build_sdk(self, asynchronous: bool = False) -> SDKClient:
        """A new openai SDK client (sync or async) for this server's /v1; the caller closes it.

        It connects directly whatever HTTP(S)_PROXY says: httpx applies proxy variables even to
        127.0.0.1, so with a proxy set (and 127.0.0.1 not in NO_PROXY) every request went to the
        proxy and failed. Ignoring the environment loses nothing for loopback HTTP. Each request
        it sends is counted in `requests`.
        """
        import openai

        base_url = self.start() + "/v1"
        assert self._api_key is not None
        if asynchronous:

            async def count_async(request: Any) -> None:
                self._count()

            http: Any = http_client(True, trust_env=False, event_hooks={"request": [count_async]})
            return openai.AsyncOpenAI(api_key=self._api_key, base_url=base_url, max_retries=0, http_client=http)

        def count(request: Any) -> None:
            self._count()

        http = http_client(False, trust_env=False, event_hooks={"request": [count]})
        return openai.OpenAI(api_key=self._api_key, base_url=base_url, max_retries=0, http_client=http)

    def _count(self) -> None:
        with self._lock:
            self.requests += 1

    def metrics(self) -> dict[str, float]:
        """llama.cpp's own counters (Prometheus names without the 'llamacpp:' prefix).

        Counted inside the server, so they prove what reached it: `tokens_predicted_total`
        and `prompt_tokens_total` grow with every chat completion that ran.
        """
        with self._lock:
            if self._server is None:
                return {}
            text = str(self._server.handle_metrics())
        found: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("llamacpp:"):
                name, _, value = line[len("llamacpp:") :].partition(" ")
                try:
                    found[name] = float(value)
                except ValueError:
                    continue
        return found


def _track(server: LocalServer) -> None:
    global _atexit_registered
    with _registry_lock:
        _started.add(server)
        if not _atexit_registered:
            atexit.register(stop_local_servers)
            _atexit_registered = True


def _leak(server: Any) -> None:
    """Keep a server object inherited through fork from ever being destroyed (see LocalServer.stop):
    one extra reference that nothing releases, not even interpreter shutdown."""
    import ctypes

    ctypes.pythonapi.Py_IncRef(ctypes.py_object(server))


def stop_local_servers() -> None:
    """Stop every local server this process started (run at exit)."""
    servers = list(_started)  # strong references first: forgetting them could free them unstopped
    _manager.forget()
    for server in servers:
        try:
            server.stop()
        except Exception as exc:  # at exit, one failure must not keep the others running
            logger.warning("could not stop %r: %s", server, exc)


# -- the shared servers -----------------------------------------------------------------------


class _Manager:
    """The chat server and the embedding server every LocalClient shares, each started on first
    use and replaced (the old one stopped) when its spec changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._servers: dict[str, LocalServer] = {}

    def get(self, spec: ServerSpec) -> LocalServer:
        with self._lock:
            current = self._servers.get(spec.kind)
            if current is not None and current.spec == spec:
                server = current
            else:
                if current is not None:
                    logger.info("the local %s settings changed: restarting its server", spec.kind)
                    current.stop()
                server = self._servers[spec.kind] = LocalServer(spec)
        server.start()
        return server

    def current(self, kind: str) -> LocalServer | None:
        with self._lock:
            return self._servers.get(kind)

    def forget(self) -> None:
        with self._lock:
            self._servers.clear()


_manager = _Manager()


def current_server(kind: str) -> LocalServer | None:
    """The server of `kind` ("chat" or "embedding") if one was started, without starting one."""
    return _manager.current(kind)


def chat_server() -> LocalServer:
    """The shared chat server for the current settings, started if needed."""
    return _manager.get(chat_spec())


def embedding_server() -> LocalServer:
    """The shared embedding server for the current settings, started (and MiniLM converted) if needed."""
    return _manager.get(embedding_spec())
