"""`python -m openai_utils` run as a user would: a real subprocess against the loopback server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fake_server import FakeOpenAIServer, Fault

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
    result = run_cli("tokens", "--model", "gpt-4o", "hello world", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "2 tokens (o200k_base, model gpt-4o)\n"
    legacy = run_cli("tokens", "--model", "gpt-4", "hello world", cwd=tmp_path)
    assert "cl100k_base" in legacy.stdout


# -- cache commands ---------------------------------------------------------------------------


def folder_listing(folder: Path) -> dict[str, tuple[int, int, int, bytes | None]]:
    """What a folder holds, as lstat sees it, with the bytes of regular files."""
    import stat

    seen = {}
    for entry in sorted(folder.iterdir()):
        info = entry.lstat()
        seen[entry.name] = (info.st_mode, info.st_ino, info.st_size, entry.read_bytes() if stat.S_ISREG(info.st_mode) else None)
    return seen


def fill_cache(server: FakeOpenAIServer, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three real answers in a cache file: two chats (one with a system message) and an embedding."""
    from openai_utils import OpenAIClient, default

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    default.force("base_url", server.base_url)
    client = OpenAIClient(cache_api_calls=True, cache_file_name=str(path))
    client.send_message([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Capital of France?"}], temperature=0.3)
    client.send_message([{"role": "user", "content": "Largest planet?"}])
    client.get_embedding("a sentence to embed")


def damaged_cache() -> bytes:
    import pickle
    import struct
    import zlib

    from openai_utils.cache import HEADER

    def raw(key: str, value: object) -> bytes:
        payload = struct.pack(">H", len(key)) + key.encode() + pickle.dumps(value)
        return struct.pack(">II", len(payload), zlib.crc32(payload)) + payload

    bad = bytearray(raw("bad", 2))
    bad[-2] ^= 0xFF
    return HEADER + raw("good", 1) + bytes(bad) + raw("after", 3)


def legacy_completion(content: str) -> object:
    from openai.types.chat import ChatCompletion

    return ChatCompletion.model_validate({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    })


def legacy_params(prompt: str) -> dict[str, object]:
    """The parameters the replaced module put in its key, as it built them."""
    return {
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}], "temperature": 0.7,
        "max_tokens": 100, "top_p": 0, "frequency_penalty": 0, "presence_penalty": 0, "stop": [],
        "timeout": 60, "stream": False, "n": 1,
    }


def write_legacy_cache(path: Path) -> None:
    import pickle

    legacy = {
        str(("gpt-4o-mini", legacy_params("Capital of Italy?"))): legacy_completion("Rome."),
        str(("gpt-4o-mini", legacy_params("Capital of Spain?"))): legacy_completion("Madrid."),
        "a key of another shape": {"not": "a completion"},
    }
    path.write_bytes(pickle.dumps(legacy))


@pytest.mark.parametrize("kind", ["text", "legacy-pickle", "damaged", "newer-version", "fifo", "link-to-text", "directory"])
def test_cache_stats_reports_a_file_that_is_not_a_whole_cache_and_changes_nothing(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "c.pickle"
    if kind == "text":
        path.write_text("my notes\n")
    elif kind == "legacy-pickle":
        write_legacy_cache(path)
    elif kind == "damaged":
        path.write_bytes(damaged_cache())
    elif kind == "newer-version":
        path.write_bytes(b"openai_utils-cache v9\n" + os.urandom(64))
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "link-to-text":
        (tmp_path / "notes.txt").write_text("my notes\n")
        path.symlink_to(tmp_path / "notes.txt")
    else:
        path.mkdir()
    before = folder_listing(tmp_path)
    result = run_cli("cache", "stats", str(path), cwd=tmp_path)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert str(path) in result.stderr
    assert folder_listing(tmp_path) == before
    if kind == "legacy-pickle":
        assert "import-legacy" in result.stderr
    if kind == "damaged":
        assert json.loads(result.stdout)["entries"] == 1  # what is whole is still shown
        assert "byte" in result.stderr


def test_cache_inspection_pairs_prompts_with_answers_and_writes_nothing(
    server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "data" / "c.pickle"
    path.parent.mkdir()
    fill_cache(server, path, monkeypatch)
    Path(f"{path}.lock").unlink()
    before = folder_listing(path.parent)

    stats = run_cli("cache", "stats", str(path), cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["entries"] == 3 and json.loads(stats.stdout)["requests_recorded"] == 3

    found = run_cli("cache", "search", str(path), "france", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert "Capital of France?" in found.stdout and "echo: Capital of France?" in found.stdout
    assert "Be terse." in found.stdout and "temperature" in found.stdout
    assert "Largest planet" not in found.stdout
    assert "1 of 3 entries" in found.stderr

    shown = run_cli("cache", "show", str(path), "2", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "Largest planet?" in shown.stdout and "echo: Largest planet?" in shown.stdout
    exported = run_cli("cache", "export", str(path), cwd=tmp_path)  # to stdout
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [line["request"].get("messages", line["request"].get("input")) for line in lines] == [
        [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Capital of France?"}],
        [{"role": "user", "content": "Largest planet?"}],
        "a sentence to embed",
    ]
    by_key = run_cli("cache", "show", str(path), lines[2]["key"][:10], cwd=tmp_path)
    assert by_key.returncode == 0 and "a sentence to embed" in by_key.stdout and "1 vector" in by_key.stdout
    missing = run_cli("cache", "show", str(path), "99", cwd=tmp_path)
    assert missing.returncode == 1 and "no entry" in missing.stderr
    assert folder_listing(path.parent) == before  # no lock file, no rename, nothing written


def test_cache_compact_refuses_a_link_and_compacts_the_file_itself(
    server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.pickle"
    fill_cache(server, path, monkeypatch)
    link = tmp_path / "link.pickle"
    link.symlink_to(path)
    before = folder_listing(tmp_path)
    refused = run_cli("cache", "compact", str(link), cwd=tmp_path)
    assert refused.returncode == 1 and f"cache compact {path}" in refused.stderr
    assert folder_listing(tmp_path) == before
    done = run_cli("cache", "compact", str(path), cwd=tmp_path)
    assert done.returncode == 0 and "3 entries" in done.stdout


def test_cache_export_never_overwrites_without_force(server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.pickle"
    fill_cache(server, path, monkeypatch)
    out = tmp_path / "out.jsonl"
    out.write_text("keep me\n")
    refused = run_cli("cache", "export", str(path), str(out), cwd=tmp_path)
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert out.read_text() == "keep me\n"
    forced = run_cli("cache", "export", str(path), str(out), "--force", cwd=tmp_path)
    assert forced.returncode == 0 and "3 entries" in forced.stdout
    assert len(out.read_text().splitlines()) == 3
    new = tmp_path / "new.jsonl"
    assert run_cli("cache", "export", str(path), str(new), cwd=tmp_path).returncode == 0
    assert new.stat().st_mode & 0o077 == 0  # it holds every prompt and answer


def test_an_older_file_without_requests_still_shows_its_answers(tmp_path: Path) -> None:
    import pickle
    import struct
    import zlib

    from openai_utils.cache import HEADER

    value = {"model": "m", "choices": [{"message": {"role": "assistant", "content": "old answer"}, "finish_reason": "stop"}], "usage": None}
    payload = struct.pack(">H", 3) + b"abc" + pickle.dumps(value, protocol=4)
    path = tmp_path / "c.pickle"
    path.write_bytes(HEADER + struct.pack(">II", len(payload), zlib.crc32(payload)) + payload)
    shown = run_cli("cache", "show", str(path), "1", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "old answer" in shown.stdout and "not recorded" in shown.stdout


def test_import_legacy_needs_trust(tmp_path: Path) -> None:
    legacy = tmp_path / "old.pickle"
    marker = tmp_path / "code-ran"
    import pickle

    class Boom:
        def __reduce__(self) -> tuple[object, ...]:
            return (open, (str(marker), "w"))

    legacy.write_bytes(pickle.dumps({"k": Boom()}))
    refused = run_cli("cache", "import-legacy", str(legacy), "--into", str(tmp_path / "new.pickle"), cwd=tmp_path)
    assert refused.returncode == 2
    assert "--trust" in refused.stderr and "runs code" in refused.stderr
    assert not marker.exists() and not (tmp_path / "new.pickle").exists()


def test_import_legacy_converts_answers_for_reading(server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    legacy = tmp_path / "openai_api_cache.pickle"
    write_legacy_cache(legacy)
    original = legacy.read_bytes()
    same_place = run_cli("cache", "import-legacy", str(legacy), "--trust", cwd=tmp_path)  # --into defaults to CACHE_FILE_NAME
    assert same_place.returncode == 2 and "--into" in same_place.stderr
    into = tmp_path / "new.pickle"
    result = run_cli("cache", "import-legacy", str(legacy), "--into", str(into), "--trust", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "imported 2 entries" in result.stdout and "skipped 1" in result.stdout
    assert legacy.read_bytes() == original  # the old file is only read
    found = run_cli("cache", "search", str(into), "italy", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert "Capital of Italy?" in found.stdout and "Rome." in found.stdout and "Madrid" not in found.stdout
    # Kept for reading, not as answers: the same question is asked again.
    from openai_utils import OpenAIClient, default

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    default.force("base_url", server.base_url)
    client = OpenAIClient(cache_api_calls=True, cache_file_name=str(into))
    client.send_message([{"role": "user", "content": "Capital of Italy?"}])
    assert len(server.requests) == 1


def test_a_legacy_file_at_the_cache_path_is_set_aside_with_the_command_that_reads_it(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    write_legacy_cache(tmp_path / "openai_api_cache.pickle")
    (tmp_path / "config.ini").write_text("[OpenAI]\nCACHE_API_CALLS=True\n")
    result = run_cli("chat", "Hello", env={"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": server.base_url}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith("openai_api_cache.pickle.unreadable-")]
    assert f"cache import-legacy {aside}" in result.stderr and "--trust" in result.stderr
