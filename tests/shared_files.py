"""What some tests need from outside the project, where it is looked for, and how CI insists on it.

Two things are not in the repository, because they are large and published by others:

* the OpenAI and Azure OpenAI API specs that Prism serves (tests/test_contract.py): the folder
  named by OPENAI_UTILS_SPECS, by default ``../shared/specs`` beside the project;
* tiktoken's encoding files (tests/test_tokens.py): the folder named by TIKTOKEN_CACHE_DIR
  (tests/conftest.py points it at ``../shared/tiktoken`` when that exists), or the network on
  first use, when tiktoken downloads them itself.

Without them those tests skip, each group with one line saying what is missing and where to put
it, so `make test` passes on a fresh clone. CI has both and must run every one of those tests:
with OPENAI_UTILS_REQUIRE_SHARED=1 such a skip fails the run (see tests/conftest.py).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "ENCODINGS",
    "REQUIRE_VARIABLE",
    "SHARED",
    "SPECS_VARIABLE",
    "SPEC_FILES",
    "missing_encodings",
    "missing_specs",
    "require_encodings",
    "skip_reason",
    "skipped",
    "specs_folder",
]

SHARED = Path(__file__).resolve().parents[2] / "shared"
"""The folder beside the project that CI and the developers' machines provide."""
SPECS_VARIABLE = "OPENAI_UTILS_SPECS"
REQUIRE_VARIABLE = "OPENAI_UTILS_REQUIRE_SHARED"
SPEC_FILES = ("openai-openapi.prism-core.yaml", "azure-openai-inference-2024-10-21.prism.yaml")
"""The Prism-ready copies of the published specs the contract tests serve (see the README in ../shared/specs)."""
ENCODINGS = ("o200k_base", "cl100k_base")
"""The tiktoken encodings the token-counting tests compare against."""

_skipped: list[str] = []


def specs_folder() -> Path:
    """OPENAI_UTILS_SPECS when set, else ../shared/specs beside the project."""
    named = os.environ.get(SPECS_VARIABLE)
    return Path(named).expanduser() if named else SHARED / "specs"


def missing_specs() -> str | None:
    """None when every spec file is there; otherwise one line saying which and where to put them."""
    folder = specs_folder()
    absent = [name for name in SPEC_FILES if not (folder / name).is_file()]
    if not absent:
        return None
    where = f"{SPECS_VARIABLE}={folder}" if os.environ.get(SPECS_VARIABLE) else f"{folder} (the default)"
    return (
        f"contract tests need the published API specs: {', '.join(absent)} not found in {where}; "
        f"set {SPECS_VARIABLE} to the folder that holds them"
    )


@functools.cache
def missing_encodings() -> str | None:
    """None when tiktoken loads every encoding in ENCODINGS here; otherwise one line saying how to get them.

    With a cache folder pinned (TIKTOKEN_CACHE_DIR), as the library does, the files must be in
    it: tiktoken is kept from downloading meanwhile (it downloads with no timeout, which hangs on
    a network that drops traffic). Unpinned, tiktoken may download them: with no network at all
    that fails within a second.
    """
    import tiktoken
    import tiktoken.load

    how = "point TIKTOKEN_CACHE_DIR at a folder holding them (e.g. ../shared/tiktoken) or allow network access"
    pinned = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    download = tiktoken.load.read_file

    def refuse(blobpath: str) -> bytes:
        raise FileNotFoundError(f"{blobpath} is not in the cache folder {pinned}")

    if pinned:
        tiktoken.load.read_file = refuse  # a cached file is read without calling it
    try:
        absent = [name for name in ENCODINGS if not _loads(tiktoken, name)]
    finally:
        tiktoken.load.read_file = download
    if not absent:
        return None
    where = f"not in {pinned}" if pinned else "could not be downloaded"
    return f"needs tiktoken's encoding files {', '.join(absent)}: {where}; {how}"


def _loads(tiktoken: Any, name: str) -> bool:
    try:
        tiktoken.get_encoding(name)
    except Exception:  # any failure to load means: skip, saying why
        return False
    return True


def require_encodings() -> None:
    """Skip the calling test, saying why, unless tiktoken's encoding files load here."""
    reason = missing_encodings()
    if reason is not None:
        pytest.skip(skip_reason(reason))


def skip_reason(reason: str) -> str:
    """Remember `reason` for the CI check (see `skipped`) and return it, to hand to pytest.skip."""
    _skipped.append(reason)
    return reason


def skipped() -> list[str]:
    """The reasons given to `skip_reason` in this run, each once, in order."""
    return list(dict.fromkeys(_skipped))
