"""Changes made to a cache file on disk: private modes kept, a full disk or a missing lock loses no
answer and no earlier entry (cache_disk.py)."""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from openai_utils import OpenAIClient, force_api_cache
from openai_utils.cache import HEADER, open_cache
from tests.cache_helpers import ROOT, fresh, raw_record, record
from tests.fake_server import FakeOpenAIServer


def test_a_new_cache_and_its_lock_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "c.pickle"
    old_umask = os.umask(0o022)
    try:
        open_cache(path).put("k", record(1))
    finally:
        os.umask(old_umask)
    assert path.stat().st_mode & 0o777 == 0o600
    assert Path(f"{path}.lock").stat().st_mode & 0o777 == 0o600


def test_an_existing_mode_is_kept_by_appends_and_compaction(tmp_path: Path) -> None:
    path = tmp_path / "c.pickle"
    path.write_bytes(HEADER + b"".join(raw_record(f"k{i % 3}", pickle.dumps(i)) for i in range(9)))
    path.chmod(0o640)
    inode = path.stat().st_ino
    old_umask = os.umask(0o077)
    try:
        cache = fresh(path)
        cache.put("new", 1)
        assert path.stat().st_mode & 0o777 == 0o640
        assert cache.compact() > 0
    finally:
        os.umask(old_umask)
    assert path.stat().st_ino != inode  # really rewritten
    assert path.stat().st_mode & 0o777 == 0o640
    assert len(fresh(path)) == 4


FULL_DISK_WORKER = """
import json, logging, os, resource, sys
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
from openai_utils import OpenAIClient, default
default.force("base_url", sys.argv[2])
client = OpenAIClient(cache_api_calls=True, cache_file_name=sys.argv[1])
limit = os.path.getsize(sys.argv[1]) + int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # writes past it fail with EFBIG, as on a full disk
replies = [client.send_message([{"role": "user", "content": f"late prompt {i} " + "w" * 150}]) for i in range(10)]
print(json.dumps({"limit": limit, "replies": [r["content"] for r in replies]}))
"""


def test_a_full_disk_loses_no_answer_and_no_earlier_entry(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    path = tmp_path / "c.pickle"
    force_api_cache(True, str(path))
    for i in range(22):
        oai.send_message([{"role": "user", "content": f"early prompt {i}"}])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "sk-test", "PYTHONDONTWRITEBYTECODE": "1"}
    child = subprocess.run(
        [sys.executable, "-c", FULL_DISK_WORKER, str(path), server.base_url, "1500"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    shown = json.loads(child.stdout)
    late = [f"late prompt {i} " + "w" * 150 for i in range(10)]
    assert shown["replies"] == [f"echo: {text}" for text in late]  # every call paid for was answered
    assert path.stat().st_size <= shown["limit"]
    stored = len(fresh(path)) - 22
    assert 1 <= stored < 10  # some fitted, the rest did not
    not_stored = [
        line for line in child.stderr.splitlines() if line.startswith("WARNING openai_utils") and "not stored" in line
    ]
    assert len(not_stored) == 10 - stored, child.stderr
    # Space is back: every entry is still there, and the answers that did not fit are stored now.
    oai.cache_hits = oai.cache_misses = 0
    for i in range(22):
        oai.send_message([{"role": "user", "content": f"early prompt {i}"}])
    for text in late:
        oai.send_message([{"role": "user", "content": text}])
    assert (oai.cache_hits, oai.cache_misses) == (22 + stored, 10 - stored)
    assert len(fresh(path)) == 32


def test_a_lock_file_that_cannot_be_made_costs_no_answer(
    oai: OpenAIClient, server: FakeOpenAIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / ("c" * 250 + ".pkl")  # a name the folder takes; "<name>.lock" is too long for it
    force_api_cache(True, str(path))
    with caplog.at_level(logging.WARNING, logger="openai_utils"):
        for _ in range(2):
            assert oai.send_message([{"role": "user", "content": "Hi"}]) == {"role": "assistant", "content": "echo: Hi"}
    assert len(server.requests) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2 and all("not stored" in w and ".lock" in w for w in warnings), warnings
