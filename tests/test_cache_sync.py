"""Keeping a cache in step with its file: torn and damaged records, files that are not a cache,
what other processes appended or rewrote (cache_sync.py)."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from openai_utils import CacheError, OpenAIClient, cache_file, cache_sync, force_api_cache
from openai_utils.cache import HEADER, MISSING, open_cache
from tests.cache_helpers import ROOT, fresh, raw_record, record
from tests.fake_server import FakeOpenAIServer


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


@pytest.mark.parametrize("kind", ["random", "plain-pickle-that-runs-code", "record-that-runs-code", "bad-checksum"])
def test_unreadable_data_is_set_aside_never_run_and_never_lost(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A file that is not a cache is moved aside whole; a damaged record is moved aside with what
    follows it, and every whole record before it stays."""
    path = tmp_path / "c.pickle"
    marker = tmp_path / "code-ran"
    kept = HEADER + raw_record("good", pickle.dumps(1))
    if kind == "random":
        kept, moved = b"", os.urandom(4096)
    elif kind == "plain-pickle-that-runs-code":
        kept, moved = b"", pickle.dumps({"k": Boom(str(marker))})
    elif kind == "record-that-runs-code":
        moved = raw_record("evil", pickle.dumps(Boom(str(marker))))
    else:
        bad = bytearray(raw_record("bad", pickle.dumps(2)))
        bad[-1] ^= 0xFF
        moved = bytes(bad) + raw_record("after", pickle.dumps(3))
    path.write_bytes(kept + moved)
    with caplog.at_level(logging.WARNING, logger="openai_utils"):
        cache = fresh(path)
        assert len(cache) == (1 if kept else 0)
    assert not marker.exists(), "loading the cache ran code from the file"
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(("c.pickle.unreadable-", "c.pickle.damaged-"))]
    assert len(aside) == 1 and aside[0].read_bytes() == moved
    assert aside[0].name.startswith("c.pickle.damaged-" if kept else "c.pickle.unreadable-")
    assert (path.read_bytes() if path.exists() else b"") == kept
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert str(path) in warning and str(aside[0]) in warning
    assert ("import-legacy" in warning) == (kind == "plain-pickle-that-runs-code")
    cache.put("new", 2)
    assert len(fresh(path)) == (2 if kept else 1) and fresh(path).get("new") == 2


def test_a_newer_format_is_refused_left_untouched_and_the_call_answered(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.pickle"
    content = b"openai_utils-cache v9\n" + os.urandom(100)
    path.write_bytes(content)
    with pytest.raises(CacheError, match="version 9"):
        open_cache(path)
    force_api_cache(True, str(path))
    with caplog.at_level(logging.WARNING, logger="openai_utils"):
        for _ in range(2):
            assert oai.send_message([{"role": "user", "content": "Hi"}]) == {"role": "assistant", "content": "echo: Hi"}
    assert len(server.requests) == 2
    assert [r.getMessage() for r in caplog.records if "version 9" in r.getMessage()] != []
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    assert fresh(path).get("k") is MISSING  # a cache object met directly degrades the same way
    assert path.read_bytes() == content
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == ["c.pickle"]


def test_a_broken_cache_does_not_break_send_message(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    path = tmp_path / "c.pickle"
    path.write_bytes(b"\x80garbage")
    force_api_cache(True, str(path))
    assert oai.send_message([{"role": "user", "content": "Hi"}]) is not None
    assert oai.send_message([{"role": "user", "content": "Hi"}]) is not None
    assert len(server.requests) == 1


def test_a_miss_picks_up_what_another_process_appended(tmp_path: Path) -> None:
    path = tmp_path / "c.pickle"
    mine = open_cache(path)
    mine.put("a", 1)
    other = fresh(path)  # stands for another process with its own view of the file
    other.put("b", 2)
    assert mine.get("b") == 2
    assert len(mine) == 2


def test_after_another_process_compacts_the_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "c.pickle"
    mine, other = open_cache(path), fresh(path)
    for i in range(5):
        mine.put(f"k{i}", i)
    other.compact()
    other.put("new", "x")
    assert mine.get("new") == "x" and len(mine) == 6


def test_a_damaged_record_costs_only_what_follows_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "c.pickle"
    whole = b"".join(raw_record(f"k{i}", pickle.dumps(record(i))) for i in range(22))
    cut_short = raw_record("k22", pickle.dumps(record(22)))[:100]  # a short write nobody noticed
    later = raw_record("k23", pickle.dumps(record(23)))  # appended once space came back
    path.write_bytes(HEADER + whole + cut_short + later)
    with caplog.at_level(logging.WARNING, logger="openai_utils"):
        cache = fresh(path)
        assert len(cache) == 22
    assert cache.get("k21") == record(21)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("c.pickle.damaged-")]
    assert len(aside) == 1 and aside[0].read_bytes() == cut_short + later  # nothing lost, only set aside
    assert path.read_bytes() == HEADER + whole
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "22 entries" in warning and str(aside[0]) in warning
    cache.put("k22", record(22))
    assert len(fresh(path)) == 23


@pytest.mark.parametrize("cut", [1, 9, 20, len(HEADER) - 1])
def test_a_torn_header_is_cut_like_any_torn_write(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path, cut: int, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.pickle"
    path.write_bytes(HEADER[:cut])
    force_api_cache(True, str(path))
    with caplog.at_level(logging.WARNING, logger="openai_utils"):
        assert oai.send_message([{"role": "user", "content": "Hi"}]) == {"role": "assistant", "content": "echo: Hi"}
    assert "first write was cut short" in " ".join(r.getMessage() for r in caplog.records)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pickle", "c.pickle.lock"]
    assert len(fresh(path)) == 1 and path.read_bytes().startswith(HEADER)


def test_an_empty_file_is_an_empty_cache(tmp_path: Path) -> None:
    path = tmp_path / "c.pickle"
    path.touch()
    cache = fresh(path)
    assert len(cache) == 0
    cache.put("k", 1)
    assert fresh(path).get("k") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pickle", "c.pickle.lock"]


@pytest.mark.parametrize("chunk", [len(HEADER), 64, 1000])
@pytest.mark.parametrize("ending", ["whole", "torn", "damaged", "huge"])
def test_records_across_read_chunks_load_as_from_one_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, ending: str
) -> None:
    monkeypatch.setattr(cache_file, "CHUNK", chunk)
    monkeypatch.setattr(cache_sync, "CHUNK", chunk)
    path = tmp_path / "c.pickle"
    values = {f"k{i}": record(i) if i != 7 else "x" * (5 * chunk) for i in range(30)}  # one longer than a chunk
    whole = b"".join(raw_record(key, pickle.dumps(value)) for key, value in values.items())
    tail = {
        "whole": b"",
        "torn": raw_record("k30", pickle.dumps(record(30)))[:-3],
        "huge": struct.pack(">II", 2**32 - 1, 0) + b"a torn length claims 4 GiB",
        "damaged": raw_record("k30", b"not a pickle") + raw_record("k31", pickle.dumps(record(31))),
    }[ending]
    path.write_bytes(HEADER + whole + tail)
    cache = fresh(path)
    assert len(cache) == 30 and all(cache.get(key) == value for key, value in values.items())
    assert path.read_bytes() == HEADER + whole
    aside = [p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("c.pickle.damaged-")]
    assert aside == ([tail] if ending == "damaged" else [])
