"""`cache stats|export|show|search` on a store URL and `cache copy` between a file and a store
(cache_store_cli.py), run through main() against a real Valkey server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openai_utils.cache import open_cache
from openai_utils.cache_store import StoreCache
from openai_utils.cli import main
from openai_utils.store import SharedStore
from tests.valkey import ValkeyServer


def record(text: str, model: str = "gpt-4o-mini") -> dict[str, object]:
    return {"model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


def request(text: str) -> dict[str, object]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        status = main(list(args))
    except SystemExit as exc:
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def test_a_file_goes_to_the_store_and_back(store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    laptop = open_cache(tmp_path / "laptop.pickle")
    laptop.put("k1", record("one"), request("first prompt"))
    laptop.put("k2", record("two"))
    assert run(capsys, "cache", "copy", str(tmp_path / "laptop.pickle"), store_url, "--namespace", "exp") == (
        0,
        f"copied 2 entries from {tmp_path / 'laptop.pickle'} to {store_url}\n",
        "",
    )
    shared = StoreCache(SharedStore(store_url, 1.0), "exp")
    assert shared.get("k1") == record("one")
    shared.put("k3", record("three", "gpt-4o"), request("third prompt"))
    status, out, _ = run(capsys, "cache", "copy", store_url, str(tmp_path / "home.pickle"), "--namespace", "exp")
    assert status == 0 and out.startswith("copied 3 entries")
    home = open_cache(tmp_path / "home.pickle")
    assert {key: home.get(key) for key in ("k1", "k2", "k3")} == {
        "k1": record("one"),
        "k2": record("two"),
        "k3": record("three", "gpt-4o"),
    }
    status, out, _ = run(capsys, "cache", "copy", str(tmp_path / "laptop.pickle"), store_url, "--namespace", "exp")
    assert (status, out) == (
        0,
        f"copied 0 entries from {tmp_path / 'laptop.pickle'} to {store_url}; 2 were there already\n",
    )
    shared.store.close()


def test_stats_export_show_and_search_read_a_store(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    shared = StoreCache(SharedStore(store_url, 1.0), "exp")
    shared.put("aaaaaa1", record("Paris is the capital"), request("capital of France?"))
    shared.put("bbbbbb2", record("Berlin", "gpt-4o"), request("capital of Germany?"))
    status, out, _ = run(capsys, "cache", "stats", store_url, "--namespace", "exp")
    assert status == 0
    assert json.loads(out) == {
        "store": store_url,
        "namespace": "exp",
        "entries": 2,
        "requests_recorded": 2,
        "models": {"gpt-4o-mini": 1, "gpt-4o": 1},
    }
    status, out, _ = run(capsys, "cache", "export", store_url, "--namespace", "exp")
    assert [json.loads(line)["key"] for line in out.splitlines()] == ["aaaaaa1", "bbbbbb2"]
    status, out, _ = run(capsys, "cache", "show", store_url, "2", "--namespace", "exp")
    assert status == 0 and "capital of Germany?" in out and "Berlin" in out
    status, out, err = run(capsys, "cache", "search", store_url, "paris", "--namespace", "exp")
    assert status == 0 and "capital of France?" in out and err == "1 of 2 entries contain 'paris'\n"
    assert run(capsys, "cache", "stats", store_url)[0] == 0  # the default namespace: empty, not an error
    shared.store.close()


def test_store_commands_refuse_what_is_not_for_a_store(
    valkey: ValkeyServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "cache", "compact", valkey.url)
    assert status == 2 and "for cache files" in err
    status, _, err = run(capsys, "cache", "stats", "redis://u:secret@127.0.0.1:1/0")
    assert status == 2 and "OPENAI_UTILS_STORE_PASSWORD" in err and "secret" not in err
    down = ValkeyServer(valkey.binary)  # nothing listens there
    status, _, err = run(capsys, "cache", "stats", down.url)
    assert status == 1 and err.startswith(f"error: the store {down.url} cannot be read")
    status, _, err = run(capsys, "cache", "copy", "no-such.pickle", valkey.url)
    assert status == 2 and "no cache file at no-such.pickle" in err


def test_a_copy_into_a_file_that_cannot_be_written_fails_saying_so(store_url: str, tmp_path: Path) -> None:
    """The copy runs with a file-size limit of 1 byte (which root obeys too): the disk refuses the
    first entry, the cache logs why, and the command fails instead of reporting a copy."""
    import os
    import resource
    import signal
    import subprocess
    import sys

    StoreCache(SharedStore(store_url, 1.0), "exp").put("k1", record("one"))

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (1, 1))

    done = subprocess.run(
        [sys.executable, "-m", "openai_utils", "cache", "copy", store_url, "home.pickle", "--namespace", "exp"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PYTHONDONTWRITEBYTECODE": "1"},
        preexec_fn=small_files,  # only sets a limit and a signal, before exec
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert "the answer was not stored" in done.stderr and "could not take entry k1" in done.stderr
