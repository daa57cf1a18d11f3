"""`python -m openai_utils` run as a user would: a real subprocess against the loopback server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fake_server import FakeOpenAIServer, Fault
from tests.shared_files import require_encodings

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_"))}
    full_env["PYTHONPATH"] = str(ROOT)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "openai_utils", *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=60
    )


def test_chat_prints_the_reply(server: FakeOpenAIServer, tmp_path: Path) -> None:
    result = run_cli("chat", "Hello there", "--model", "m1", env={"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": server.base_url}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "echo: Hello there\n"
    assert server.requests[0].body["model"] == "m1"


def test_chat_without_a_key_says_what_to_set(tmp_path: Path) -> None:
    result = run_cli("chat", "Hello", cwd=tmp_path)
    assert result.returncode == 2
    assert "OPENAI_API_KEY" in result.stderr
    assert result.stdout == ""


def test_chat_reports_a_failed_call(server: FakeOpenAIServer, tmp_path: Path) -> None:
    (tmp_path / "config.ini").write_text("[OpenAI]\nMAX_ATTEMPTS=2\nWAITING_TIME=0\n")
    server.fail_always(Fault.status(503))
    result = run_cli("chat", "Hello", env={"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": server.base_url}, cwd=tmp_path)
    assert result.returncode == 1
    assert "2 attempts" in result.stderr
    assert len(server.requests) == 2


def test_chat_reports_a_bad_config_value(tmp_path: Path) -> None:
    (tmp_path / "config.ini").write_text("[OpenAI]\nTOP_P=abc\n")
    result = run_cli("chat", "Hello", env={"OPENAI_API_KEY": "sk-x"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "TOP_P" in result.stderr and "'abc'" in result.stderr and "config.ini" in result.stderr


def test_chat_with_azure(server: FakeOpenAIServer, tmp_path: Path) -> None:
    result = run_cli(
        "chat", "Hi", "--api-type", "azure", "--model", "dep",
        env={"AZURE_OPENAI_ENDPOINT": server.url, "AZURE_OPENAI_KEY": "k"}, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert server.requests[0].path == "/openai/deployments/dep/chat/completions"


def test_tokens_counts_offline(tmp_path: Path) -> None:
    require_encodings()
    result = run_cli("tokens", "--model", "gpt-4o", "hello world", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "2 tokens (o200k_base, model gpt-4o)\n"
    legacy = run_cli("tokens", "--model", "gpt-4", "hello world", cwd=tmp_path)
    assert "cl100k_base" in legacy.stdout
