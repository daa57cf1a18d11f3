"""The response cache (cache.py): O(1) appends, compaction, sharing across threads and processes, paths
that are not ours, read-only places, the request kept beside each answer."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from openai_utils import CacheError, OpenAIClient, force_api_cache
from openai_utils.cache import HEADER, MISSING, open_cache
from tests.cache_helpers import ROOT, fresh, raw_record, record
from tests.fake_server import FakeOpenAIServer

if TYPE_CHECKING:
    from openai_utils.cache_inspect import Entry


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


def test_an_appender_does_not_duplicate_a_key_another_process_wrote(tmp_path: Path) -> None:
    path = tmp_path / "c.pickle"
    mine, other = open_cache(path), fresh(path)
    mine.get("k")
    other.put("k", "theirs")
    mine.put("k", "mine")
    assert mine.get("k") == "theirs"
    assert fresh(path).stats()["superseded_records"] == 0


def test_eight_threads_distinct_prompts_make_exactly_200_requests(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    force_api_cache(True, str(tmp_path / "c.pickle"))
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(25):
                assert oai.send_message([{"role": "user", "content": f"t{t} p{i}"}]) is not None
                assert oai.send_message([{"role": "user", "content": f"t{t} p{i}"}]) is not None
        except BaseException as exc:  # collected and asserted below
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
        subprocess.Popen(
            [sys.executable, "-c", PROCESS_WORKER, str(path), server.base_url, str(w)], env=env, stderr=subprocess.PIPE
        )
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
        return subprocess.run(
            [sys.executable, "-m", "openai_utils", "cache", *args], capture_output=True, text=True, env=env, timeout=60
        )

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


def test_cache_fsync_from_config_flushes_each_append(
    oai: OpenAIClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openai_utils import force_default_value

    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    force_api_cache(True, str(tmp_path / "c.pickle"))
    oai.send_message([{"role": "user", "content": "a"}])
    assert synced == []
    force_default_value("cache_fsync", True)
    oai.send_message([{"role": "user", "content": "b"}])
    oai.send_message([{"role": "user", "content": "c"}])
    assert len(synced) == 2


# -- paths that are not ours ----------------------------------------------------------------


def listing(folder: Path) -> dict[str, tuple[int, int, int, bytes | None]]:
    """What a folder holds, as lstat sees it (no link followed), with the bytes of regular files."""
    import stat as st

    seen = {}
    for entry in sorted(folder.iterdir()):
        info = entry.lstat()
        content = entry.read_bytes() if st.S_ISREG(info.st_mode) else None
        seen[entry.name] = (info.st_mode, info.st_ino, info.st_size, content)
    return seen


def call_with_a_deadline(client: OpenAIClient, text: str, seconds: float = 30) -> Any:
    """Send one message in a thread so a call that hangs fails the test instead of the run."""
    result: list[Any] = []
    worker = threading.Thread(
        target=lambda: result.append(client.send_message([{"role": "user", "content": text}])), daemon=True
    )
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"the call with {text!r} hung"
    assert result, f"the call with {text!r} raised (see the captured log)"
    return result[0]


def make_not_a_cache(kind: str, path: Path) -> None:
    import socket as sock
    import stat as st

    if kind == "link-to-notes":
        (path.parent / "notes.txt").write_text("my notes, not a cache\n")
        path.symlink_to(path.parent / "notes.txt")
    elif kind == "dangling-link":
        path.symlink_to(path.parent / "nowhere.pickle")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
        (path / "inside.txt").write_text("kept")
    elif kind == "socket":
        listener = sock.socket(sock.AF_UNIX, sock.SOCK_STREAM)
        listener.bind(str(path))
        listener.close()
    else:  # a null device of our own, so a regression can never rename the real /dev/null
        try:
            os.mknod(path, st.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("creating a device node needs root (CAP_MKNOD)")


@pytest.mark.parametrize("kind", ["link-to-notes", "dangling-link", "fifo", "directory", "socket", "device"])
def test_a_path_that_is_not_a_cache_file_is_never_touched_and_the_call_is_answered(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.pickle"
    make_not_a_cache(kind, path)
    before = listing(tmp_path)
    force_api_cache(True, str(path))
    try:
        with caplog.at_level(logging.WARNING, logger="openai_utils"):
            assert call_with_a_deadline(oai, "Hi") == {"role": "assistant", "content": "echo: Hi"}
            assert call_with_a_deadline(oai, "Hi") == {"role": "assistant", "content": "echo: Hi"}
    finally:
        if kind == "fifo":  # let a reader stuck in open() go, whatever the outcome
            with contextlib.suppress(OSError):
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    assert len(server.requests) == 2  # answered both times, stored never
    assert listing(tmp_path) == before
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and str(path) in r.getMessage()]
    assert len(warnings) == 1, warnings
    with pytest.raises(CacheError, match=str(path)):
        open_cache(path)
    assert listing(tmp_path) == before


def test_dev_null_turns_the_cache_off(
    oai: OpenAIClient, server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    import stat as st

    # First, and before any call: a cache object must refuse the device, so that no regression
    # in this test can ever move or replace the machine's /dev/null.
    with pytest.raises(CacheError, match="cache off"):
        open_cache(os.devnull)
    force_api_cache(True, os.devnull)
    with caplog.at_level(logging.WARNING, logger="openai_utils"):
        for _ in range(2):
            assert oai.send_message([{"role": "user", "content": "Hi"}]) == {"role": "assistant", "content": "echo: Hi"}
    assert len(server.requests) == 2
    assert (oai.cache_hits, oai.cache_misses) == (0, 0)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert st.S_ISCHR(os.lstat(os.devnull).st_mode)


def test_a_link_to_a_real_cache_is_read_through_and_never_written(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "real.pickle"
    force_api_cache(True, str(target))
    oai.send_message([{"role": "user", "content": "stored"}])
    link = tmp_path / "link.pickle"
    link.symlink_to(target)
    before = listing(tmp_path)
    force_api_cache(True, str(link))
    with caplog.at_level(logging.WARNING, logger="openai_utils"):
        assert oai.send_message([{"role": "user", "content": "stored"}]) == {
            "role": "assistant",
            "content": "echo: stored",
        }
        assert len(server.requests) == 1  # a hit, read through the link
        for _ in range(2):
            assert oai.send_message([{"role": "user", "content": "new"}]) == {
                "role": "assistant",
                "content": "echo: new",
            }
    assert len(server.requests) == 3  # the miss was answered each time and never stored
    with pytest.raises(CacheError, match="symbolic link"):
        open_cache(link).compact()
    assert listing(tmp_path) == before
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(link) in warnings[0] and str(target) in warnings[0]


# -- read-only places -----------------------------------------------------------------------


READ_ONLY_WORKER = """
import json, logging, sys
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
from openai_utils import OpenAIClient, default
default.force("base_url", sys.argv[2])
client = OpenAIClient(cache_api_calls=True, cache_file_name=sys.argv[1])
replies = [client.send_message([{"role": "user", "content": text}]) for text in ("shipped", "new", "new")]
print(json.dumps({"replies": [r["content"] for r in replies], "hits": client.cache_hits}))
"""


class ReadOnly:
    """Makes a folder and the cache in it unwritable for a worker process, however the tests run.

    Root ignores permission bits, so as root the worker runs as the unprivileged user `nobody`
    when that user can start this Python, else the folder and file are made immutable
    (`chattr +i`, which root obeys); otherwise the bits are enough.
    """

    def __init__(self) -> None:
        import tempfile

        self.folder = Path(tempfile.mkdtemp(prefix="ouc-read-only-"))
        self.folder.chmod(0o755)
        self.immutable: list[Path] = []
        self.run_as: dict[str, Any] = {}

    def seal(self, path: Path) -> None:
        path.chmod(0o444)
        self.folder.chmod(0o555)
        if os.geteuid() != 0:
            return
        nobody: dict[str, Any] = {"user": 65534, "group": 65534, "extra_groups": []}
        probe = [sys.executable, "-c", "import openai_utils"]
        try:
            subprocess.run(
                probe,
                check=True,
                capture_output=True,
                timeout=60,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                **nobody,
            )
            self.run_as = nobody
            return
        except (OSError, subprocess.CalledProcessError):
            pass
        for target in (path, self.folder):
            if subprocess.run(["chattr", "+i", str(target)], capture_output=True).returncode != 0:
                pytest.skip("as root, a read-only place needs the user nobody to run this Python, or chattr +i")
            self.immutable.append(target)

    def cleanup(self) -> None:
        import shutil

        for target in reversed(self.immutable):
            subprocess.run(["chattr", "-i", str(target)], check=True)
        self.folder.chmod(0o755)
        shutil.rmtree(self.folder)


@pytest.fixture
def read_only() -> Any:
    place = ReadOnly()
    try:
        yield place
    finally:
        place.cleanup()


def test_a_read_only_cache_serves_hits_and_answers_misses(
    server: FakeOpenAIServer, read_only: ReadOnly, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = read_only.folder / "shipped.pickle"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    from openai_utils import default

    default.force("base_url", server.base_url)
    OpenAIClient(cache_api_calls=True, cache_file_name=str(path)).send_message([{"role": "user", "content": "shipped"}])
    Path(f"{path}.lock").unlink()
    read_only.seal(path)
    before = listing(read_only.folder)
    server.reset()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OPENAI_API_KEY": "sk-test",
        "HOME": str(read_only.folder),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    child = subprocess.run(
        [sys.executable, "-c", READ_ONLY_WORKER, str(path), server.base_url],
        capture_output=True,
        text=True,
        env=env,
        cwd=read_only.folder,
        timeout=120,
        **read_only.run_as,
    )
    assert child.returncode == 0, child.stderr
    shown = json.loads(child.stdout)
    assert shown == {"replies": ["echo: shipped", "echo: new", "echo: new"], "hits": 1}
    assert len(server.requests) == 2  # the miss was answered both times, never stored
    warnings = [line for line in child.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and str(path) in warnings[0], child.stderr
    assert listing(read_only.folder) == before


# -- the request kept beside each answer ----------------------------------------------------


def recorded(entry: Entry) -> dict[str, Any]:
    """The request kept beside `entry`, which this version always records."""
    assert entry.request is not None
    return entry.request


def test_each_answer_keeps_the_request_that_produced_it(oai: OpenAIClient, tmp_path: Path) -> None:
    from openai_utils.cache_inspect import read_cache

    path = tmp_path / "c.pickle"
    force_api_cache(True, str(path))
    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Capital of France?"}]
    reply = oai.send_message(messages, temperature=0.2)
    streamed = "".join(oai.send_message([{"role": "user", "content": "streamed one"}], stream=True))
    oai.get_embedding("some text")
    entries = list(read_cache(path).entries)
    assert [recorded(e)["messages"] for e in entries[:2]] == [messages, [{"role": "user", "content": "streamed one"}]]
    assert recorded(entries[0])["temperature"] == 0.2
    assert entries[0].value["choices"][0]["message"]["content"] == reply["content"]
    assert entries[1].value["choices"][0]["message"]["content"] == streamed
    assert entries[2].request == {"model": "text-embedding-3-small", "input": "some text"}
    # What a call gets back is exactly what it got before requests were kept.
    assert fresh(path).get(entries[0].key) == entries[0].value


def test_records_with_a_request_still_read_as_plain_values_by_the_older_reader(tmp_path: Path) -> None:
    path = tmp_path / "c.pickle"
    open_cache(path).put("k", record(1), {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    data = path.read_bytes()[len(HEADER) :]
    length, crc = struct.unpack_from(">II", data)
    payload = data[8 : 8 + length]
    assert zlib.crc32(payload) == crc
    (key_length,) = struct.unpack_from(">H", payload)
    # The version 1 reader unpickles everything after the key and gets the value alone.
    assert pickle.loads(payload[2 + key_length :]) == record(1)  # noqa: S301 - a file this test wrote


def test_a_request_never_keeps_transport_headers(tmp_path: Path) -> None:
    from openai_utils.cache_inspect import read_cache

    path = tmp_path / "c.pickle"
    open_cache(path).put(
        "k", 1, {"model": "m", "input": "x", "extra_headers": {"api-key": "secret"}, "extra_query": {"key": "s"}}
    )
    [entry] = read_cache(path).entries
    assert entry.request == {"model": "m", "input": "x"}
    assert b"secret" not in path.read_bytes()


def test_put_many_stores_each_new_entry_with_one_lock_and_keeps_the_existing_ones(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "many.pickle")
    cache.put("a", {"v": "first"})
    cache.put_many([("a", {"v": "second"}, None), ("b", {"v": 2}, {"model": "m"}), ("c", {"v": 3}, None)])
    assert [cache.get(k) for k in "abc"] == [{"v": "first"}, {"v": 2}, {"v": 3}]
    reread = fresh(tmp_path / "many.pickle")
    assert sorted(k for k, _ in reread.items()) == ["a", "b", "c"]
    with pytest.raises((TypeError, ValueError)):
        cache.put_many([("d", {"v": object()}, None)])  # not plain data: refused before anything is written
    assert cache.get("d") is MISSING
