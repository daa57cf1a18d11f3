"""Where files are: the cache folder and the converted file's name, which follows the source content."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from openai_utils.local import paths


def _fake_source(folder: Path) -> Path:
    (folder / "1_Pooling").mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "model.safetensors", "1_Pooling/config.json"):
        (folder / name).write_text("{}")
    return folder


def test_the_cache_file_name_follows_the_source_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(paths.CACHE_ENV_VAR, str(tmp_path / "cache"))
    source = _fake_source(tmp_path / "model")
    first = paths.minilm_gguf_path(source)
    assert first is not None and first.parent == tmp_path / "cache" / "models"
    assert first == paths.minilm_gguf_path(source)

    # Another install of the same package: same bytes, other folder, other times -> the same file.
    assert paths.minilm_gguf_path(_fake_source(tmp_path / "venv2" / "model")) == first
    os.utime(source / "model.safetensors", ns=(1, 1))
    assert paths.minilm_gguf_path(source) == first

    (source / "tokenizer_config.json").write_text("{}")  # read by the converter too
    with_tokenizer_config = paths.minilm_gguf_path(source)
    assert with_tokenizer_config != first
    (source / "model.safetensors").write_text("{ }")  # an updated package
    updated = paths.minilm_gguf_path(source)
    assert updated not in (first, with_tokenizer_config)

    monkeypatch.setattr(paths, "CONVERTER_VERSION", paths.CONVERTER_VERSION + 1)
    assert paths.minilm_gguf_path(source) not in (first, with_tokenizer_config, updated)


def test_new_names_escape_the_cleanup_of_older_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Releases before content naming deleted every `all-MiniLM-L6-v2.*.gguf` but their own after
    converting; a checkout still on such a release must not find our files with that pattern."""
    import fnmatch

    monkeypatch.setenv(paths.CACHE_ENV_VAR, str(tmp_path / "cache"))
    path = paths.minilm_gguf_path(_fake_source(tmp_path / "model"))
    assert path is not None
    assert not fnmatch.fnmatchcase(path.name, f"{paths.MINILM_BASENAME}.*.gguf")


def test_cache_root_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(paths.CACHE_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert paths.models_dir() == tmp_path / "openai_utils" / "models"
