"""The durable record of a batch job: what was submitted and under which file and batch ids.

A batch is paid for once it is created, and it answers hours later, long after the cell that
made it may have been rerun, the kernel restarted or the laptop closed. So every step is written
down beside the cache before the next one is taken: the job and its parts before the upload, a
part's file id before its batch is created, its batch id before any polling. A rerun of the same
call (the same job identity, batch_plan.py) reads the record and resumes those batches instead of
paying again.

Records live in a folder beside the cache file, `<cache file>.batches/`, one JSON file per job,
`<job id>.json`. They are written the way the cache writes (cache_disk.py): a new file in the
same folder, flushed, then renamed over the old one, so a crash leaves the old record or the new
one, never half of one. Nothing that is not ours is replaced: a record path that is a link, not a
regular file, or not a record, is left as it is and the job stops with a CacheError.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from .cache_disk import NEW_FILE_MODE
from .cache_file import open_regular
from .exceptions import CacheError

__all__ = ["JobRecord", "records_folder", "load_record", "all_records", "FORMAT", "TERMINAL", "ACTIVE"]

FORMAT = "openai_utils batch job"
"""The mark every record carries; a file without it is not ours."""

TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
"""Batch states that do not change any more: their files can be read."""
ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")
"""Batch states still moving: poll again."""


def records_folder(cache_path: Path) -> Path:
    """Where the records of jobs answered into `cache_path` are kept."""
    return cache_path.with_name(cache_path.name + ".batches")


class JobRecord:
    """One job: its identity, what it asks, and its parts (one batch each), as plain data.

    `data["parts"]` is a list of dicts: `custom_ids` (in file order), `file_id`, `batch_id`,
    `status` (the last one seen), `request_counts`, and `collected` (its output and error files
    were read and every answer stored in the cache).
    """

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def new(cls, folder: Path, job_id: str, kind: str, endpoint: str, api_type: str, requests: int) -> JobRecord:
        data = {
            "format": FORMAT,
            "version": 1,
            "job": job_id,
            "kind": kind,
            "endpoint": endpoint,
            "api_type": api_type,
            "requests": requests,
            "created": time.time(),
            "parts": [],
        }
        return cls(folder / f"{job_id}.json", data)

    @property
    def job_id(self) -> str:
        return str(self.data["job"])

    @property
    def parts(self) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = self.data["parts"]
        return parts

    def add_part(self, custom_ids: list[str]) -> dict[str, Any]:
        part: dict[str, Any] = {
            "custom_ids": custom_ids,
            "file_id": None,
            "batch_id": None,
            "status": None,
            "request_counts": None,
            "collected": False,
        }
        self.parts.append(part)
        return part

    def pending_ids(self) -> set[str]:
        """The custom_ids of parts whose answers have not been collected yet: not to send again."""
        return {custom_id for part in self.parts if not part["collected"] for custom_id in part["custom_ids"]}

    def save(self) -> None:
        """Write the record atomically (a new file renamed over the old), never over what is not ours."""
        folder = self.path.parent
        _make_folder(folder)
        _check_ours(self.path)
        import tempfile

        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(json.dumps(self.data, separators=(",", ":")).encode("utf-8"))
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, NEW_FILE_MODE)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def load_record(folder: Path, job_id: str) -> JobRecord | None:
    """The record of `job_id`, or None when there is none yet."""
    path = folder / f"{job_id}.json"
    if not os.path.lexists(path):
        return None
    return JobRecord(path, _read(path))


def all_records(folder: Path) -> list[JobRecord]:
    """Every job recorded in `folder`, oldest first; files that are not records are skipped."""
    if not folder.is_dir():
        return []
    records = []
    for path in sorted(folder.glob("job-*.json")):
        try:
            records.append(JobRecord(path, _read(path)))
        except CacheError:
            continue
    return sorted(records, key=lambda record: float(record.data.get("created", 0)))


def _read(path: Path) -> dict[str, Any]:
    try:
        fd = open_regular(path, os.O_RDONLY, follow_link=False)
    except OSError as exc:
        raise CacheError(f"batch record {path} cannot be read ({exc.strerror}); it is left untouched") from None
    with os.fdopen(fd, "rb") as handle:
        raw = handle.read()
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("parts"), list):
        raise CacheError(f"{path} is not a batch record of openai_utils; it is left untouched")
    return data


def _check_ours(path: Path) -> None:
    """Raise CacheError when `path` holds something that is not one of our records."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(found.st_mode):
        raise CacheError(f"batch record {path} is not a regular file; it is left untouched")
    _read(path)


def _make_folder(folder: Path) -> None:
    with contextlib.suppress(FileExistsError):  # a link or a file there: refused just below
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    found = os.lstat(folder)
    if not stat.S_ISDIR(found.st_mode):
        raise CacheError(f"{folder} should hold batch records but is not a folder; it is left untouched")
