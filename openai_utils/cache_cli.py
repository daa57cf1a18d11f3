"""The `cache` commands of `python -m openai_utils`: inspect, maintain and convert cache files.

Inspection (stats, export, show, search) goes through cache_inspect.read_cache, which opens the
file read-only and changes nothing; only compact and import-legacy write, through the live cache.
Exit status: 0 done, 1 the file is damaged, foreign or cannot be used, 2 the command needs fixing
(a missing file, a wrong entry, an output that exists, no --trust).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .exceptions import CacheError

__all__ = ["add_cache_commands", "run_cache_command"]

FILE_HELP = "a cache file, or a store URL (redis://host:6379/0; the password from OPENAI_UTILS_STORE_PASSWORD)"


def add_cache_commands(commands: Any) -> None:
    """The `cache` command and its actions, added to the top-level command parser."""
    cache = commands.add_parser("cache", help="inspect or maintain a cache file or a shared store")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    read_only = " (reads the file, changes nothing)"
    stats = cache_commands.add_parser("stats", help="entries, size, superseded records, models" + read_only)
    stats.add_argument("file", help=FILE_HELP)
    export = cache_commands.add_parser("export", help="every entry as a JSON line: key, request, value" + read_only)
    export.add_argument("file", help=FILE_HELP)
    export.add_argument("out", nargs="?", help="the .jsonl file to write (default: standard output)")
    export.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    show = cache_commands.add_parser("show", help="one entry's prompt and answer" + read_only)
    show.add_argument("file", help=FILE_HELP)
    show.add_argument(
        "entry", help="its number (1 is the first, in the order export lists them), or its key or the start of it"
    )
    search = cache_commands.add_parser(
        "search", help="the prompt and answer of every entry containing TEXT" + read_only
    )
    search.add_argument("file", help=FILE_HELP)
    search.add_argument("text", help="looked for in prompts and answers, ignoring case")
    for reader in (stats, export, show, search):
        reader.add_argument("--namespace", help="with a store URL for FILE: the namespace (default: CACHE_NAMESPACE)")
    copy = cache_commands.add_parser(
        "copy", help="add every entry of SOURCE that TARGET lacks; each a cache file or a store URL (redis://...)"
    )
    copy.add_argument("source")
    copy.add_argument("target")
    copy.add_argument("--namespace", help="the namespace in the store (default: CACHE_NAMESPACE)")
    compact = cache_commands.add_parser("compact", help="rewrite the file with one record per entry")
    compact.add_argument("file")
    legacy = cache_commands.add_parser(
        "import-legacy", help="convert a cache of the module this library replaces (a plain pickle), for reading"
    )
    legacy.add_argument("file", help="the old pickle; it is only read")
    legacy.add_argument("--into", help="the cache to add its answers to (default: CACHE_FILE_NAME)")
    legacy.add_argument(
        "--trust", action="store_true", help="you trust the file: loading a plain pickle runs code it names"
    )


LEGACY_REFUSAL = (
    "error: {file} is a plain pickle, and loading a pickle runs code: whatever the file names, so a "
    "crafted one can do anything you can. Convert it only if you trust where it came from (you or your "
    "project wrote it), by adding --trust"
)


def run_cache_command(args: argparse.Namespace) -> int:
    """Run one cache action: 0 done, 1 the file is damaged, foreign or unusable, 2 fix the command."""
    if args.cache_command == "copy":
        from .cache_store_cli import run_copy

        return run_copy(args)
    if "://" in args.file:
        return _on_store(args)
    path = Path(args.file)
    if not os.path.lexists(path):
        what = "file" if args.cache_command == "import-legacy" else "cache file"
        print(f"error: no {what} at {path}", file=sys.stderr)
        return 2
    try:
        if args.cache_command == "compact":
            return _compact(path)
        if args.cache_command == "import-legacy":
            return _import_legacy(path, args)
        return _inspect(path, args)
    except BrokenPipeError:  # the reader stopped reading (`| head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except CacheError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _on_store(args: argparse.Namespace) -> int:
    """stats, export, show and search on a store URL (cache_store_cli.py); the others are for files."""
    from .cache_store_cli import run_store_command
    from .store import check_url

    if args.cache_command not in ("stats", "export", "show", "search"):
        print(f"error: cache {args.cache_command} is for cache files; a store needs none", file=sys.stderr)
        return 2
    try:
        check_url(args.file)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run_store_command(args)


def _inspect(path: Path, args: argparse.Namespace) -> int:
    from .cache_inspect import read_cache, show_or_search

    snapshot = read_cache(path)
    if args.cache_command == "stats":
        print(json.dumps(snapshot.stats(), indent=2))
    elif args.cache_command == "export":
        if args.out is None:
            snapshot.export_jsonl(sys.stdout)
        else:
            try:  # private like the cache itself, since it holds every prompt and answer
                fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (0 if args.force else os.O_EXCL), 0o600)
            except FileExistsError:
                print(f"error: {args.out} exists; add --force to overwrite it", file=sys.stderr)
                return 2
            with open(fd, "w", encoding="utf-8") as out:
                count = snapshot.export_jsonl(out)
            print(f"wrote {count} entries to {args.out}")
    else:
        status = show_or_search(snapshot, args)
        if status:
            return status
    if snapshot.damage is not None:
        print(f"error: {snapshot.damage}", file=sys.stderr)
        return 1
    return 0


def _compact(path: Path) -> int:
    from .cache import open_cache
    from .cache_inspect import read_cache

    if path.is_symlink():
        target = os.path.realpath(path)
        raise CacheError(
            f"{path} is a symbolic link to {target}; compaction replaces a file, never through a link: run cache compact {target}"
        )
    read_cache(path)  # refuse a foreign or newer file here rather than move it aside
    cache = open_cache(path)
    saved = cache.compact()
    print(f"compacted {path}: {len(cache)} entries, {saved} bytes saved")
    return 0


def _import_legacy(path: Path, args: argparse.Namespace) -> int:
    from .cache import open_cache
    from .cache_legacy import import_legacy
    from .config import default

    if not args.trust:
        print(LEGACY_REFUSAL.format(file=path), file=sys.stderr)
        return 2
    into = Path(args.into or default["cache_file_name"])
    if os.path.lexists(into) and os.path.samefile(into, path):
        print(
            f"error: {path} is also where the converted cache would go; move it first (mv {path} {path}.old) "
            f"or name another cache with --into",
            file=sys.stderr,
        )
        return 2
    report = import_legacy(path, open_cache(into))
    print(
        f"imported {report.imported} entries from {path} into {into} (kept for reading with cache show, search "
        f"and export; they answer no new calls)" + (f"; {report.already} were there already" if report.already else "")
    )
    if report.skipped:
        print(f"skipped {len(report.skipped)}: " + "; ".join(report.skipped))
    if report.not_stored:
        print(
            f"error: {report.not_stored} entries could not be stored in {into} (see the warnings above)",
            file=sys.stderr,
        )
        return 1
    return 0
