"""The `batch` commands of `openai-utils`: the jobs recorded beside a cache, from a shell.

`list` reads the records only (asks no server); `status` asks the server for each batch's state;
`results` waits for a job, stores its answers in the cache and prints one JSON line per request;
`cancel` stops a job's batches, keeping what they answered. A job is named by its id or the start
of it, as `list` shows. Exit status: 0 done, 1 a request was not answered or the server refused,
2 fix the command (no such job, an ambiguous prefix).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .exceptions import ConfigError

__all__ = ["add_batch_commands", "run_batch_command"]


def add_batch_commands(commands: Any) -> None:
    """The `batch` command and its actions, added to the top-level command parser."""
    batch = commands.add_parser("batch", help="the batch jobs recorded beside the cache (docs/batch.md)")
    actions = batch.add_subparsers(dest="batch_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every recorded job and its batches' last known states (asks no server)")
    _add_cache_option(listing)
    for name, what in (
        ("status", "ask the server for the state of JOB's batches"),
        ("results", "wait for JOB, store its answers in the cache, print one JSON line per request"),
        ("cancel", "stop JOB's batches; what they answered is kept"),
    ):
        action = actions.add_parser(name, help=what)
        action.add_argument("job", metavar="JOB", help="the job's id, or the start of it (see 'batch list')")
        _add_cache_option(action)
        if name == "results":
            action.add_argument(
                "--no-wait", action="store_true", help="do not wait: exit 1 at once if the job is not finished"
            )


def _add_cache_option(command: argparse.ArgumentParser) -> None:
    command.add_argument("--cache", metavar="FILE", help="the cache the jobs answer into (default: CACHE_FILE_NAME)")


def run_batch_command(args: argparse.Namespace) -> int:
    from .batch_record import all_records, records_folder
    from .config import default

    cache = Path(args.cache or default["cache_file_name"]).expanduser()
    records = all_records(records_folder(cache.parent.resolve() / cache.name))
    if args.batch_command == "list":
        if not records:
            print(f"no batch jobs recorded beside {cache}")
        for record in records:
            states = ", ".join(f"{p['batch_id']} {p['status']}" for p in record.parts) or "nothing sent"
            print(f"{record.job_id}  {record.data['kind']}  {record.data['requests']} request(s)  {states}")
        return 0
    matches = [record for record in records if record.job_id.startswith(args.job)]
    if len(matches) != 1:
        found = "no job" if not matches else f"{len(matches)} jobs"
        raise ConfigError(f"{found} beside {cache} start with {args.job!r}: give an id 'batch list' shows")
    job = _job(matches[0])
    if args.batch_command == "status":
        print(json.dumps(job.status(), indent=2))
        return 0
    if args.batch_command == "cancel":
        print(json.dumps(job.cancel(), indent=2))
        return 0
    if args.no_wait and not job.finished():
        job.refresh()
        if not job.finished():
            print(f"error: {job.job_id} is not finished; run without --no-wait to wait for it", file=sys.stderr)
            return 1
    ids = [custom_id for part in job.record.parts for custom_id in part["custom_ids"]]
    failed = 0
    for custom_id, value in zip(ids, job.results(), strict=True):
        if isinstance(value, dict):
            print(json.dumps({"custom_id": custom_id, "answer": value}, ensure_ascii=False))
        else:
            failed += 1
            error = f"{type(value).__name__}: {value}" if isinstance(value, Exception) else "no answer stored"
            print(json.dumps({"custom_id": custom_id, "error": error}, ensure_ascii=False))
    return 1 if failed else 0


def _job(record: Any) -> Any:
    """The handle of a recorded job, through the client of the api type that made it."""
    from .batch_job import BatchJob
    from .registry import _get_client_for_api_type

    return BatchJob(_get_client_for_api_type(record.data["api_type"]), record)
