"""The cache file: O(1) appends, crash safety, safe loading, sharing across threads and processes."""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from openai_utils import CacheError, OpenAIClient, force_api_cache, register_client
from openai_utils.cache import HEADER, MISSING, ResponseCache, open_cache
from tests.fake_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[1]


def record(i: int) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "choices": [{"message": {"role": "assistant", "content": f"answer {i} " + "x" * 300}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 60, "total_tokens": 70},
    }


def fresh(path: Path) -> ResponseCache:
    """A cache object that reads the file from scratch, as a new process would."""
    return ResponseCache(path.resolve())


def raw_record(key: str, value_bytes: bytes) -> bytes:
    payload = struct.pack(">H", len(key)) + key.encode() + value_bytes
    return struct.pack(">II", len(payload), zlib.crc32(payload)) + payload


def written_bytes() -> int:
    """Bytes this process handed to write(2) so far, as the kernel counts them."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


# -- format and O(1) writes ---------------------------------------------------------------


def test_entries_survive_a_reload_and_values_come_back_equal(tmp_path: Path) -> None:
    path = tmp_path / "c.pickle"
    cache = open_cache(path)
    cache.put("k1", record(1))
    cache.put("k2", None)
    assert path.read_bytes().startswith(HEADER)
    again = fresh(path)
    assert again.get("k1") == record(1)
    assert again.get("k2") is None and again.get("k3") is MISSING
    assert len(again) == 2


def test_each_hit_is_a_fresh_copy(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "c.pickle")
    cache.put("k", record(1))
    first = cache.get("k")
    first["choices"][0]["message"]["content"] = "edited"
    assert cache.get("k") == record(1)


def test_only_plain_data_is_stored(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "c.pickle")
    with pytest.raises(TypeError, match="plain data"):
        cache.put("k", {"when": object()})
    with pytest.raises(TypeError, match="non-string key"):
        cache.put("k", {1: "x"})
    assert not (tmp_path / "c.pickle").exists()


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io to count bytes written")
def test_2000_cached_calls_write_about_the_final_file_size(tmp_path: Path) -> None:
    class Canned(OpenAIClient):
        def _raw_model_call(self, request: Any, timeout: float) -> dict[str, Any]:
            text = request["messages"][0]["content"]
            return {"model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": text * 3}}]}

    client = Canned(cache_api_calls=True, cache_file_name=str(tmp_path / "c.pickle"))
    client._endpoint = lambda: "canned"  # type: ignore[method-assign]
    before = written_bytes()
    for i in range(2000):
        client.send_message([{"role": "user", "content": f"prompt number {i} " + "y" * 200}])
    written = written_bytes() - before
    size = (tmp_path / "c.pickle").stat().st_size
    assert len(fresh(tmp_path / "c.pickle")) == 2000
    # The old module re-pickled the whole dict every call: ~1000x the final size here.
    assert written < 1.2 * size, (written, size)
    assert client.cache_misses == 2000


# -- crash safety and damaged files -------------------------------------------------------


def test_a_torn_last_record_is_cut_off_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "c.pickle"
    cache = open_cache(path)
    for i in range(5):
        cache.put(f"k{i}", record(i))
    whole = path.read_bytes()
    path.write_bytes(whole[:-40])  # the writer died in the middle of the last record
    with caplog.at_level(logging.WARNING, logger="openai_utils"):
        again = fresh(path)
        assert len(again) == 4
    assert any("incomplete record" in r.getMessage() for r in caplog.records)
    assert again.get("k3") == record(3) and again.get("k4") is MISSING
    again.put("k4", record(4))
    assert len(fresh(path)) == 5


WRITER = """
import sys
from openai_utils.cache import open_cache
cache = open_cache(sys.argv[1])
i = 0
while True:
    cache.put(f"key-{i}", {"i": i, "text": "z" * 5000})
    i += 1
"""


def test_a_writer_killed_mid_stream_loses_nothing_complete(tmp_path: Path) -> None:
    path = tmp_path / "c.pickle"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 30
        while (not path.exists() or path.stat().st_size < 2_000_000) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    size_at_kill = path.stat().st_size
    survivor = fresh(path)
    count = len(survivor)
    assert count >= 2_000_000 // 5100 - 1
    # Every complete record is there, in order, with its value intact.
    for i in range(count):
        assert survivor.get(f"key-{i}") == {"i": i, "text": "z" * 5000}
    assert path.stat().st_size <= size_at_kill
    survivor.put("after", {"ok": True})
    assert len(fresh(path)) == count + 1


class Boom:
    """Unpickling this would create the marker file: the proof a loader ran code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path(self.marker).touch, ())


@pytest.mark.parametrize("kind", ["random", "empty", "plain-pickle-that-runs-code", "record-that-runs-code", "bad-checksum"])
def test_unreadable_files_are_set_aside_never_run_and_never_lost(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.pickle"
    marker = tmp_path / "code-ran"
    if kind == "random":
        content = os.urandom(4096)
    elif kind == "empty":
        content = b""
    elif kind == "plain-pickle-that-runs-code":
        content = pickle.dumps({"k": Boom(str(marker))})
    elif kind == "record-that-runs-code":
        content = HEADER + raw_record("good", pickle.dumps(1)) + raw_record("evil", pickle.dumps(Boom(str(marker))))
    else:
        good = raw_record("good", pickle.dumps(1))
        bad = bytearray(raw_record("bad", pickle.dumps(2)))
        bad[-1] ^= 0xFF
        content = HEADER + good + bytes(bad) + raw_record("after", pickle.dumps(3))
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="openai_utils"):
        cache = fresh(path)
        assert len(cache) == 0
    assert not marker.exists(), "loading the cache ran code from the file"
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("c.pickle.unreadable-")]
    assert len(aside) == 1 and aside[0].read_bytes() == content
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert str(path) in warning and str(aside[0]) in warning
    cache.put("new", 1)
    assert fresh(path).get("new") == 1


def test_a_newer_format_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "c.pickle"
    content = b"openai_utils-cache v9\n" + os.urandom(100)
    path.write_bytes(content)
    with pytest.raises(CacheError, match="version 9"):
        fresh(path).get("k")
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pickle", "c.pickle.lock"]


def test_a_broken_cache_does_not_break_send_message(oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path) -> None:
    path = tmp_path / "c.pickle"
    path.write_bytes(b"\x80garbage")
    force_api_cache(True, str(path))
    assert oai.send_message([{"role": "user", "content": "Hi"}]) is not None
    assert oai.send_message([{"role": "user", "content": "Hi"}]) is not None
    assert len(server.requests) == 1


# -- compaction -----------------------------------------------------------------------------


def test_superseded_records_are_counted_and_compaction_keeps_every_entry(tmp_path: Path) -> None:
    path = tmp_path / "c.pickle"
    path.write_bytes(HEADER + b"".join(raw_record(f"k{i % 10}", pickle.dumps(i)) for i in range(30)))
    cache = fresh(path)
    assert cache.stats()["superseded_records"] == 20
    assert cache.get("k3") == 23  # the later record wins
    saved = cache.compact()
    assert saved > 0
    again = fresh(path)
    assert len(again) == 10 and again.get("k3") == 23 and again.stats()["superseded_records"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pickle", "c.pickle.lock"]


def test_appending_compacts_when_superseded_records_dominate(tmp_path: Path) -> None:
    path = tmp_path / "c.pickle"
    path.write_bytes(HEADER + b"".join(raw_record("same", pickle.dumps(i)) for i in range(100)))
    cache = fresh(path)
    cache.put("other", 1)
    assert fresh(path).stats()["superseded_records"] == 0
    assert len(fresh(path)) == 2


# -- sharing --------------------------------------------------------------------------------


def test_one_cache_object_per_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert open_cache(tmp_path / "c.pickle") is open_cache(str(tmp_path / "." / "c.pickle"))
    monkeypatch.chdir(tmp_path)
    assert open_cache("c.pickle") is open_cache(tmp_path / "c.pickle")


def test_a_miss_picks_up_what_another_process_appended(tmp_path: Path) -> None:
    path = tmp_path / "c.pickle"
    mine = open_cache(path)
    mine.put("a", 1)
    other = fresh(path)  # stands for another process with its own view of the file
    other.put("b", 2)
    assert mine.get("b") == 2
    assert len(mine) == 2


def test_an_appender_does_not_duplicate_a_key_another_process_wrote(tmp_path: Path) -> None:
    path = tmp_path / "c.pickle"
    mine, other = open_cache(path), fresh(path)
    mine.get("k")
    other.put("k", "theirs")
    mine.put("k", "mine")
    assert mine.get("k") == "theirs"
    assert fresh(path).stats()["superseded_records"] == 0


def test_after_another_process_compacts_the_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "c.pickle"
    mine, other = open_cache(path), fresh(path)
    for i in range(5):
        mine.put(f"k{i}", i)
    other.compact()
    other.put("new", "x")
    assert mine.get("new") == "x" and len(mine) == 6


def test_eight_threads_distinct_prompts_make_exactly_200_requests(oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path) -> None:
    force_api_cache(True, str(tmp_path / "c.pickle"))
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(25):
                assert oai.send_message([{"role": "user", "content": f"t{t} p{i}"}]) is not None
                assert oai.send_message([{"role": "user", "content": f"t{t} p{i}"}]) is not None
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(server.requests) == 200
    assert len(fresh(tmp_path / "c.pickle")) == 200
    assert (oai.cache_hits, oai.cache_misses) == (200, 200)


def test_eight_threads_asking_the_same_prompt_at_once_make_one_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOpenAIServer(latency=0.3) as slow:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        force_api_cache(True, str(tmp_path / "c.pickle"))
        client = OpenAIClient()
        register_client("openai", client)
        from openai_utils import default

        default.force("base_url", slow.base_url)
        results: list[Any] = []
        barrier = threading.Barrier(8)

        def work() -> None:
            barrier.wait()
            results.append(client.send_message([{"role": "user", "content": "same"}]))

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(slow.requests) == 1
        assert results == [{"role": "assistant", "content": "echo: same"}] * 8


def test_when_the_first_of_identical_calls_fails_the_next_one_tries(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "c.pickle")
    calls: list[int] = []
    gate = threading.Event()

    def failing() -> Any:
        calls.append(1)
        gate.wait()
        raise RuntimeError("first one failed")

    outcome: list[Any] = []

    def first() -> None:
        try:
            cache.get_or_compute("k", failing)
        except RuntimeError as exc:
            outcome.append(exc)

    t1 = threading.Thread(target=first)
    t1.start()
    while not calls:
        time.sleep(0.001)
    t2_result: list[Any] = []
    t2 = threading.Thread(target=lambda: t2_result.append(cache.get_or_compute("k", lambda: "second")))
    t2.start()
    gate.set()
    t1.join()
    t2.join()
    assert isinstance(outcome[0], RuntimeError)
    assert t2_result == [("second", False)]


PROCESS_WORKER = """
import sys
from openai_utils import OpenAIClient, default
default.force("base_url", sys.argv[2])
client = OpenAIClient(cache_api_calls=True, cache_file_name=sys.argv[1])
worker = int(sys.argv[3])
for i in range(250):
    assert client.send_message([{"role": "user", "content": f"w{worker} p{i}"}]) is not None
"""


def test_four_processes_share_one_file_without_losing_an_entry(server: FakeOpenAIServer, tmp_path: Path) -> None:
    path = tmp_path / "c.pickle"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "sk-test"}
    workers = [
        subprocess.Popen([sys.executable, "-c", PROCESS_WORKER, str(path), server.base_url, str(w)], env=env, stderr=subprocess.PIPE)
        for w in range(4)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err.decode()
    shared = fresh(path)
    assert len(shared) == 1000
    assert shared.stats()["superseded_records"] == 0
    assert len(server.requests) == 1000


# -- inspection -----------------------------------------------------------------------------


def test_stats_export_and_compact_from_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "c.pickle"
    cache = open_cache(path)
    for i in range(3):
        cache.put(f"k{i}", record(i))
    cache.put("e", {"model": "text-embedding-3-small", "vectors": [[0.1, 0.2]]})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "openai_utils", "cache", *args], capture_output=True, text=True, env=env, timeout=60)

    stats = cli("stats", str(path))
    assert stats.returncode == 0, stats.stderr
    shown = json.loads(stats.stdout)
    assert shown["entries"] == 4 and shown["superseded_records"] == 0 and shown["bytes"] == path.stat().st_size
    assert shown["models"] == {"gpt-4o-mini": 3, "text-embedding-3-small": 1}
    out = tmp_path / "out.jsonl"
    exported = cli("export", str(path), str(out))
    assert exported.returncode == 0 and "4 entries" in exported.stdout
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {line["key"] for line in lines} == {"k0", "k1", "k2", "e"}
    assert next(line["value"] for line in lines if line["key"] == "k1") == record(1)
    compacted = cli("compact", str(path))
    assert compacted.returncode == 0 and "4 entries" in compacted.stdout
    missing = cli("stats", str(tmp_path / "nope.pickle"))
    assert missing.returncode == 2 and "no cache file" in missing.stderr


def test_cache_fsync_from_config_flushes_each_append(oai: OpenAIClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from openai_utils import force_default_value

    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    force_api_cache(True, str(tmp_path / "c.pickle"))
    oai.send_message([{"role": "user", "content": "a"}])
    assert synced == []
    force_default_value("cache_fsync", True)
    oai.send_message([{"role": "user", "content": "b"}])
    oai.send_message([{"role": "user", "content": "c"}])
    assert len(synced) == 2
