"""batch_record: written atomically beside the cache, read back, never over what is not ours."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from openai_utils import CacheError
from openai_utils.batch_record import JobRecord, all_records, load_record, records_folder


def test_a_record_round_trips_and_is_private(tmp_path: Path) -> None:
    folder = records_folder(tmp_path / "cache.pickle")
    assert folder == tmp_path / "cache.pickle.batches"
    record = JobRecord.new(folder, "job-abc", "chat", "http://x", "openai", 2)
    part = record.add_part(["k1", "k2"])
    record.save()
    part["batch_id"] = "batch_1"
    record.save()
    loaded = load_record(folder, "job-abc")
    assert loaded is not None and loaded.parts[0]["batch_id"] == "batch_1" and loaded.pending_ids() == {"k1", "k2"}
    assert os.stat(loaded.path).st_mode & 0o777 == 0o600
    assert [r.job_id for r in all_records(folder)] == ["job-abc"]
    assert sorted(p.name for p in folder.iterdir()) == ["job-abc.json"]  # no temporary file left
    assert load_record(folder, "job-none") is None


def test_a_file_that_is_not_a_record_is_never_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "c.batches"
    folder.mkdir()
    theirs = folder / "job-abc.json"
    theirs.write_text("my notes")
    with pytest.raises(CacheError, match="left untouched"):
        JobRecord.new(folder, "job-abc", "chat", "e", "openai", 1).save()
    assert theirs.read_text() == "my notes"
    assert all_records(folder) == []


def test_a_link_at_the_record_path_is_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "c.batches"
    folder.mkdir()
    target = tmp_path / "elsewhere.json"
    target.write_text("{}")
    (folder / "job-abc.json").symlink_to(target)
    with pytest.raises(CacheError):
        JobRecord.new(folder, "job-abc", "chat", "e", "openai", 1).save()
    assert target.read_text() == "{}" and (folder / "job-abc.json").is_symlink()


def test_a_file_where_the_folder_should_be_is_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "c.batches"
    folder.write_text("not a folder")
    with pytest.raises(CacheError, match="not a folder"):
        JobRecord.new(folder, "job-abc", "chat", "e", "openai", 1).save()
    assert folder.read_text() == "not a folder"
